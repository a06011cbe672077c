"""A whole network under load: five organisations' peers in this process, fed by one orderer,
with concurrent clients submitting the benchmark mix at a fixed offered rate.

The network is built like the embedded one (`EmbeddedNetwork.create` makes the organisations'
keys and genesis; each peer has its own SQLite ledger, broadcasts its attestations to the
others and follows the orderer), with the orderer made by a factory, so the same measurement
runs on the solo orderer and on the replicated (etcd) one. Every peer verifies every signature
itself, in worker processes of its own (`ParallelSignatureChecker`, one lane per peer thread).

Clients are other machines in a real deployment: their transactions are signed before a load
level starts and only submitted during it, each at its scheduled time. A transaction's latency
is from its submission to the moment its client's own peer has committed it.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from medledger.bench.machine_cpu import CpuCeiling, CpuMeter
from medledger.bench.progress import ProgressCallback, no_progress
from medledger.bench.workload import LoadGenerator, consortium_of
from medledger.contracts.default import default_registry
from medledger.ledger.attestations import BlockAttestation
from medledger.ledger.parallel import ParallelSignatureChecker
from medledger.ledger.receipts import Receipt
from medledger.ledger.transactions import Transaction, TxId
from medledger.node.network import EmbeddedNetwork
from medledger.node.peer import Peer
from medledger.ordering.cutter import CutterConfig
from medledger.ordering.orderer import Orderer
from medledger.ordering.solo import SoloOrderer

OrdererFactory = Callable[[EmbeddedNetwork], AbstractContextManager[Orderer]]
"""Makes (and finally closes) the orderer a benchmark network runs on."""

LATENCY_LIMIT_MS = 1_000.0
"""A load level is kept up with when everything offered was committed and the p99 latency stayed
under this (a network that falls behind shows it first as a growing latency)."""
CLIENTS = 8
SUSTAIN_RETRIES = 3
SUSTAIN_STEP_DOWN = 0.85
"""A sustained run not kept up with is repeated (at most SUSTAIN_RETRIES times) at this share of its rate:
steps of 15%, so the figure lands within about 15% of what the network sustains (with 30% steps, a run that
kept up with a 400 tx/s sweep level but not with 60 s at 400 reported 280)."""
SETTLE_SECONDS = 30.0
"""How long after the last submission a level may take to commit everything."""


@contextlib.contextmanager
def solo_orderer(network: EmbeddedNetwork) -> Iterator[Orderer]:
    """The embedded network's own orderer: solo, its durable log in the data directory."""
    (network.data_dir / "orderer").mkdir(parents=True, exist_ok=True)
    orderer = SoloOrderer(network.data_dir / "orderer" / "orderer.sqlite", network.cutter, clock=network.clock)
    try:
        yield orderer
    finally:
        orderer.close()


@dataclass(frozen=True, slots=True)
class LoadPoint(CpuCeiling):
    """One load level: what was offered, what got committed, and how long it took."""

    offered_tps: float
    """Submission rate of the clients."""
    seconds: float
    """From the first submission to the last commit (at the clients' peers)."""
    submitted: int
    committed: int
    """Transactions whose receipt arrived (valid or rejected)."""
    valid: int
    p50_ms: float
    """Median submit-to-commit latency."""
    p99_ms: float
    """99th percentile submit-to-commit latency."""
    latency_limit_ms: float = LATENCY_LIMIT_MS
    """The p99 up to which the level counts as kept up with (the target of the network measured)."""
    machine_cpu_seconds: float = math.nan
    """Busy CPU time of the whole machine from the first submission until every peer had committed the
    load (peers, signature workers, orderer, the clients: `machine_cpu`)."""
    cores: int = 0
    """Cores that busy time was counted over."""

    @property
    def tps(self) -> float:
        return self.committed / self.seconds if self.seconds > 0 else 0.0

    @property
    def committed_tx(self) -> int:
        return self.committed

    @property
    def kept_up(self) -> bool:
        return self.committed == self.submitted and self.p99_ms <= self.latency_limit_ms


@dataclass(frozen=True, slots=True)
class NetworkResult:
    """A load sweep and a sustained run of one network."""

    orderer: str
    """Which orderer backend."""
    peers: int
    sweep: tuple[LoadPoint, ...]
    """Increasing offered rates, stopped at the first one not kept up with."""
    sustained: LoadPoint
    """The longest run, at the highest rate of the sweep that was kept up with (at most the target),
    stepped down when the long run could not keep up with it."""
    cut_after_ms: int
    """The orderer's `time_to_cut_ms`: a batch is cut this long after its first transaction (or when full)."""


class BenchNetwork:
    """Peers of every organisation of `network`, on one orderer, each with its own ledger."""

    def __init__(self, network: EmbeddedNetwork, orderer: Orderer, checker: ParallelSignatureChecker) -> None:
        self.network = network
        self.orderer = orderer
        self.peers: dict[str, Peer] = {}
        for org in network.orgs:
            identity = network.member_identity(org.org_id, "peer")
            directory = network.data_dir / "peers" / org.org_id
            peer = Peer(org.org_id, directory, identity, default_registry(), checker=checker)
            peer.bootstrap(network.genesis_config, network.genesis_config["created_ms"])
            peer.on_attestation(self._broadcast)
            self.peers[org.org_id] = peer
        for peer in self.peers.values():
            peer.start(orderer)
            peer.republish_attestations([0])

    def _broadcast(self, attestation: BlockAttestation) -> None:
        for org_id, peer in list(self.peers.items()):
            if org_id != attestation.org_id:
                peer.receive_attestation(attestation)

    def wait_until_synced(self, timeout: float) -> bool:
        target = self.orderer.height()
        return all(peer.wait_for_height(target, timeout) for peer in self.peers.values())

    def close(self) -> None:
        for peer in self.peers.values():
            peer.stop()
        for peer in self.peers.values():
            peer.close()


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` quantile of `values` (nearest rank); NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


SignedLoad = list[tuple[TxId, bytes]]
"""Pre-signed transactions as the clients hold them: (id, encoded bytes). Bytes, not Transaction objects:
the clients share the network's process here, and tens of thousands of decoded transactions waiting to
be sent would be scanned by every full garbage collection of that process, pausing the peers (a 60 s
run at 400 tx/s measured gen-2 pauses of up to 403 ms with them, p99 2.35 s)."""


def signed_load(transactions: Sequence[Transaction]) -> SignedLoad:
    return [(tx.tx_id, tx.encoded) for tx in transactions]


def offer_load(
    bench: BenchNetwork, transactions: SignedLoad, rate: float, progress: ProgressCallback, phase: str
) -> LoadPoint:
    """Submit `transactions` at `rate` per second from concurrent clients; wait for their commits."""
    count = len(transactions)
    submitted_at = [0.0] * count
    committed_at = [0.0] * count
    valid_at = [False] * count
    # Nothing keeps a receipt's future once it is resolved: like the pre-signed load, tens of thousands of
    # them (each with its lock and condition) would lengthen every full garbage collection of the peers.
    peers = list(bench.peers.values())
    start = time.perf_counter() + 0.05

    def client(number: int) -> None:
        peer = peers[number % len(peers)]
        for index in range(number, count, CLIENTS):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0.002:
                time.sleep(delay)
            tx_id, encoded = transactions[index]
            future = peer.receipt_future(tx_id)

            def done(resolved: Future[Receipt], index: int = index) -> None:
                committed_at[index] = time.perf_counter()
                valid_at[index] = resolved.result().is_valid

            submitted_at[index] = time.perf_counter()
            bench.orderer.submit(encoded)
            future.add_done_callback(done)

    threads = [threading.Thread(target=client, args=(n,), name=f"bench-client-{n}") for n in range(CLIENTS)]
    machine = CpuMeter()
    machine.start()
    for thread in threads:
        thread.start()
    deadline = start + count / rate + SETTLE_SECONDS
    while any(thread.is_alive() for thread in threads) or sum(1 for t in committed_at if t) < count:
        done_now = sum(1 for t in committed_at if t)
        progress(phase, done_now, count)
        if time.perf_counter() > deadline:
            break
        time.sleep(0.25)
    for thread in threads:
        thread.join()
    bench.wait_until_synced(SETTLE_SECONDS)
    machine.stop()
    progress(phase, count, count)
    finished = [i for i in range(count) if committed_at[i]]
    latencies = [(committed_at[i] - submitted_at[i]) * 1000 for i in finished]
    valid = sum(1 for index in finished if valid_at[index])
    seconds = (max(committed_at[i] for i in finished) - min(submitted_at)) if finished else float("inf")
    return LoadPoint(
        offered_tps=rate,
        seconds=seconds,
        submitted=count,
        committed=len(finished),
        valid=valid,
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p99_ms=percentile(latencies, 0.99),
        machine_cpu_seconds=machine.busy_seconds,
        cores=machine.cores,
    )


def measure_network(
    directory: Path,
    orderer_factory: OrdererFactory = solo_orderer,
    *,
    orderer_name: str = "solo",
    sweep: Sequence[int] = (250, 500, 1000, 1500, 2000, 2500),
    step_seconds: float = 8.0,
    target_tps: int = 2000,
    sustained_seconds: float = 60.0,
    sustained_tps: int | None = None,
    workers_per_peer: int = 1,
    sustain_retries: int = SUSTAIN_RETRIES,
    cutter: CutterConfig | None = None,
    progress: ProgressCallback | None = None,
) -> NetworkResult:
    """Sweep `sweep` offered rates (stopping at the first not kept up with), then hold the highest rate
    kept up with (at most `target_tps`; or `sustained_tps` if given) for `sustained_seconds`."""
    report = progress or no_progress
    network = EmbeddedNetwork.create(directory, cutter=cutter)
    checker = ParallelSignatureChecker(workers_per_peer)
    generator = LoadGenerator(consortium_of(network), request_lag=1)
    with orderer_factory(network) as orderer:
        bench = BenchNetwork(network, orderer, checker)
        try:
            now = network.clock()
            for setup_block in generator.setup_blocks(now):
                for raw in setup_block:
                    orderer.submit(raw)
                bench.wait_until_synced(SETTLE_SECONDS)

            def sign(rate: float, seconds: float) -> SignedLoad:
                total = int(rate * seconds)
                signed: SignedLoad = []
                while len(signed) < total:
                    batch = generator.block_transactions(min(100, total - len(signed)), network.clock())
                    signed.extend(signed_load(batch))
                return signed

            # What exists now lives as long as the network (modules, identities, caches): out of the collector's
            # sight, as a long-running peer process puts it (`medledger node run`), so that full collections
            # scan only what the load creates.
            gc.collect()
            gc.freeze()
            # Not recorded: starts every peer's signature workers and warms the caches.
            offer_load(bench, sign(sweep[0], step_seconds), sweep[0], report, f"{orderer_name} network: warming up")
            points: list[LoadPoint] = []
            for rate in sweep:
                transactions = sign(rate, step_seconds)
                point = offer_load(bench, transactions, rate, report, f"{orderer_name} network: {rate} tx/s offered")
                points.append(point)
                if not point.kept_up:
                    break
            fixed = sustained_tps is not None
            if sustained_tps is None:
                kept = [p.offered_tps for p in points if p.kept_up and p.offered_tps <= target_tps]
                sustained_tps = int(max(kept)) if kept else int(sweep[0])
            rate = sustained_tps
            for attempt in range(1 if fixed else 1 + sustain_retries):
                # A short sweep level can be kept up with where a long run builds a backlog: step down.
                if attempt:
                    rate = max(1, int(rate * SUSTAIN_STEP_DOWN))
                phase = f"{orderer_name} network: {rate} tx/s for {sustained_seconds:.0f} s"
                sustained = offer_load(bench, sign(rate, sustained_seconds), rate, report, phase)
                if sustained.kept_up:
                    break
        finally:
            gc.unfreeze()  # the network's objects become collectable again once it is closed
            bench.close()
            checker.close()
    return NetworkResult(orderer_name, len(network.orgs), tuple(points), sustained, network.cutter.time_to_cut_ms)
