"""Byzantine peers and a misbehaving orderer on the embedded network.

A peer that executes differently (its contracts act as if a patient had never enrolled, as a peer
whose state lost that row would; an altered ledger file no longer opens, see test_tamper_at_rest.py)
commits a different block; the other organisations' attestations
outvote it, every honest peer flags it (Peer.diverged), and a client reading through it, in process
or over REST, gets no proof that passes (LedgerClient.proof compares with the quorum-attested hash,
and refuses a block no quorum attested, as when the peer withholds attestations). Attestations that are
not signed by the named organisation's peer are dropped; a minority of colluding organisations
cannot move the quorum. An orderer that gives two peers two different batches for one height is
caught by the same attestations. A Byzantine peer *process* on the replicated (etcd) network is not
covered yet: its test is a named, skipped placeholder here. The killed etcd leader is covered in
tests/node/test_process_network.py::test_killing_the_etcd_leader_loses_nothing.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medledger.api import create_app
from medledger.contracts.default import default_registry
from medledger.contracts.framework import ContractError, ContractRegistry
from medledger.contracts.identity import apply_genesis
from medledger.core.encoding import encode
from medledger.core.identity import MemberIdentity, Role
from medledger.ledger.attestations import attest
from medledger.ledger.errors import IntegrityError
from medledger.ledger.execution import TxContext
from medledger.ledger.receipts import VALID
from medledger.ledger.state import TxState
from medledger.node.attestation_board import EtcdAttestationBoard, quorum_hash
from medledger.node.network import EmbeddedNetwork
from medledger.node.peer import Peer
from medledger.node.service import LedgerService
from medledger.node.verification import verify_directory
from medledger.ordering.orderer import OrderedBatch
from medledger.sdk import Credentials, LedgerClient, NoQuorumAttestation, NotTheAttestedBlock, PatientWallet
from medledger.sdk.rest import HttpGateway
from tests.conftest import LedgerHarness, member_client, start_twin
from tests.security.attacks import AttackClass, AttackLog
from tests.security.ordering import settle_attestations

BYZANTINE = AttackClass.BYZANTINE
BYZANTINE_ORG = "st-mary"
HONEST_ORGS = ("city-general", "health-authority", "mutual-health", "northern-research")


@dataclass
class Registration:
    """A record registered while one peer executed differently."""

    tx_id: bytes
    block_number: int


@dataclass
class Cluster:
    network: EmbeddedNetwork
    registrar: MemberIdentity
    patient: PatientWallet

    def client(self, org_id: str) -> LedgerClient:
        """The registrar's client reading through `org_id`'s peer."""
        return LedgerClient(self.network.gateway(org_id), Credentials.of_member(self.registrar))

    def peer(self, org_id: str) -> Peer:
        return self.network.peers[org_id]

    def register(self, label: str, through: str = "city-general") -> Registration:
        receipt = self.client(through).submit(
            "records",
            "register",
            {
                "patient": self.patient.pseudonym,
                "resource_type": "Observation",
                "clinical_date": "2025-12-01",
                "content_hash": os.urandom(32),
                "locator": f"vault://st-mary/{os.urandom(16).hex()}",
            },
            check=False,
        )
        assert self.network.wait_until_synced()
        location = self.peer(through).store.locate(receipt.tx_id)
        assert location is not None
        return Registration(receipt.tx_id, location.block_number)

    def settle_attestations(self, number: int) -> None:
        """Every peer has stored every organisation's attestation of block `number`."""
        settle_attestations(self.network, number)


@pytest.fixture
def cluster(network: EmbeddedNetwork) -> Iterator[Cluster]:
    registrar_client, registrar = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    patient = PatientWallet.generate()
    registrar_client.submit("identity", "register_patient", patient.enrolment_args(network.channel))
    assert network.wait_until_synced()
    yield Cluster(network, registrar, patient)


class ForgetfulRegistry(ContractRegistry):
    """The contracts as the Byzantine peer runs them: records of one patient are refused as if the
    patient had never enrolled."""

    def __init__(self, patient: str) -> None:
        super().__init__(default_registry().contracts.values(), genesis=apply_genesis)
        self.patient = patient

    def execute(self, state: TxState, ctx: TxContext, contract: str, function: str, args: Mapping[str, Any]) -> None:
        if (contract, function) == ("records", "register") and args.get("patient") == self.patient:
            raise ContractError("UNKNOWN_PATIENT", f"no enrolled patient {self.patient}")
        super().execute(state, ctx, contract, function, args)


def make_diverge(cluster: Cluster) -> None:
    """From now on the Byzantine peer executes registrations for the patient differently."""
    cluster.peer(BYZANTINE_ORG).registry = ForgetfulRegistry(cluster.patient.pseudonym)


def test_a_diverging_peer_is_flagged_and_its_proofs_are_refused(cluster: Cluster, attacks: AttackLog) -> None:
    # Prepare: the Byzantine peer will execute the next registration differently
    make_diverge(cluster)
    attacks.tried(BYZANTINE, "diverging peer commits another state root: flagged by every honest peer")
    attacks.tried(BYZANTINE, "client reading through that peer gets a proof of its block")
    attacks.tried(BYZANTINE, "medledger verify of the network directory")
    # Execute
    registration = cluster.register("diverging")
    cluster.settle_attestations(registration.block_number)
    byzantine_receipt = cluster.peer(BYZANTINE_ORG).receipt(registration.tx_id)
    with pytest.raises(NotTheAttestedBlock) as refused:
        cluster.client(BYZANTINE_ORG).proof(registration.tx_id)
    honest_proof = cluster.client("city-general").proof(registration.tx_id)
    report = verify_directory(cluster.network.data_dir)
    # Assert
    assert byzantine_receipt is not None and byzantine_receipt.code == "UNKNOWN_PATIENT"
    assert honest_proof.receipt.code == VALID
    for org_id in HONEST_ORGS:
        assert cluster.peer(org_id).diverged() == (BYZANTINE_ORG,), org_id
    assert "not the block the quorum attested" in str(refused.value)
    assert not report.ok and BYZANTINE_ORG in (report.fault or "")


def test_a_peer_that_withholds_attestations_cannot_pass_off_its_block(cluster: Cluster, attacks: AttackLog) -> None:
    # Prepare: the Byzantine peer diverges, then drops the attestations it holds for that block
    make_diverge(cluster)
    registration = cluster.register("diverging")
    cluster.settle_attestations(registration.block_number)
    withhold_attestations(cluster, registration.block_number)
    attacks.tried(BYZANTINE, "Byzantine peer withholds the attestations of its diverging block")
    # Execute
    with pytest.raises(NoQuorumAttestation) as refused:
        cluster.client(BYZANTINE_ORG).proof(registration.tx_id, timeout=0.5)
    # Assert
    assert refused.value.block_number == registration.block_number
    assert "no majority of organisations attested" in str(refused.value)


def withhold_attestations(cluster: Cluster, number: int) -> None:
    """Delete every attestation of block `number` from the Byzantine peer's ledger file."""
    db = sqlite3.connect(cluster.peer(BYZANTINE_ORG).store.path, isolation_level=None)
    try:
        db.execute("DELETE FROM attestations WHERE block_number=?", (number,))
    finally:
        db.close()


def rest_client(cluster: Cluster, org_id: str, http: TestClient) -> LedgerClient:
    """The registrar's client reading through `org_id`'s REST API."""
    credentials = Credentials.of_member(cluster.registrar)
    gateway = HttpGateway(http, cluster.network.channel, credentials, node=org_id)
    gateway.now_ms = cluster.network.clock  # type: ignore[method-assign]
    return LedgerClient(gateway, credentials)


def rest_face(cluster: Cluster, org_id: str) -> TestClient:
    assert cluster.network.orderer is not None
    service = LedgerService(cluster.peer(org_id), cluster.network.orderer, cluster.network.clock)
    return TestClient(create_app(service), raise_server_exceptions=False)


def test_over_rest_a_diverged_or_withholding_peer_cannot_pass_off_its_block(
    cluster: Cluster, attacks: AttackLog
) -> None:
    # Prepare: the Byzantine peer diverges on a registration; the client checks attestations itself
    make_diverge(cluster)
    registration = cluster.register("diverging")
    cluster.settle_attestations(registration.block_number)
    attacks.tried(BYZANTINE, "client reading a diverged peer's proof over its REST API")
    attacks.tried(BYZANTINE, "Byzantine peer withholds the attestations of its diverging block from REST clients")
    # Execute
    with rest_face(cluster, BYZANTINE_ORG) as byzantine, rest_face(cluster, "city-general") as honest:
        with pytest.raises(NotTheAttestedBlock) as diverged:
            rest_client(cluster, BYZANTINE_ORG, byzantine).proof(registration.tx_id)
        honest_proof = rest_client(cluster, "city-general", honest).proof(registration.tx_id)
        withhold_attestations(cluster, registration.block_number)
        with pytest.raises(NoQuorumAttestation) as withheld:
            rest_client(cluster, BYZANTINE_ORG, byzantine).proof(registration.tx_id, timeout=0.5)
    # Assert
    assert "not the block the quorum attested" in str(diverged.value)
    assert honest_proof.receipt.code == VALID
    assert withheld.value.block_number == registration.block_number


def test_attestations_not_signed_by_the_named_organisations_peer_are_dropped(
    cluster: Cluster, attacks: AttackLog
) -> None:
    # Prepare: genuine attestation of the latest block by City General, and forgeries of it
    net = cluster.network
    receiver = cluster.peer("health-authority")
    number = receiver.store.height() - 1
    block = receiver.store.block(number)
    assert block is not None
    fake_hash, fake_root = os.urandom(32), os.urandom(32)
    city_peer = net.member_identity("city-general", "peer")
    city_admin = net.admin("city-general")
    mary_peer = net.member_identity("st-mary", "peer")
    genuine = attest(
        number, block.hash, block.header.state_root, "city-general", city_peer.certificate.cert_id, city_peer.key
    )
    forgeries = {
        "signed by the organisation's admin, not its peer": attest(
            number, fake_hash, fake_root, "city-general", city_admin.certificate.cert_id, city_admin.key
        ),
        "St Mary's peer attesting in City General's name": attest(
            number, fake_hash, fake_root, "city-general", mary_peer.certificate.cert_id, mary_peer.key
        ),
        "random signature": dataclasses.replace(genuine, block_hash=fake_hash, signature=os.urandom(64)),
        "genuine signature, block hash changed": dataclasses.replace(genuine, block_hash=fake_hash),
        "genuine signature, hash and root swapped": dataclasses.replace(
            genuine, block_hash=genuine.state_root, state_root=genuine.block_hash
        ),
        "signer certificate never registered": attest(
            number,
            fake_hash,
            fake_root,
            "city-general",
            (outsider := net.ca("city-general").enrol("fake-peer", Role.PEER, net.clock())).certificate.cert_id,
            outsider.key,
        ),
    }  # fmt: skip
    for what in forgeries:
        attacks.tried(BYZANTINE, f"forged attestation: {what}")
    # Execute
    for forged in forgeries.values():
        receiver.receive_attestation(forged)
    receiver.receive_attestation(genuine)
    receiver.flush_attestations()
    # Assert
    stored = {a.org_id: a for a in receiver.store.attestations(number)}
    assert stored["city-general"] == genuine
    assert receiver.diverged() == ()
    assert quorum_hash(receiver, receiver.store.attestations(number)) == block.hash


def test_a_colluding_minority_cannot_move_the_quorum(cluster: Cluster, attacks: AttackLog) -> None:
    # Prepare: two organisations sign, with their real peer keys, a block that does not exist
    net = cluster.network
    registration = cluster.register("attested")
    cluster.settle_attestations(registration.block_number)
    fake_hash, fake_root = os.urandom(32), os.urandom(32)
    colluders = ("mutual-health", "northern-research")
    attacks.tried(BYZANTINE, "two of five organisations attest a block that was never committed")
    # Execute
    for org_id in colluders:
        peer_member = net.member_identity(org_id, "peer")
        forged = attest(
            registration.block_number, fake_hash, fake_root, org_id, peer_member.certificate.cert_id, peer_member.key
        )
        for receiver_org, receiver in net.peers.items():
            if receiver_org not in colluders:
                receiver.receive_attestation(forged)
    for peer in net.peers.values():
        peer.flush_attestations()
    proven = cluster.client("city-general").proof(registration.tx_id)
    # Assert
    honest = cluster.peer("city-general")
    assert honest.diverged() == colluders
    assert proven.block_hash == honest.store.block(registration.block_number).hash  # type: ignore[union-attr]


class MemoryKV:
    """The two etcd calls the attestation board makes, kept in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def put(self, key: str, value: bytes) -> None:
        self.values[key] = value

    def get_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self.values.items() if k.startswith(prefix))


def test_a_malformed_attestation_on_the_board_is_dropped_not_fatal(cluster: Cluster, attacks: AttackLog) -> None:
    # Prepare: a board entry naming City General's real peer certificate, with a text "signature"
    reader = cluster.peer("health-authority")
    number = reader.store.height() - 1
    city_peer = cluster.network.member_identity("city-general", "peer")
    board = EtcdAttestationBoard(MemoryKV(), cluster.network.channel)
    malformed = {
        "block_number": number,
        "block_hash": os.urandom(32),
        "state_root": os.urandom(32),
        "org_id": "city-general",
        "signer": city_peer.certificate.cert_id,
        "signature": "s" * 64,
    }
    for attestation in reader.store.attestations(number):
        board.publish(attestation)
    board.kv.put(f"{board.prefix}{number:012d}/forged-entry", encode(malformed))
    attacks.tried(BYZANTINE, "malformed attestation (text signature) written to the attestation board")
    # Execute
    try:
        agreed = quorum_hash(reader, board.fetch(number))
    except TypeError as crash:
        outcome: bytes | TypeError | None = crash
    else:
        outcome = agreed
    # Assert
    assert not isinstance(outcome, TypeError), f"quorum_hash crashed: {outcome}"


def test_an_equivocating_orderer_is_caught_by_the_attestations(
    harness: LedgerHarness, tmp_path: Path, attacks: AttackLog
) -> None:
    # Prepare: a second peer (City General's), registered in block 1 on both peers alike
    twin = start_twin(harness, tmp_path / "twin")
    enrol_twin = harness.sign(
        harness.admins["city-general"], "identity", "register_member", {"certificate": twin.identity.certificate.der}
    )
    shared = OrderedBatch(1, harness.clock(), (enrol_twin.encoded,), "solo")
    harness.peer.apply_batch(shared)
    twin.apply_batch(shared)
    registrar = harness.cas["st-mary"].enrol("registrar", Role.REGISTRAR, harness.clock())
    to_first = harness.sign(
        harness.admins["st-mary"], "identity", "register_member", {"certificate": registrar.certificate.der}
    )
    to_second = harness.sign(
        harness.admins["city-general"], "identity", "revoke_member", {"cert_id": "0" * 64, "reason": "x"}
    )
    attacks.tried(BYZANTINE, "orderer gives two peers different batches for one height")
    attacks.tried(BYZANTINE, "orderer re-sends a different batch for a height the peer committed")
    attacks.tried(BYZANTINE, "orderer stamps a block before its predecessor")
    # Execute: block 2 differs between the two peers
    first = harness.peer.apply_batch(OrderedBatch(2, harness.clock(), (to_first.encoded,), "solo"))
    twin.apply_batch(OrderedBatch(2, harness.clock(), (to_second.encoded,), "solo"))
    for attestation in harness.peer.store.attestations(2):
        twin.receive_attestation(attestation)
    for attestation in twin.store.attestations(2):
        harness.peer.receive_attestation(attestation)
    with pytest.raises(IntegrityError) as resent:
        harness.peer.apply_batch(OrderedBatch(2, harness.clock(), (to_second.encoded,), "solo"))
    with pytest.raises(ValueError) as backdated:
        harness.peer.apply_batch(OrderedBatch(3, first.block.header.timestamp_ms - 1, (), "solo"))
    twin.close()
    # Assert
    assert harness.peer.diverged() == ("city-general",)
    assert twin.diverged() == ("st-mary",)
    assert "different batch" in resent.value.problem
    assert "before its predecessor" in str(backdated.value)


@pytest.mark.skip(reason="not covered yet: a Byzantine peer process on the replicated etcd network")
def test_a_byzantine_peer_process_is_flagged_through_the_etcd_attestation_board() -> None:
    """With one peer process per organisation on a 3-node etcd orderer: alter one peer's ledger file
    while it runs, register a record, and check that every other peer flags it (status `diverged`
    over REST), that a peer catching up from it refuses its batch (the quorum-attested hash differs),
    and that a proof fetched from it fails against the attestations fetched from the board."""
