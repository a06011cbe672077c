"""The etcd orderer beyond the common suite: racing cutters never fork, retries are stored once, a killed
leader costs seconds and loses nothing acknowledged, compaction removes only what every reader committed."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from medledger.ordering.cutter import CutterConfig
from medledger.ordering.etcd import BatchCompacted, EtcdOrderer, QueuePosition
from medledger.ordering.etcd_client import (
    DEFAULT_REQUEST_TIMEOUT,
    PROPOSAL_TIMEOUT_S,
    EtcdClient,
    EtcdCompacted,
    prefix_end,
)
from medledger.ordering.etcd_cluster import EtcdCluster
from medledger.ordering.orderer import OrderedBatch, OrderingError


@pytest.fixture
def orderers() -> Iterator[list[EtcdOrderer]]:
    made: list[EtcdOrderer] = []
    yield made
    for orderer in made:
        orderer.close()


def read_until(orderer: EtcdOrderer, expected_tx: int, timeout: float = 20.0, first: int = 1) -> list[OrderedBatch]:
    """Batches from `first` on until they hold `expected_tx` transactions (or the time is up)."""
    batches: list[OrderedBatch] = []
    number, seen, deadline = first, 0, time.monotonic() + timeout
    while seen < expected_tx and time.monotonic() < deadline:
        batch = orderer.read(number, timeout=0.5)
        if batch is None:
            continue
        batches.append(batch)
        seen += len(batch.transactions)
        number += 1
    return batches


def record_advances(orderer: EtcdOrderer) -> dict[int, bytes]:
    """Watch which batch hash the cutter of `orderer` took for each height (its own or adopted)."""
    taken: dict[int, bytes] = {}
    advance = orderer._advance

    def recording(batch: OrderedBatch, cursor: QueuePosition) -> None:
        taken[batch.number] = batch.batch_hash
        advance(batch, cursor)

    orderer._advance = recording  # type: ignore[method-assign]
    return taken


def submit_concurrently(targets: list[EtcdOrderer], txs: list[bytes], threads: int) -> None:
    def worker(k: int) -> None:
        for i in range(k, len(txs), threads):
            targets[i % len(targets)].submit(txs[i])

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def test_two_racing_cutters_never_fork_and_order_every_transaction_once(
    etcd_cluster: EtcdCluster, channel: str, orderers: list[EtcdOrderer]
) -> None:
    # Prepare: two cutters on one channel, small batches and a short time-to-cut so they race for most heights
    config = CutterConfig(max_tx=7, time_to_cut_ms=5)
    first = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="cutter-a")
    second = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="cutter-b")
    reader = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="reader", cutter=False)
    orderers.extend([first, second, reader])
    taken = [record_advances(first), record_advances(second)]
    sent = [f"race-{i}".encode() for i in range(600)]
    # Execute
    submit_concurrently([first, second], sent, threads=12)
    batches = read_until(reader, len(sent))
    time.sleep(0.3)  # let the slower cutter adopt the last batches
    # Assert: one chain, every transaction exactly once, both cutters agree with it at every height they took
    ordered = Counter(tx for batch in batches for tx in batch.transactions)
    assert set(ordered) == set(sent) and set(ordered.values()) == {1}
    assert [batch.number for batch in batches] == list(range(1, len(batches) + 1))
    assert all(len(batch.transactions) <= 7 for batch in batches)
    stamps = [batch.timestamp_ms for batch in batches]
    assert stamps == sorted(stamps)
    stored = {batch.number: batch.batch_hash for batch in batches}
    for view in taken:
        assert view and all(stored[number] == digest for number, digest in view.items())
    assert reader.height() == len(batches) + 1


def test_a_standby_cutter_adopts_the_first_cutters_batches_and_takes_over_when_it_stops(
    etcd_cluster: EtcdCluster, channel: str, orderers: list[EtcdOrderer]
) -> None:
    # Prepare: a first cutter, and one standing by for 0.5 s before it writes a batch it has ready
    config = CutterConfig(max_tx=5, time_to_cut_ms=10)
    first = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="first")
    standby = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="standby", standby_s=0.5)
    reader = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="reader", cutter=False)
    orderers.extend([first, standby, reader])
    taken = record_advances(standby)
    early = [f"early-{i}".encode() for i in range(200)]
    late = [f"late-{i}".encode() for i in range(60)]
    # Execute: load while both run; then the first cutter stops and the load goes on
    submit_concurrently([first, standby], early, threads=8)
    batches = read_until(reader, len(early))
    first.close()
    submit_concurrently([standby], late, threads=4)
    batches += read_until(reader, len(late), first=len(batches) + 1)
    time.sleep(0.3)
    # Assert: every transaction once, on one chain; while the first ran it wrote every batch and the one
    # standing by took each of them as written; afterwards the standby cut the rest itself
    ordered = Counter(tx for batch in batches for tx in batch.transactions)
    assert set(ordered) == set(early + late) and set(ordered.values()) == {1}
    assert [batch.number for batch in batches] == list(range(1, len(batches) + 1))
    writers = [batch.orderer_id for batch in batches]
    boundary = max(i for i, batch in enumerate(batches) if set(batch.transactions) & set(early)) + 1
    assert set(writers[:boundary]) == {"first"}
    assert set(writers[boundary:]) == {"standby"}
    assert all(taken[batch.number] == batch.batch_hash for batch in batches)


def test_a_negative_standby_is_refused(etcd_cluster: EtcdCluster, channel: str) -> None:
    with pytest.raises(ValueError, match="standby_s"):
        EtcdOrderer(etcd_cluster.endpoints, channel, orderer_id="x", standby_s=-1.0)


def test_a_retried_identical_submission_is_stored_and_ordered_once(
    etcd_cluster: EtcdCluster, channel: str, orderers: list[EtcdOrderer]
) -> None:
    # Prepare
    cutting = EtcdOrderer(etcd_cluster.endpoints, channel, CutterConfig(time_to_cut_ms=20), orderer_id="a")
    other = EtcdOrderer(etcd_cluster.endpoints, channel, CutterConfig(time_to_cut_ms=20), orderer_id="b", cutter=False)
    orderers.extend([cutting, other])
    # Execute: the same bytes submitted three times, twice at once, through two orderers
    cutting.submit(b"retried")
    submit_concurrently([cutting, other], [b"retried", b"retried"], threads=2)
    cutting.submit(b"marker")
    batches = read_until(cutting, 2)
    # Assert
    assert [tx for batch in batches for tx in batch.transactions] == [b"retried", b"marker"]
    client = EtcdClient(etcd_cluster.endpoints)
    queued, _, _ = client.range(f"/medledger/{channel}/txq/", prefix_end(f"/medledger/{channel}/txq/"))
    client.close()
    assert sorted(kv.value for kv in queued) == [b"marker", b"retried"]
    assert all(kv.version == 1 for kv in queued)


def test_a_transaction_over_the_batch_limit_is_refused(
    etcd_cluster: EtcdCluster, channel: str, orderers: list[EtcdOrderer]
) -> None:
    # Prepare
    orderer = EtcdOrderer(etcd_cluster.endpoints, channel, CutterConfig(max_bytes=1000), orderer_id="a")
    orderers.append(orderer)
    # Execute / Assert
    with pytest.raises(OrderingError, match="1001 bytes exceeds the batch limit of 1000"):
        orderer.submit(b"x" * 1001)


def test_a_cutter_config_over_the_request_limit_is_refused_clearly() -> None:
    # Execute / Assert: no etcd is contacted; the limits alone are wrong
    with pytest.raises(OrderingError, match=r"over the cluster's --max-request-bytes of 1572864: lower max_bytes"):
        EtcdOrderer(
            ["http://127.0.0.1:1"],
            "too-big",
            CutterConfig(max_bytes=1_572_864),
            orderer_id="a",
            max_request_bytes=1_572_864,
        )


def test_a_large_batch_up_to_the_limit_is_ordered(
    etcd_cluster: EtcdCluster, channel: str, orderers: list[EtcdOrderer]
) -> None:
    # Prepare: a 4 MB batch of 400 KB transactions, well over etcd's stock 1.5 MiB request limit
    config = CutterConfig(max_tx=10, max_bytes=4_000_000, time_to_cut_ms=60_000)
    orderer = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="a")
    orderers.append(orderer)
    sent = [bytes([i]) * 400_000 for i in range(10)]
    # Execute
    submit_concurrently([orderer], sent, threads=4)
    batch = orderer.read(1, timeout=10)
    # Assert: cut by size, exactly at the limit
    assert batch is not None and sorted(batch.transactions) == sent


def test_a_restarted_cutter_continues_from_the_last_batch(
    etcd_cluster: EtcdCluster, channel: str, orderers: list[EtcdOrderer]
) -> None:
    # Prepare: the first cutter orders two batches and stops; more arrive while no cutter runs
    config = CutterConfig(max_tx=3, time_to_cut_ms=60_000)
    before = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="first")
    for i in range(6):
        before.submit(f"before-{i}".encode())
    assert len(read_until(before, 6)) == 2
    before.close()
    submitter = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="submitter", cutter=False)
    orderers.append(submitter)
    for i in range(3):
        submitter.submit(f"while-down-{i}".encode())
    # Execute
    after = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="second")
    orderers.append(after)
    batches = read_until(after, 9)
    # Assert
    expected = [f"before-{i}".encode() for i in range(6)] + [f"while-down-{i}".encode() for i in range(3)]
    assert [tx for batch in batches for tx in batch.transactions] == expected
    assert [batch.orderer_id for batch in batches] == ["first", "first", "second"]


def test_compaction_removes_what_every_reader_committed(
    etcd_cluster: EtcdCluster, channel: str, orderers: list[EtcdOrderer]
) -> None:
    # Prepare: six batches of five (cut by count only); reader p1 committed 1-3, p2 committed 1-5
    config = CutterConfig(max_tx=5, time_to_cut_ms=60_000)
    orderer = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="a")
    orderers.append(orderer)
    sent = [f"c-{i}".encode() for i in range(30)]
    for tx in sent:
        orderer.submit(tx)
    assert len(read_until(orderer, 30)) == 6
    orderer.report_progress("p1", 4)
    orderer.report_progress("p2", 6)
    # Execute: a reader that never reported holds everything back; then the two that did
    held = orderer.compact(["p1", "p2", "p3"])
    floor = orderer.compact(["p1", "p2"])
    again = orderer.compact(["p1", "p2"])
    # Assert
    assert (held, floor, again) == (1, 4, 4)
    for number in (1, 2, 3):
        with pytest.raises(BatchCompacted, match=f"batch {number} was compacted away") as caught:
            orderer.read(number, timeout=0.1)
        assert caught.value.number == number
    kept = orderer.read(4, timeout=1)
    assert kept is not None and kept.transactions == tuple(sent[15:20])
    client = EtcdClient(etcd_cluster.endpoints)
    queued, _, _ = client.range(f"/medledger/{channel}/txq/", prefix_end(f"/medledger/{channel}/txq/"))
    assert sorted(kv.value for kv in queued) == sorted(sent[15:])
    with pytest.raises(EtcdCompacted):
        client.range(f"/medledger/{channel}/head", revision=2)
    client.close()
    assert orderer.progress() == {"p1": 4, "p2": 6}


def test_a_resubmission_of_a_compacted_transaction_is_dropped(
    etcd_cluster: EtcdCluster, channel: str, orderers: list[EtcdOrderer]
) -> None:
    # Prepare: transactions ordered, committed by the only reader and compacted out of the queue
    config = CutterConfig(max_tx=2, time_to_cut_ms=60_000)
    orderer = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="a")
    orderers.append(orderer)
    for tx in (b"old-1", b"old-2", b"old-3", b"old-4"):
        orderer.submit(tx)
    assert len(read_until(orderer, 4)) == 2
    orderer.report_progress("only", 3)
    assert orderer.compact(["only"]) == 2
    # Execute: a client retries old bytes (stored again: the queue no longer holds them), then sends new ones
    for tx in (b"old-1", b"new-1", b"new-2"):
        orderer.submit(tx)
    batch = orderer.read(3, timeout=10)
    # Assert: the resubmission is not ordered twice
    assert batch is not None and batch.transactions == (b"new-1", b"new-2")


@dataclass
class SteadyLoad:
    """Submitters that keep sending distinct transactions and note which ones etcd acknowledged, and when."""

    orderer: EtcdOrderer
    acked: list[tuple[float, bytes]] = field(default_factory=list)
    failed: list[bytes] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, worker: int) -> None:
        i = 0
        while not self.stop.is_set():
            tx = f"load-{worker}-{i}".encode()
            try:
                self.orderer.submit(tx)
            except OrderingError:
                with self.lock:
                    self.failed.append(tx)
            else:
                with self.lock:
                    self.acked.append((time.monotonic(), tx))
            i += 1


def test_killing_the_leader_under_load_loses_no_acknowledged_transaction(
    etcd_cluster: EtcdCluster, channel: str, orderers: list[EtcdOrderer]
) -> None:
    # Prepare: a steady load through an orderer with a cutter, and a second cutter in the race
    config = CutterConfig(max_tx=50, time_to_cut_ms=20)
    orderer = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="a")
    rival = EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="b")
    orderers.extend([orderer, rival])
    load = SteadyLoad(orderer)
    workers = [threading.Thread(target=load.run, args=(k,)) for k in range(8)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    leader = etcd_cluster.leader()
    # Execute: SIGKILL the leader, keep the load on, then bring the member back
    killed_at = time.monotonic()
    etcd_cluster.kill(leader)
    try:
        time.sleep(3.0)
        load.stop.set()
        for worker in workers:
            worker.join(timeout=30)
    finally:
        etcd_cluster.start_member(leader)
    # Assert: acknowledgements resumed within seconds; every acknowledged tx is in exactly one batch
    with load.lock:
        acked = list(load.acked)
    resumed = [at for at, _ in acked if at > killed_at + 0.2]
    assert resumed, "no submission was acknowledged after the leader was killed"
    recovery = resumed[0] - killed_at
    assert recovery < 5.0
    acked_txs = {tx for _, tx in acked}
    batches = read_until(orderer, len(acked_txs) + len(load.failed), timeout=20)
    ordered = Counter(tx for batch in batches for tx in batch.transactions)
    assert acked_txs <= set(ordered)
    assert set(ordered.values()) == {1}
    assert set(ordered) <= acked_txs | set(load.failed)
    # the restarted member rejoined: it answers and has caught up with the cluster's revision
    client = EtcdClient(etcd_cluster.endpoints)
    deadline = time.monotonic() + 10
    while client.status(etcd_cluster.client_url(leader))["header"]["revision"] != client.status()["header"]["revision"]:
        assert time.monotonic() < deadline, "the restarted member did not catch up"
        time.sleep(0.1)
    client.close()
    print(
        f"leader kill: {len(acked_txs)} acknowledged, {len(load.failed)} failed, first ack after kill "
        f"{recovery:.2f} s, {len(batches)} batches"
    )


def test_queue_keys_name_the_hash_of_their_transaction(etcd_cluster: EtcdCluster, channel: str) -> None:
    # Prepare
    orderer = EtcdOrderer(etcd_cluster.endpoints, channel, orderer_id="a", cutter=False)
    # Execute
    key = orderer.queue_key(b"abc")
    orderer.close()
    # Assert
    assert key == f"/medledger/{channel}/txq/{hashlib.sha256(b'abc').hexdigest()}".encode()


@pytest.fixture
def silent_member() -> Iterator[str]:
    """An endpoint that takes connections and requests and never answers: what a client sees of a proposal in
    flight when the leader dies (etcd drops it without a word)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for connection in held:
        connection.close()
    server.close()


def test_a_write_left_unanswered_is_retried_on_the_next_member_after_the_proposal_timeout(
    etcd_cluster: EtcdCluster, channel: str, silent_member: str
) -> None:
    # Prepare: the silent member first, so the write goes there first
    client = EtcdClient([silent_member, *etcd_cluster.endpoints])
    key = f"/medledger/{channel}/probe".encode()
    try:
        # Execute
        started = time.monotonic()
        client.put(key, b"1", timeout=PROPOSAL_TIMEOUT_S)
        took = time.monotonic() - started
        stored = client.get(key)
    finally:
        client.close()
    # Assert: it waited for the silent member, but not for the default request timeout
    assert stored is not None and stored.value == b"1"
    assert PROPOSAL_TIMEOUT_S <= took < DEFAULT_REQUEST_TIMEOUT


def test_every_write_of_a_cutter_and_its_progress_is_bounded_by_the_proposal_timeout(
    etcd_cluster: EtcdCluster, channel: str, orderers: list[EtcdOrderer]
) -> None:
    """A batch write left unanswered by a dying leader is retried after PROPOSAL_TIMEOUT_S, as a submission is:
    with the default timeout the channel stopped cutting for ~3 s after its leader was killed."""
    # Prepare: record the timeout of every request of one cutter's etcd client
    orderer = EtcdOrderer(etcd_cluster.endpoints, channel, CutterConfig(max_tx=5), orderer_id="cutter")
    orderers.append(orderer)
    calls: list[tuple[str, float | None]] = []
    call = orderer._client.call

    def recording(method: str, body: Any, *, timeout: float | None = None) -> Any:
        writes = method == "kv/put" or any("request_put" in op for op in body.get("success", []))
        calls.append((method if writes else "read", timeout))
        return call(method, body, timeout=timeout)

    orderer._client.call = recording  # type: ignore[method-assign]
    # Execute
    for index in range(10):
        orderer.submit(b"tx-%d" % index)
    batches = read_until(orderer, 10)
    orderer.report_progress("peer-a", len(batches) + 1)
    # Assert: submissions, batch writes and the progress report all carried the bound
    writes = [(method, timeout) for method, timeout in calls if method != "read"]
    assert sum(len(batch.transactions) for batch in batches) == 10
    assert ("kv/put", PROPOSAL_TIMEOUT_S) in writes
    assert len([w for w in writes if w[0] == "kv/txn"]) >= 2 + len(batches)  # the queue writes and each batch
    assert all(timeout == PROPOSAL_TIMEOUT_S for _, timeout in writes), writes
