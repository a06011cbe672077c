"""Byzantine peers and a misbehaving orderer, on the embedded network and on the process network.

A peer that executes differently (its contracts act as if a patient had never enrolled, as a peer
whose state lost that row would; an altered ledger file no longer opens, see test_tamper_at_rest.py)
commits a different block; the other organisations' attestations
outvote it, every honest peer flags it (Peer.diverged), and a client reading through it, in process
or over REST, gets no proof that passes (LedgerClient.proof compares with the quorum-attested hash,
and refuses a block no quorum attested, as when the peer withholds attestations). Attestations that are
not signed by the named organisation's peer are dropped; a minority of colluding organisations
cannot move the quorum. An orderer that gives two peers two different batches for one height is
caught by the same attestations. On the replicated network (etcd orderer, one process per
organisation), a peer process running such altered code (tests/security/byzantine_peer.py) is flagged
through the etcd attestation board, its proofs are refused over REST, and a peer catching up from it
refuses the batch it altered. The killed etcd leader is covered in
tests/node/test_process_network.py::test_killing_the_etcd_leader_loses_nothing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from medledger.api import create_app
from medledger.core.encoding import encode
from medledger.core.identity import MemberIdentity, Role, load_identity, load_org_ca
from medledger.ledger.attestations import attest
from medledger.ledger.errors import IntegrityError
from medledger.ledger.receipts import VALID
from medledger.node.attestation_board import EtcdAttestationBoard, quorum_hash
from medledger.node.deployment import ProcessNetwork
from medledger.node.network import EmbeddedNetwork
from medledger.node.peer import Peer
from medledger.node.service import LedgerService
from medledger.node.verification import verify_directory
from medledger.ordering.orderer import OrderedBatch
from medledger.ordering.solo import wall_clock_ms
from medledger.sdk import Credentials, LedgerClient, NoQuorumAttestation, NotTheAttestedBlock, PatientWallet
from medledger.sdk.rest import HttpGateway
from tests.conftest import LedgerHarness, member_client, start_twin
from tests.node.test_process_network import lowest_ordered_block
from tests.security.attacks import AttackClass, AttackLog
from tests.security.byzantine_peer import ForgetfulRegistry
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
    """The etcd calls the attestation board makes, kept in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def put(self, key: str, value: bytes) -> None:
        self.values[key] = value

    def get_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self.values.items() if k.startswith(prefix))

    def get_range(self, start: str, end: str, *, serializable: bool = False) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self.values.items() if start <= k < end)


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


# one organisation's peer process is Byzantine, on the replicated (etcd) network -----------------------
CHANNEL = "medledger"
PROCESS_ORGS = 3
"""St Mary's (Byzantine), City General and Northern Research: the two honest ones are a strict majority."""
HONEST_PROCESSES = ("city-general", "northern-research")
CATCHING_UP = "northern-research"
"""The peer that loses its disk and rebuilds its chain from the others, St Mary's first (the network's
first organisation)."""
REPOSITORY = Path(__file__).resolve().parents[2]
WAIT_S = 30.0


def process_port_base() -> int:
    """Ports clear of the other process-network tests (etcd 24000-24600, peers from 9100) and the etcd tests (26000 on):
    etcd clients on the base + 1..3, etcd peers on + 21..23, the organisations' peers on + 41..43."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return 25000 + 50 * worker


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll `condition` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f} s"
        time.sleep(0.1)
    return found


@dataclass
class ProcessCluster:
    """The etcd network of three peer processes, St Mary's replaced by tests/security/byzantine_peer.py."""

    network: ProcessNetwork
    patient: PatientWallet
    """The patient whose records the Byzantine peer forgets (enrolled by the test)."""
    registrar: MemberIdentity
    """City General's registrar, registered through City General's node."""
    http: list[httpx.Client] = field(default_factory=list)

    def client(self, org_id: str) -> LedgerClient:
        """The registrar reading and writing through `org_id`'s REST API."""
        credentials = Credentials.of_member(self.registrar)
        http = httpx.Client(base_url=self.network.deployment.peer_url(org_id), timeout=10)
        self.http.append(http)
        return LedgerClient(HttpGateway(http, CHANNEL, credentials, node=org_id), credentials)

    def status(self, org_id: str) -> dict[str, Any] | None:
        """`GET /v1/status` of `org_id`'s peer, or None while it does not answer."""
        try:
            response = httpx.get(self.network.deployment.peer_url(org_id) + "/v1/status", timeout=2)
        except httpx.HTTPError:
            return None
        found = response.json() if response.status_code == 200 else None
        return found if isinstance(found, dict) else None

    def log(self, org_id: str) -> str:
        return (self.network.data_dir / "logs" / f"{org_id}.log").read_text(errors="replace")

    def close(self) -> None:
        for http in self.http:
            http.close()


def peer_process_alive(network: ProcessNetwork, org_id: str) -> bool:
    return next(p.alive for p in network.status()[0] if p.org_id == org_id)


def start_byzantine_peer(cluster: ProcessCluster) -> subprocess.Popen[bytes]:
    """Stop St Mary's peer process and run tests/security/byzantine_peer.py in its place, on its ledger."""
    network = cluster.network
    network.kill_peer(BYZANTINE_ORG, signal.SIGTERM)
    wait_until(lambda: not peer_process_alive(network, BYZANTINE_ORG), "St Mary's peer process stopping")
    command = [sys.executable, "-m", "tests.security.byzantine_peer", str(network.data_dir), BYZANTINE_ORG]
    with open(network.data_dir / "logs" / f"{BYZANTINE_ORG}-byzantine.log", "ab") as log:
        process = subprocess.Popen(
            [*command, cluster.patient.pseudonym],
            cwd=REPOSITORY,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_until(lambda: cluster.status(BYZANTINE_ORG) or process.poll() is not None, "the Byzantine peer serving")
    except BaseException:
        stop(process)
        raise
    assert process.poll() is None, f"the Byzantine peer exited: see {network.data_dir / 'logs'}"
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def enrol_registrar(network: ProcessNetwork) -> MemberIdentity:
    """A registrar of City General, registered by City General's admin through City General's node."""
    keys = network.data_dir / "keys" / "city-general"
    admin = load_identity(keys, "admin")
    registrar = load_org_ca(keys, "city-general").enrol("registrar", Role.REGISTRAR, wall_clock_ms())
    credentials = Credentials.of_member(admin)
    with httpx.Client(base_url=network.deployment.peer_url("city-general"), timeout=10) as http:
        admin_client = LedgerClient(HttpGateway(http, CHANNEL, credentials, node="city-general"), credentials)
        admin_client.submit("identity", "register_member", {"certificate": registrar.certificate.der}, timeout=60)
    return registrar


@pytest.fixture
def process_cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    base = process_port_base()
    network = ProcessNetwork.create(
        tmp_path / "net", PROCESS_ORGS, etcd_client_base=base, etcd_peer_base=base + 20, peer_port_base=base + 40
    )
    byzantine: subprocess.Popen[bytes] | None = None
    cluster: ProcessCluster | None = None
    try:
        network.up(timeout=90)
        cluster = ProcessCluster(network, PatientWallet.generate(), enrol_registrar(network))
        byzantine = start_byzantine_peer(cluster)
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        if byzantine is not None:
            stop(byzantine)
        network.down()


def test_a_byzantine_peer_process_is_flagged_through_the_etcd_attestation_board(
    process_cluster: ProcessCluster, attacks: AttackLog
) -> None:
    """One peer process per organisation on a 3-node etcd orderer, St Mary's running altered code
    (tests/security/byzantine_peer.py: its contracts forget a patient, and it leaves that patient's
    registrations out of the batches it hands to peers catching up). A record of that patient commits
    VALID on the honest peers and UNKNOWN_PATIENT on St Mary's, so St Mary's block has another state
    root; through the etcd attestation board both honest peers flag it (`diverged` in their REST
    status), a client reading over St Mary's REST API has its proof refused (NotTheAttestedBlock)
    while City General's is accepted, and Northern Research, rebuilding its chain from St Mary's after
    etcd compacted those batches, refuses St Mary's batch of that block, naming it, and commits nothing
    of it, then takes the block from City General's peer and goes on to the same chain as the honest
    peers."""
    # Prepare
    cluster = process_cluster
    registrar = cluster.client("city-general")
    registrar.submit("identity", "register_patient", cluster.patient.enrolment_args(CHANNEL))
    attacks.tried(BYZANTINE, "Byzantine peer process on the etcd network commits another state root")
    attacks.tried(BYZANTINE, "client reading that peer process's proof over its REST API")
    attacks.tried(BYZANTINE, "that peer process hands a peer catching up a batch with registrations left out")
    # Execute: a record of the forgotten patient, then one more block so etcd can compact the record's batch
    registered = registrar.submit(
        "records",
        "register",
        {
            "patient": cluster.patient.pseudonym,
            "resource_type": "Observation",
            "clinical_date": "2025-12-01",
            "content_hash": os.urandom(32),
            "locator": f"vault://city-general/{os.urandom(16).hex()}",
        },
    )
    registrar.submit("identity", "register_patient", PatientWallet.generate().enrolment_args(CHANNEL))
    honest_proof = registrar.proof(registered.tx_id)
    number = honest_proof.block_number
    statuses = wait_until(lambda: flagged_statuses(cluster, number + 2), "the honest peers flagging St Mary's")
    byzantine = cluster.client(BYZANTINE_ORG)
    byzantine_receipt = byzantine.gateway.receipt_future(registered.tx_id).result(timeout=WAIT_S)
    with pytest.raises(NotTheAttestedBlock) as refused:
        byzantine.proof(registered.tx_id)
    # Execute: Northern Research's peer loses its disk once etcd compacted the record's batch, and catches up
    wait_until(lambda: lowest_ordered_block(cluster.network) > number, "etcd compacting the record's batch")
    cluster.network.kill_peer(CATCHING_UP, signal.SIGKILL)
    wait_until(lambda: not peer_process_alive(cluster.network, CATCHING_UP), "Northern Research's peer stopping")
    shutil.rmtree(cluster.network.data_dir / "peers" / CATCHING_UP)
    cluster.network.start_peer(CATCHING_UP)
    log = wait_until(lambda: refusal_logged(cluster, number), "Northern Research refusing a batch")
    caught_up, honest = wait_until(lambda: on_the_honest_chain(cluster), "Northern Research catching up")
    log = cluster.log(CATCHING_UP)
    # Assert: the record is VALID on the honest peers, UNKNOWN_PATIENT on St Mary's, whose state root differs
    assert honest_proof.receipt.code == VALID
    assert byzantine_receipt.code == "UNKNOWN_PATIENT"
    assert statuses[BYZANTINE_ORG]["state_root"] != statuses["city-general"]["state_root"]
    assert statuses["city-general"]["state_root"] == statuses["northern-research"]["state_root"]
    # Assert: every honest peer flags St Mary's; its proof is refused over REST
    for org_id in HONEST_PROCESSES:
        assert statuses[org_id]["diverged"] == [BYZANTINE_ORG], org_id
    assert "not the block the quorum attested" in str(refused.value)
    # Assert: the catching-up peer refused St Mary's batch of the record's block, naming it, took that
    # block from City General's peer instead, and holds the honest chain
    assert f"{BYZANTINE_ORG} served a batch the quorum did not attest" in log
    assert f"block {number}: its content hashes to" in log and "refused, nothing committed" in log
    assert f"caught up block {number} from city-general" in log
    assert f"caught up block {number} from {BYZANTINE_ORG}" not in log
    assert caught_up["height"] > number
    assert (caught_up["block_hash"], caught_up["state_root"]) == (honest["block_hash"], honest["state_root"])


def flagged_statuses(cluster: ProcessCluster, height: int) -> dict[str, dict[str, Any]] | None:
    """Every peer's REST status once all are at `height` and each honest peer flagged St Mary's, else None."""
    statuses = {}
    for org_id in (BYZANTINE_ORG, *HONEST_PROCESSES):
        status = cluster.status(org_id)
        if status is None or status["height"] < height:
            return None
        statuses[org_id] = status
    return statuses if all(statuses[org_id]["diverged"] for org_id in HONEST_PROCESSES) else None


def on_the_honest_chain(cluster: ProcessCluster) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(catching-up peer's status, City General's) once both stand at the same height, else None."""
    caught_up, honest = cluster.status(CATCHING_UP), cluster.status("city-general")
    if caught_up is None or honest is None or caught_up["height"] != honest["height"]:
        return None
    return caught_up, honest


def refusal_logged(cluster: ProcessCluster, number: int) -> str | None:
    """The catching-up peer's log once it holds the refusal of block `number`."""
    log = cluster.log(CATCHING_UP)
    return log if f"block {number}: its content hashes to" in log else None
