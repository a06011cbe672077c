"""The replicated network as processes: a 3-node etcd cluster and one peer process per organisation.

Each test starts and stops its own network. Load is a stream of signed transactions submitted over
the peers' REST APIs; a submission counts as acknowledged when a peer answered it (etcd has then
stored it on a majority). Afterwards every peer's ledger is opened read-only and checked: every
acknowledged transaction committed exactly once, and all peers at the same height and state root.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from medledger.core.identity import Role, load_identity, load_org_ca
from medledger.ledger.sqlite_store import SQLiteLedgerStore
from medledger.ledger.transactions import Transaction
from medledger.node.deployment import ProcessNetwork
from medledger.ordering.etcd import EtcdKV
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from medledger.sdk.rest import HttpGateway

ORG_COUNT = 4


def worker_offset() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0) * 50


@pytest.fixture
def network(tmp_path: Path) -> Iterator[ProcessNetwork]:
    offset = worker_offset()
    built = ProcessNetwork.create(
        tmp_path / "net",
        ORG_COUNT,
        etcd_client_base=24000 + offset,
        etcd_peer_base=24020 + offset,
        peer_port_base=9100 + offset,
    )
    built.up(timeout=90)
    try:
        yield built
    finally:
        built.down()


@dataclass
class Load:
    """Signed registrations sent round-robin to the peers; retried with the same bytes until acknowledged."""

    network: ProcessNetwork
    client: LedgerClient
    acknowledged: list[Transaction] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def submit(self, tx: Transaction, deadline_s: float = 30.0) -> None:
        orgs = list(self.network.deployment.peer_ports)
        deadline = time.monotonic() + deadline_s
        attempt = 0
        while time.monotonic() < deadline:
            url = self.network.deployment.peer_url(orgs[(len(self.acknowledged) + attempt) % len(orgs)])
            attempt += 1
            try:
                response = httpx.post(
                    url + "/v1/transactions",
                    json={"tx": base64.b64encode(tx.encoded).decode(), "wait_seconds": 0},
                    timeout=10,
                )
                if response.status_code == 200:
                    self.acknowledged.append(tx)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.failures.append(tx.tx_id.hex())

    def run(self, channel: str) -> None:
        while not self.stop.is_set():
            wallet = PatientWallet.generate()
            self.submit(self.client.prepare("identity", "register_patient", wallet.enrolment_args(channel)))
            time.sleep(0.005)


RESUME_WITHIN_S = 60.0
"""How long after the leader's kill 20 more submissions must have been acknowledged (a new leader is
elected in about a second; the rest is this machine's load)."""


def wait_until_true(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def registrar_client(network: ProcessNetwork) -> LedgerClient:
    """Enrol a registrar at st-mary through its admin, over st-mary's REST API."""
    keys = network.data_dir / "keys" / "st-mary"
    admin = load_identity(keys, "admin")
    ca = load_org_ca(keys, "st-mary")
    registrar = ca.enrol("registrar", Role.REGISTRAR, int(time.time() * 1000))
    url = network.deployment.peer_url("st-mary")
    channel = "medledger"
    admin_client = LedgerClient(
        HttpGateway(httpx.Client(base_url=url), channel, Credentials.of_member(admin)), Credentials.of_member(admin)
    )
    admin_client.submit("identity", "register_member", {"certificate": registrar.certificate.der}, timeout=60)
    credentials = Credentials.of_member(registrar)
    return LedgerClient(HttpGateway(httpx.Client(base_url=url), channel, credentials), credentials)


def wait_for_agreement(network: ProcessNetwork, acknowledged: Sequence[Transaction] = (), timeout: float = 60.0) -> int:
    """The height every peer agrees on (one height, one state root), once each holds every `acknowledged`
    transaction: agreeing alone is not enough, a batch is cut up to the cutter's interval after its
    transactions were acknowledged, and right after an etcd leader is killed only once a new one is elected."""
    wait_until_committed(network, acknowledged, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        peers, _ = network.status()
        heights = {p.height for p in peers}
        roots = {p.state_root for p in peers}
        if len(heights) == 1 and None not in heights and len(roots) == 1:
            return heights.pop() or 0
        time.sleep(0.5)
    raise AssertionError(f"peers did not agree within {timeout} s: {network.status()[0]}")


def committed_everywhere(network: ProcessNetwork, acknowledged: Sequence[Transaction]) -> bool:
    """Whether every peer's ledger holds an id-consuming receipt of each acknowledged transaction."""
    for org_id in network.deployment.peer_ports:
        store = SQLiteLedgerStore(network.data_dir / "peers" / org_id / "ledger.sqlite", read_only=True)
        try:
            consumed = {bytes(tx_id) for _, _, tx_id, was_consumed, _ in store.raw_rows("receipts") if was_consumed}
        finally:
            store.close()
        if any(tx.tx_id not in consumed for tx in acknowledged):
            return False
    return True


def wait_until_committed(network: ProcessNetwork, acknowledged: Sequence[Transaction], timeout: float = 60.0) -> None:
    """Wait until every peer committed every acknowledged transaction (stopping the network before would
    cut what is still queued at shutdown, after the peers stopped following)."""
    if not acknowledged:
        return
    deadline = time.monotonic() + timeout
    while not committed_everywhere(network, acknowledged):
        assert time.monotonic() < deadline, f"acknowledged transactions not committed on every peer within {timeout} s"
        time.sleep(0.5)


def assert_committed_once(network: ProcessNetwork, acknowledged: list[Transaction]) -> None:
    """Open every peer's ledger read-only: each acknowledged tx has exactly one id-consuming receipt."""
    roots = set()
    for org_id in network.deployment.peer_ports:
        store = SQLiteLedgerStore(network.data_dir / "peers" / org_id / "ledger.sqlite", read_only=True)
        try:
            rows = store.raw_rows("receipts")
            consumed: dict[bytes, int] = {}
            for _, _, tx_id, was_consumed, _ in rows:
                if was_consumed:
                    consumed[bytes(tx_id)] = consumed.get(bytes(tx_id), 0) + 1
            lost = [tx.tx_id.hex() for tx in acknowledged if consumed.get(tx.tx_id, 0) == 0]
            twice = [tx_id.hex() for tx_id, count in consumed.items() if count > 1]
            assert not lost, f"{org_id}: {len(lost)} acknowledged transactions never committed: {lost[:3]}"
            assert not twice, f"{org_id}: transactions committed twice: {twice[:3]}"
            last = store.last_block()
            assert last is not None
            roots.add((last.number, last.header.state_root))
        finally:
            store.close()
    assert len(roots) == 1, f"peers differ: {roots}"


def test_killing_the_etcd_leader_loses_nothing(network: ProcessNetwork) -> None:
    # Prepare
    client = registrar_client(network)
    load = Load(network, client)
    worker = threading.Thread(target=load.run, args=("medledger",))
    worker.start()
    time.sleep(3)
    cluster = network._attached_cluster()
    assert cluster is not None
    # Execute: SIGKILL the leader mid-load
    before = len(load.acknowledged)
    cluster.kill(cluster.leader(), signal.SIGKILL)
    resumed = wait_until_true(lambda: len(load.acknowledged) > before + 20 or bool(load.failures), RESUME_WITHIN_S)
    load.stop.set()
    worker.join(timeout=60)
    # Assert: writes resumed, nothing acknowledged lost or doubled, peers agree
    assert not load.failures, f"submissions that never got through: {load.failures[:3]}"
    assert resumed, f"writes did not resume within {RESUME_WITHIN_S} s of the leader being killed"
    wait_for_agreement(network, load.acknowledged)
    network.down()
    assert_committed_once(network, load.acknowledged)


def test_a_killed_peer_catches_up_after_restart(network: ProcessNetwork) -> None:
    # Prepare
    client = registrar_client(network)
    load = Load(network, client)
    worker = threading.Thread(target=load.run, args=("medledger",))
    worker.start()
    time.sleep(2)
    # Execute: SIGKILL a peer mid-load, keep loading, restart it
    network.kill_peer("northern-research", signal.SIGKILL)
    time.sleep(4)
    network.start_peer("northern-research")
    network.wait_until_serving(["northern-research"])
    time.sleep(2)
    load.stop.set()
    worker.join(timeout=60)
    # Assert
    assert not load.failures
    height = wait_for_agreement(network, load.acknowledged)
    assert height > 3
    network.down()
    assert_committed_once(network, load.acknowledged)


def test_the_whole_network_restarts_and_a_retried_submission_commits_once(network: ProcessNetwork) -> None:
    # Prepare
    client = registrar_client(network)
    load = Load(network, client)
    for _ in range(30):
        load.submit(
            client.prepare("identity", "register_patient", PatientWallet.generate().enrolment_args("medledger"))
        )
    retried = client.prepare("identity", "register_patient", PatientWallet.generate().enrolment_args("medledger"))
    load.submit(retried)
    height_before = wait_for_agreement(network, load.acknowledged)
    # Execute: stop everything, start again, submit the same bytes again
    network.down()
    network.up(timeout=90)
    load.submit(retried)
    load.submit(client.prepare("identity", "register_patient", PatientWallet.generate().enrolment_args("medledger")))
    # Assert
    height_after = wait_for_agreement(network, load.acknowledged)
    assert height_after > height_before
    receipt = client.gateway.receipt_future(retried.tx_id).result(timeout=30)
    assert receipt.is_valid
    network.down()
    assert_committed_once(network, load.acknowledged)


def test_status_names_the_leader_and_every_peer(network: ProcessNetwork) -> None:
    # Execute
    peers, etcd = network.status()
    # Assert
    assert len(peers) == ORG_COUNT and all(p.height is not None for p in peers)
    assert etcd["running"] and etcd["leader"] in (0, 1, 2)


def lowest_ordered_block(network: ProcessNetwork) -> int:
    """The lowest block still held by the etcd orderer (compaction removes what every peer read)."""
    kv = EtcdKV(network.deployment.endpoints)
    keys = [key for key, _ in kv.get_prefix("/medledger/medledger/blocks/")]
    kv.close()
    return min(int(key.rsplit(b"/", 1)[-1]) for key in keys) if keys else 0


def test_a_peer_behind_a_compaction_catches_up_from_other_peers(network: ProcessNetwork) -> None:
    # Prepare: enough blocks that compaction removes the early ones from etcd
    client = registrar_client(network)
    load = Load(network, client)
    deadline = time.monotonic() + 60
    while lowest_ordered_block(network) <= 3 and time.monotonic() < deadline:
        for _ in range(20):
            load.submit(
                client.prepare("identity", "register_patient", PatientWallet.generate().enrolment_args("medledger"))
            )
        time.sleep(1)
    floor = lowest_ordered_block(network)
    assert floor > 3, "compaction never removed early blocks"
    # Execute: the research institute's peer loses its disk and starts from genesis
    network.kill_peer("northern-research", signal.SIGKILL)
    time.sleep(0.5)
    shutil.rmtree(network.data_dir / "peers" / "northern-research")
    network.start_peer("northern-research")
    network.wait_until_serving(["northern-research"])
    # Assert: it rebuilt the blocks etcd no longer holds from its peers, checked against the quorum
    height = wait_for_agreement(network, load.acknowledged, timeout=90)
    assert height > floor
    log = (network.data_dir / "logs" / "northern-research.log").read_text()
    assert "caught up block" in log
    network.down()
    assert_committed_once(network, load.acknowledged)
