"""Resolves a transaction's signer reference to its key and role from identity state.

The X.509 chain check is cached by certificate hash (CertificateVerifier), and the decoded
result by the exact bytes of the member and organisation rows, so a revocation (which
changes the row) is seen at once while an unchanged identity costs two lookups. A patient's
signer is likewise remembered by the exact bytes of the patient row. No decision is cached
that the current rows do not determine: every resolve still reads the rows it depends on.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from medledger.contracts.identity.contract import ACTIVE, member_key, org_key, patient_key
from medledger.core.encoding import decode_unchecked
from medledger.core.errors import CertificateError
from medledger.core.identity import CertificateVerifier, MemberCertificate
from medledger.ledger.errors import TransactionRejected
from medledger.ledger.execution import Signer, SignerKind
from medledger.ledger.receipts import RejectionCode
from medledger.ledger.state import StateReader

_CACHE_SIZE = 65_536


class IdentityResolver:
    """Implements the ledger's SignerResolver over the identity contract's state."""

    def __init__(self, verifier: CertificateVerifier | None = None) -> None:
        self.verifier = verifier or CertificateVerifier()
        self._members: OrderedDict[tuple[bytes, bytes], tuple[MemberCertificate, Signer, bool]] = OrderedDict()
        self._member_orgs: dict[bytes, str] = {}
        """Member row bytes -> the organisation the row names (saves decoding the row each time)."""
        self._patients: dict[tuple[str, bytes], Signer | str] = {}
        """(pseudonym, patient row bytes) -> the signer, or the status that makes the key unusable."""
        self._lock = threading.Lock()
        self.hits = 0
        """Resolutions answered without decoding a row or checking a certificate."""
        self.misses = 0

    def resolve(self, state: StateReader, signer_ref: str, at_ms: int) -> Signer:
        kind, _, ident = signer_ref.partition(":")
        if kind == SignerKind.PATIENT.value:
            return self._resolve_patient(state, ident)
        if kind == SignerKind.MEMBER.value:
            return self._resolve_member(state, ident, at_ms)
        raise TransactionRejected(RejectionCode.UNKNOWN_SIGNER, f"signer {signer_ref!r} is neither member nor patient")

    def _resolve_patient(self, state: StateReader, pseudonym: str) -> Signer:
        raw = state.get_state(patient_key(pseudonym))
        if raw is None:
            raise TransactionRejected(RejectionCode.UNKNOWN_SIGNER, f"no enrolled patient {pseudonym}")
        cached = self._patients.get((pseudonym, raw))
        if cached is None:
            self.misses += 1
            patient = decode_unchecked(raw)
            cached = (
                patient["status"]
                if patient["status"] != ACTIVE
                else Signer(SignerKind.PATIENT, pseudonym, patient["sign_key"])
            )
            with self._lock:
                if len(self._patients) >= _CACHE_SIZE:
                    self._patients.clear()
                self._patients[(pseudonym, raw)] = cached
        else:
            self.hits += 1
        if isinstance(cached, str):
            raise TransactionRejected(RejectionCode.CERT_REVOKED, f"patient key {pseudonym} is {cached}")
        return cached

    def _resolve_member(self, state: StateReader, cert_id: str, at_ms: int) -> Signer:
        member_raw = state.get_state(member_key(cert_id))
        if member_raw is None:
            raise TransactionRejected(RejectionCode.UNKNOWN_SIGNER, f"no registered member with certificate {cert_id}")
        org_id = self._member_orgs.get(member_raw)
        if org_id is None:
            org_id = str(decode_unchecked(member_raw)["org_id"])
            with self._lock:
                if len(self._member_orgs) >= _CACHE_SIZE:
                    self._member_orgs.clear()
                self._member_orgs[member_raw] = org_id
        org_raw = state.get_state(org_key(org_id))
        if org_raw is None:
            raise TransactionRejected(RejectionCode.UNKNOWN_SIGNER, f"organisation {org_id} is unknown")
        cache_key = (member_raw, org_raw)
        with self._lock:
            cached = self._members.get(cache_key)
            if cached is not None:
                self._members.move_to_end(cache_key)
        if cached is None:
            self.misses += 1
            cached = self._check_member(decode_unchecked(member_raw), decode_unchecked(org_raw))
            with self._lock:
                self._members[cache_key] = cached
                if len(self._members) > _CACHE_SIZE:
                    self._members.popitem(last=False)
        else:
            self.hits += 1
        cert, signer, active = cached
        if not active:
            raise TransactionRejected(RejectionCode.CERT_REVOKED, f"certificate {cert_id} has been revoked")
        if not cert.valid_at(at_ms):
            raise TransactionRejected(
                RejectionCode.CERT_EXPIRED,
                f"certificate {cert_id} is valid from {cert.not_before_ms} to {cert.not_after_ms}, not at {at_ms}",
            )
        return signer

    def _check_member(
        self, member: dict[str, object], org: dict[str, object]
    ) -> tuple[MemberCertificate, Signer, bool]:
        try:
            cert = self.verifier.verify(member["certificate"], org["ca_certificate"])  # type: ignore[arg-type]
        except CertificateError as exc:
            raise TransactionRejected(RejectionCode.CERT_INVALID, f"certificate {member['cert_id']}: {exc}") from exc
        signer = Signer(
            SignerKind.MEMBER, cert.cert_id, cert.public_key, cert.org_id, cert.role.value, str(org["kind"])
        )
        active = member["status"] == ACTIVE and org["status"] == ACTIVE
        return cert, signer, active
