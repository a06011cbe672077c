"""A realistic, reproducible benchmark load: a consortium's staff and patients, and a stream of
signed transactions mixing record registrations, consent grants, access requests (each decided
on chain) and new patients' enrolments.

Everything is derived from one seed, so two runs sign the same bodies. Transactions are signed
for a given block time, ahead of the measurement: the load is what the clients send, not work
the measured peer does. Patients come and go (a fixed number are "active" at any time, the
oldest retiring as new ones enrol), so each patient's history stays the size a real patient's
would while the ledger grows without bound.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medledger.contracts.identity.contract import enrolment_payload, patient_pseudonym
from medledger.contracts.records.contract import record_id_for
from medledger.core.identity import MemberIdentity, OrgCA, OrgKind, Role
from medledger.core.signing import Domain, SigningKey
from medledger.ledger.transactions import NONCE_SIZE, Transaction, TransactionBody, sign_transaction
from medledger.node.network import EmbeddedNetwork

DAY_MS = 86_400_000
BENCH_CHANNEL = "medledger-bench"

#: The five organisations of the embedded network, in the same kinds.
BENCH_ORGS: tuple[tuple[str, OrgKind], ...] = (
    ("st-mary", OrgKind.HOSPITAL),
    ("city-general", OrgKind.HOSPITAL),
    ("northern-research", OrgKind.RESEARCH),
    ("mutual-health", OrgKind.INSURER),
    ("health-authority", OrgKind.REGULATOR),
)

#: Staff each kind of organisation signs with: (name, role, how many).
STAFF_PLAN: Mapping[OrgKind, tuple[tuple[str, Role, int], ...]] = {
    OrgKind.HOSPITAL: (("registrar", Role.REGISTRAR, 2), ("clinician", Role.CLINICIAN, 4)),
    OrgKind.RESEARCH: (("researcher", Role.RESEARCHER, 2),),
    OrgKind.INSURER: (("claims-officer", Role.CLAIMS_OFFICER, 2),),
    OrgKind.REGULATOR: (("auditor", Role.AUDITOR, 1),),
}

#: The purpose of use each kind of requester asks under.
PURPOSE_BY_ROLE: Mapping[Role, str] = {
    Role.CLINICIAN: "TREAT",
    Role.RESEARCHER: "HRESCH",
    Role.CLAIMS_OFFICER: "HPAYMT",
}
RESOURCE_TYPES = ("Observation", "DiagnosticReport", "Condition", "MedicationRequest", "Procedure", "ImagingStudy")
CATEGORIES = ("laboratory", "imaging", "vital-signs", "medication")


@dataclass(frozen=True, slots=True)
class Mix:
    """Relative weights of the kinds of transaction in the steady-state load."""

    register: int = 45
    """records.register by a hospital registrar."""
    grant: int = 15
    """consent.grant signed by a patient."""
    request: int = 38
    """access.request by a clinician, researcher or claims officer: decided on chain."""
    enrol: int = 2
    """identity.register_patient: a new patient joins (and the oldest active one retires)."""

    def kinds(self) -> tuple[list[str], list[int]]:
        names = ["register", "grant", "request", "enrol"]
        return names, [self.register, self.grant, self.request, self.enrol]


@dataclass(frozen=True, slots=True)
class Staffer:
    """A member who signs load transactions."""

    org_id: str
    org_kind: OrgKind
    role: Role
    identity: MemberIdentity

    @property
    def signer_ref(self) -> str:
        return f"member:{self.identity.certificate.cert_id}"


@dataclass(frozen=True, slots=True)
class Patient:
    """A patient's wallet signing key and pseudonym (its encryption key never matters here)."""

    key: SigningKey
    pseudonym: str
    encryption_key: bytes

    @property
    def signer_ref(self) -> str:
        return f"patient:{self.pseudonym}"


@dataclass
class Consortium:
    """The organisations' CAs and admins, and the founding configuration they agree on."""

    channel: str
    kinds: dict[str, OrgKind]
    cas: dict[str, OrgCA]
    admins: dict[str, MemberIdentity]
    peers: dict[str, MemberIdentity] = field(default_factory=dict)
    genesis: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls, now_ms: int, channel: str = BENCH_CHANNEL, orgs: Sequence[tuple[str, OrgKind]] = BENCH_ORGS
    ) -> Consortium:
        """New CAs, admins and peers for `orgs`, and the genesis configuration naming them."""
        kinds, cas, admins, peers, genesis_orgs = {}, {}, {}, {}, []
        for org_id, kind in orgs:
            ca = OrgCA.create(org_id, kind, now_ms)
            admin = ca.enrol("admin", Role.ADMIN, now_ms)
            peer = ca.enrol("peer", Role.PEER, now_ms)
            kinds[org_id], cas[org_id], admins[org_id], peers[org_id] = kind, ca, admin, peer
            genesis_orgs.append(
                {
                    "org_id": org_id,
                    "kind": kind.value,
                    "ca_certificate": ca.certificate_der,
                    "members": [admin.certificate.der, peer.certificate.der],
                }
            )
        genesis = {"channel": channel, "rules": {}, "created_ms": now_ms, "orgs": genesis_orgs}
        return cls(channel, kinds, cas, admins, peers, genesis)


def consortium_of(network: EmbeddedNetwork) -> Consortium:
    """The consortium of an embedded network's data directory (its CAs, admins and genesis)."""
    kinds = {org.org_id: org.kind for org in network.orgs}
    cas = {org_id: network.ca(org_id) for org_id in kinds}
    admins = {org_id: network.admin(org_id) for org_id in kinds}
    peers = {org_id: network.member_identity(org_id, "peer") for org_id in kinds}
    return Consortium(network.channel, kinds, cas, admins, peers, dict(network.genesis_config))


def _sign(
    channel: str,
    contract: str,
    function: str,
    args: dict[str, Any],
    signer: str,
    key: SigningKey,
    nonce: bytes,
    timestamp_ms: int,
) -> Transaction:
    body = TransactionBody(channel, contract, function, args, signer, nonce, timestamp_ms)
    return sign_transaction(body, key)


class LoadGenerator:
    """Signs the benchmark load, block by block, for one consortium.

    Call `setup_blocks` once (staff and the first patients), then `block` for each block of
    steady-state load. Records registered in a block are only asked for from the next block on,
    so every batch is valid whatever the order of its transactions' execution.
    """

    def __init__(
        self,
        consortium: Consortium,
        *,
        seed: int = 20261129,
        mix: Mix | None = None,
        active_patients: int = 100,
        records_kept: int = 20_000,
        request_lag: int = 0,
    ) -> None:
        """`request_lag`: how many further blocks a record waits before it is asked for (more than
        zero when concurrent clients may reorder neighbouring blocks' transactions)."""
        self.consortium = consortium
        self.channel = consortium.channel
        self.mix = mix or Mix()
        self.active_patients = active_patients
        self._rng = random.Random(seed)
        self._kinds, self._weights = self.mix.kinds()
        self.staff: list[Staffer] = []
        self._registrars: list[Staffer] = []
        self._requesters: list[Staffer] = []
        self.patients: deque[Patient] = deque()
        """Active patients, oldest first."""
        self.retired: list[Patient] = []
        """Patients who no longer receive new transactions (their history is complete)."""
        self._joining: list[Patient] = []
        self._records: deque[tuple[str, str]] = deque(maxlen=records_kept)
        """(record id, patient) of records committed in earlier blocks, newest last."""
        self._new_records: list[tuple[str, str]] = []
        self._lagging: deque[list[tuple[str, str]]] = deque()
        self._request_lag = request_lag
        self.signed = 0

    # identities --------------------------------------------------------------------------------
    def _nonce(self) -> bytes:
        return self._rng.randbytes(NONCE_SIZE)

    def _new_patient(self) -> Patient:
        key = SigningKey(self._rng.randbytes(32))
        encryption_key = self._rng.randbytes(32)
        return Patient(key, patient_pseudonym(key.public_key), encryption_key)

    def setup_blocks(self, now_ms: int, block_size: int = 500) -> Iterator[list[bytes]]:
        """Blocks enrolling the staff, then the first active patients (registered by registrars)."""
        staff_txs: list[bytes] = []
        for org_id, kind in self.consortium.kinds.items():
            for name, role, count in STAFF_PLAN.get(kind, ()):
                for index in range(count):
                    identity = self.consortium.cas[org_id].enrol(f"{name}-{index}", role, now_ms)
                    staffer = Staffer(org_id, kind, role, identity)
                    self.staff.append(staffer)
                    if role is Role.REGISTRAR:
                        self._registrars.append(staffer)
                    if role in PURPOSE_BY_ROLE:
                        self._requesters.append(staffer)
                    admin = self.consortium.admins[org_id]
                    tx = _sign(
                        self.channel,
                        "identity",
                        "register_member",
                        {"certificate": identity.certificate.der},
                        f"member:{admin.certificate.cert_id}",
                        admin.key,
                        self._nonce(),
                        now_ms,
                    )
                    staff_txs.append(tx.encoded)
        yield staff_txs
        first = [self._enrolment(self._new_patient(), now_ms) for _ in range(self.active_patients)]
        for start in range(0, len(first), block_size):
            yield first[start : start + block_size]
        self._activate()

    def _enrolment(self, patient: Patient, now_ms: int) -> bytes:
        return self._enrolment_tx(patient, now_ms).encoded

    def _enrolment_tx(self, patient: Patient, now_ms: int) -> Transaction:
        payload = enrolment_payload(self.channel, patient.key.public_key, patient.encryption_key)
        args = {
            "sign_key": patient.key.public_key,
            "encryption_key": patient.encryption_key,
            "enrolment_signature": patient.key.sign(Domain.PATIENT_ENROLMENT, payload),
        }
        registrar = self._rng.choice(self._registrars)
        tx = _sign(
            self.channel,
            "identity",
            "register_patient",
            args,
            registrar.signer_ref,
            registrar.identity.key,
            self._nonce(),
            now_ms,
        )
        self._joining.append(patient)
        return tx

    def _activate(self) -> None:
        """Patients enrolled in the block just made become usable; the oldest active ones retire."""
        for patient in self._joining:
            self.patients.append(patient)
            if len(self.patients) > self.active_patients:
                self.retired.append(self.patients.popleft())
        self._joining = []
        self._lagging.append(self._new_records)
        self._new_records = []
        while len(self._lagging) > self._request_lag:
            self._records.extend(self._lagging.popleft())

    # the steady-state load -----------------------------------------------------------------------
    def block(self, size: int, timestamp_ms: int) -> list[bytes]:
        """`size` signed transactions of the mix, valid in a block at `timestamp_ms`."""
        return [tx.encoded for tx in self.block_transactions(size, timestamp_ms)]

    def block_transactions(self, size: int, timestamp_ms: int) -> list[Transaction]:
        """Like `block`, keeping each transaction's id."""
        if not self.patients:
            raise RuntimeError("run setup_blocks first: there are no enrolled patients")
        kinds = self._rng.choices(self._kinds, self._weights, k=size)
        out: list[Transaction] = []
        for kind in kinds:
            signed_at = timestamp_ms - self._rng.randrange(1, 2_000)
            if kind == "request" and not self._records:
                kind = "register"
            if kind == "register":
                out.append(self._register(signed_at))
            elif kind == "grant":
                out.append(self._grant(signed_at))
            elif kind == "request":
                out.append(self._request(signed_at))
            else:
                out.append(self._enrolment_tx(self._new_patient(), signed_at))
        self._activate()
        self.signed += len(out)
        return out

    def _register(self, now_ms: int) -> Transaction:
        rng = self._rng
        registrar = rng.choice(self._registrars)
        patient = rng.choice(self.patients)
        index = self.signed + len(self._new_records)
        args = {
            "patient": patient.pseudonym,
            "resource_type": rng.choice(RESOURCE_TYPES),
            "clinical_date": f"{rng.randint(2019, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "content_hash": rng.randbytes(32),
            "ciphertext_hash": rng.randbytes(32),
            "category": rng.choice(CATEGORIES),
            "locator": f"vault://{registrar.org_id}/{index:010d}",
        }
        tx = _sign(
            self.channel,
            "records",
            "register",
            args,
            registrar.signer_ref,
            registrar.identity.key,
            self._nonce(),
            now_ms,
        )
        self._new_records.append((record_id_for(tx.tx_id), patient.pseudonym))
        return tx

    def _grant(self, now_ms: int) -> Transaction:
        rng = self._rng
        patient = rng.choice(self.patients)
        requester = rng.choice(self._requesters)
        deny = rng.random() < 0.05
        scope: dict[str, Any] = {}
        if rng.random() < 0.3:
            scope["categories"] = rng.sample(CATEGORIES, 2)
        args: dict[str, Any] = {
            "provision": "deny" if deny else "permit",
            "grantee": {"org": requester.org_id},
            "purposes": [PURPOSE_BY_ROLE[requester.role]],
            "scope": scope,
            "valid_from": now_ms - DAY_MS,
            "valid_until": now_ms + 365 * DAY_MS,
        }
        return _sign(self.channel, "consent", "grant", args, patient.signer_ref, patient.key, self._nonce(), now_ms)

    def _request(self, now_ms: int) -> Transaction:
        rng = self._rng
        record_id, _ = self._records[-1 - min(len(self._records) - 1, int(rng.expovariate(1 / 2000)))]
        requester = rng.choice(self._requesters)
        args = {"record_id": record_id, "purpose": PURPOSE_BY_ROLE[requester.role]}
        return _sign(
            self.channel,
            "access",
            "request",
            args,
            requester.signer_ref,
            requester.identity.key,
            self._nonce(),
            now_ms,
        )
