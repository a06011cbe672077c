"""Shared fixtures: a manual clock, a synchronous single-peer ledger harness, and a running
embedded network. The harness applies each batch directly (no threads), so ledger tests are
deterministic; the network fixture runs the real solo orderer and five peers."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from medledger.contracts.default import default_registry
from medledger.core.identity import MemberIdentity, OrgCA, OrgKind, Role
from medledger.ledger.execution import SignatureChecker, check_signatures_serially, genesis_config_of
from medledger.ledger.receipts import Receipt
from medledger.ledger.transactions import Transaction, TransactionBody, new_nonce, sign_transaction
from medledger.node.network import EmbeddedNetwork
from medledger.node.peer import Peer
from medledger.ordering.cutter import CutterConfig
from medledger.ordering.orderer import OrderedBatch
from medledger.sdk import Credentials, LedgerClient, PatientWallet

pytest_plugins = ["tests.security.summary"]
"""The security suite's end-of-run summary (attacks tried per class, all refused, nothing lost)."""

START_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z: where every test clock starts."""
DAY_MS = 86_400_000


class ManualClock:
    """A clock tests move by hand; thread-safe because orderer and clients both read it."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self._now

    def advance(self, ms: int) -> int:
        with self._lock:
            self._now += ms
            return self._now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


HARNESS_ORGS: tuple[tuple[str, OrgKind], ...] = (
    ("st-mary", OrgKind.HOSPITAL),
    ("city-general", OrgKind.HOSPITAL),
    ("northern-research", OrgKind.RESEARCH),
    ("mutual-health", OrgKind.INSURER),
    ("health-authority", OrgKind.REGULATOR),
)


@dataclass
class LedgerHarness:
    """One peer over a real SQLite store, fed batch by batch by the test itself."""

    peer: Peer
    clock: ManualClock
    channel: str
    cas: dict[str, OrgCA]
    admins: dict[str, MemberIdentity]
    members: dict[str, MemberIdentity] = field(default_factory=dict)

    def sign(
        self,
        signer: MemberIdentity | PatientWallet | Credentials,
        contract: str,
        function: str,
        args: Mapping[str, Any],
        *,
        channel: str | None = None,
        timestamp_ms: int | None = None,
    ) -> Transaction:
        credentials = _credentials(signer)
        body = TransactionBody(
            channel=channel or self.channel,
            contract=contract,
            function=function,
            args=dict(args),
            signer=credentials.signer_ref,
            nonce=new_nonce(),
            timestamp_ms=self.clock() if timestamp_ms is None else timestamp_ms,
        )
        return sign_transaction(body, credentials.key)

    def apply(self, raw_transactions: Sequence[bytes]) -> list[Receipt]:
        """Order the given bytes as the next block, at the clock's time; return the receipts."""
        number = self.peer.store.height()
        batch = OrderedBatch(number, self.clock(), tuple(raw_transactions), "test")
        return list(self.peer.apply_batch(batch).receipts)

    def submit(
        self,
        signer: MemberIdentity | PatientWallet | Credentials,
        contract: str,
        function: str,
        args: Mapping[str, Any],
    ) -> Receipt:
        return self.apply([self.sign(signer, contract, function, args).encoded])[0]

    def enrol(self, org_id: str, name: str, role: Role) -> MemberIdentity:
        """Issue a certificate and register the member through its organisation's admin."""
        identity = self.cas[org_id].enrol(name, role, self.clock())
        receipt = self.submit(
            self.admins[org_id], "identity", "register_member", {"certificate": identity.certificate.der}
        )
        assert receipt.is_valid, receipt
        self.members[f"{org_id}/{name}"] = identity
        return identity

    def enrol_patient(self, registrar: MemberIdentity) -> PatientWallet:
        wallet = PatientWallet.generate()
        receipt = self.submit(registrar, "identity", "register_patient", wallet.enrolment_args(self.channel))
        assert receipt.is_valid, receipt
        return wallet

    def query(self, contract: str, name: str, **args: Any) -> Any:
        return self.peer.query(contract, name, args)

    def state_snapshot(self) -> list[tuple[str, bytes, int, int]]:
        return [(r.key, r.value, r.block_number, r.tx_index) for r in self.peer.store.state_rows()]


def _credentials(signer: MemberIdentity | PatientWallet | Credentials) -> Credentials:
    if isinstance(signer, Credentials):
        return signer
    if isinstance(signer, PatientWallet):
        return Credentials.of_patient(signer)
    return Credentials.of_member(signer)


def build_harness(directory: Path, clock: ManualClock, channel: str = "test-channel") -> LedgerHarness:
    cas, admins, genesis_orgs = {}, {}, []
    peer_identity: MemberIdentity | None = None
    for org_id, kind in HARNESS_ORGS:
        ca = OrgCA.create(org_id, kind, clock())
        admin = ca.enrol("admin", Role.ADMIN, clock())
        peer_member = ca.enrol("peer", Role.PEER, clock())
        peer_identity = peer_identity or peer_member
        cas[org_id], admins[org_id] = ca, admin
        genesis_orgs.append(
            {
                "org_id": org_id,
                "kind": kind.value,
                "ca_certificate": ca.certificate_der,
                "members": [admin.certificate.der, peer_member.certificate.der],
            }
        )
    genesis = {"channel": channel, "rules": {}, "created_ms": clock(), "orgs": genesis_orgs}
    assert peer_identity is not None
    peer = Peer("st-mary", directory, peer_identity, default_registry())
    peer.bootstrap(genesis, clock())
    return LedgerHarness(peer, clock, channel, cas, admins)


def start_twin(
    harness: LedgerHarness,
    directory: Path,
    org_id: str = "city-general",
    checker: SignatureChecker = check_signatures_serially,
) -> Peer:
    """A second peer, of another organisation and with its own identity, on the harness's genesis."""
    genesis = harness.peer.store.block(0)
    assert genesis is not None
    identity = harness.cas[org_id].enrol(f"twin-{directory.name}", Role.PEER, genesis.header.timestamp_ms)
    peer = Peer(org_id, directory, identity, default_registry(), checker=checker)
    peer.bootstrap(genesis_config_of(genesis), genesis.header.timestamp_ms)
    return peer


@pytest.fixture
def harness(tmp_path: Path, clock: ManualClock) -> Iterator[LedgerHarness]:
    built = build_harness(tmp_path / "peer", clock)
    yield built
    built.peer.close()


@pytest.fixture
def network(tmp_path: Path, clock: ManualClock) -> Iterator[EmbeddedNetwork]:
    """A running embedded network of the five default organisations, on the manual clock."""
    net = EmbeddedNetwork.create(tmp_path / "net", clock=clock, cutter=CutterConfig(max_tx=100, time_to_cut_ms=20))
    net.start()
    yield net
    net.stop()


def member_client(net: EmbeddedNetwork, org_id: str, name: str, role: Role) -> tuple[LedgerClient, MemberIdentity]:
    """Enrol a new member of `org_id` through its admin and return a client signing as them."""
    identity = net.ca(org_id).enrol(name, role, net.clock())
    admin = LedgerClient(net.gateway(org_id), Credentials.of_member(net.admin(org_id)))
    admin.submit("identity", "register_member", {"certificate": identity.certificate.der})
    return LedgerClient(net.gateway(org_id), Credentials.of_member(identity)), identity
