"""Block attestations checked on the client's side, as a peer checks them (see
medledger.node.attestation_board.quorum_hash): an attestation counts only when the named
organisation's registered peer signed it under a certificate its organisation's CA issued, and a
block is final when a strict majority of the organisations attested the same hash.

The identity records (organisations with their CA certificates, member certificates) may come
from an untrusted node: every chain and signature is checked here, and records of the wrong
shape simply attest nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from medledger.contracts.identity.contract import ACTIVE
from medledger.core.errors import CertificateError
from medledger.core.hashing import Hash32
from medledger.core.identity import CertificateVerifier, MemberCertificate, Role
from medledger.ledger.attestations import BlockAttestation


def attesting_peer(
    attestation: BlockAttestation,
    organisation: Any,
    member: Any,
    at_ms: int,
    verifier: CertificateVerifier,
) -> MemberCertificate | None:
    """The certificate of the peer whose valid signature `attestation` carries, or None when it counts for nothing.

    `organisation` is the identity record of `attestation.org_id` (with its `ca_certificate`),
    `member` the record registered under `attestation.signer` (with its `certificate`); both as
    the identity contract stores them, or None when unknown. The member must be an active peer of
    that active organisation, its certificate issued by that organisation's CA, valid at `at_ms`
    and hashing to the id the attestation names.
    """
    if not isinstance(organisation, Mapping) or not isinstance(member, Mapping):
        return None
    if organisation.get("status") != ACTIVE or member.get("status") != ACTIVE:
        return None
    certificate, ca_certificate = member.get("certificate"), organisation.get("ca_certificate")
    if not isinstance(certificate, bytes) or not isinstance(ca_certificate, bytes):
        return None
    try:
        peer = verifier.verify(certificate, ca_certificate)
    except CertificateError:
        return None
    if peer.cert_id != attestation.signer or peer.org_id != attestation.org_id or peer.role is not Role.PEER:
        return None
    if not peer.valid_at(at_ms) or not attestation.signature_is_valid(peer.public_key):
        return None
    return peer


def strict_majority_hash(attestations: Iterable[BlockAttestation], organisations: int) -> Hash32 | None:
    """The block hash attested by more than half of `organisations`, if any.

    Pass only attestations already checked (attesting_peer). Each organisation has one vote; one
    that attested two different hashes for the height has none.
    """
    hashes: dict[str, set[Hash32]] = {}
    for attestation in attestations:
        hashes.setdefault(attestation.org_id, set()).add(attestation.block_hash)
    votes: dict[Hash32, int] = {}
    for attested in hashes.values():
        if len(attested) == 1:
            (block_hash,) = attested
            votes[block_hash] = votes.get(block_hash, 0) + 1
    for block_hash, count in votes.items():
        if 2 * count > organisations:
            return block_hash
    return None
