"""Growth: does a peer stay as fast as the ledger grows from 10,000 to 1,000,000 transactions?

One peer (the real commit path, as in `commit_path`) commits the benchmark mix block after block.
At each checkpoint the commit rate over the blocks just before it is taken, and the question a
patient asks, "who accessed my data" (`audit.accesses`), is timed for recently retired patients:
their history is complete and the same size whenever it is asked, so any change in its latency
comes from the size of the ledger, not of the history. Blocks are signed in segments between
commits, with a small set of staff signers, and never while a block is being timed.

The rate at the first checkpoint is taken again beside every later one, paired in time: at the first
checkpoint the ledger is copied (`ReferencePeer`), and between the chunks of each later window a fresh
copy of it commits the same pre-signed next blocks, chunk for chunk. This machine's speed moves by tens
of percent from minute to minute, so two rates taken ten minutes apart differ by as much from that as
from the ledger's size; a small ledger and the large one committing in turns over the same minute
differ only by the size. The one-core verify rate is sampled between the chunks as well.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medledger.bench.baseline import SpeedSampler, make_checks
from medledger.bench.commit_path import BenchPeer, TimedCommit, freeze_start_up
from medledger.bench.progress import ProgressCallback, no_progress

FULL_CHECKPOINTS = (10_000, 30_000, 100_000, 300_000, 1_000_000)
QUICK_CHECKPOINTS = (10_000, 30_000)
WINDOW = 10_000
"""Transactions just before each checkpoint whose commit rate is reported for it."""
PATIENTS_ASKED = 40
QUERY_REPEATS = 3
WINDOW_CHUNK_BLOCKS = 4
"""A window's blocks are committed in chunks of this many, with a slice of one-core signature verification
before the first and after each (`SpeedSampler`): the machine's speed over the window's own time (it moves
from one second to the next, and drifts over a run of many minutes)."""


@dataclass(frozen=True, slots=True)
class GrowthPoint:
    """The peer's figures once the ledger holds `transactions` transactions."""

    transactions: int
    """Transactions committed so far (set-up included)."""
    commit_tps: float
    """Committed transactions per second over the window before this point (wall clock)."""
    commit_cpu_us: float
    """CPU time the peer's process (its execution and commit threads, not the signature workers)
    spent per transaction over the same window: unlike the rate, it barely moves when other
    programs share the machine, so it shows what the ledger's size costs."""
    query_ms_p50: float
    """Median latency of `audit.accesses` over the patients asked."""
    query_ms_max: float
    """Slowest patient's `audit.accesses` latency."""
    entries_returned: float
    """Mean number of access entries each answer held."""
    database_bytes: int
    """Size of the peer's ledger file (and its WAL)."""
    verify_per_s: float
    """One-core Ed25519 verifications per second over slices taken before, between and after the window's
    chunks of blocks: how fast the machine ran while this point's commit rate was taken."""
    reference_tps: float = float("nan")
    """Commit rate of a copy of the ledger as it stood at the first checkpoint, committing the same next
    blocks in chunks alternating with this window's (NaN at the first checkpoint itself)."""


@dataclass(frozen=True, slots=True)
class GrowthResult:
    points: tuple[GrowthPoint, ...]
    seconds: float
    """Wall time of the whole growth run (signing included)."""
    signing_seconds: float
    """Of which signing the load."""

    @property
    def commit_ratio(self) -> float:
        """Commit rate at the largest size over the rate at the smallest."""
        return self.points[-1].commit_tps / self.points[0].commit_tps

    @property
    def speed_corrected_ratio(self) -> float:
        """The same ratio with each rate first divided by the machine's speed at its window (`verify_per_s`):
        what is left is what the ledger's size costs, not the machine running faster or slower by then."""
        top, first = self.top, self.points[0]
        return (top.commit_tps / top.verify_per_s) / (first.commit_tps / first.verify_per_s)

    @property
    def paired_ratio(self) -> float:
        """Commit rate at the largest size over the rate of the first checkpoint's ledger taken in turns with
        it (`GrowthPoint.reference_tps`): the growth target is judged on it."""
        return self.top.commit_tps / self.top.reference_tps

    @property
    def top(self) -> GrowthPoint:
        return self.points[-1]


class ReferencePeer:
    """The ledger as it stood at the first checkpoint, committing the same next blocks again and again.

    `start` opens a fresh copy of it and commits the first chunk of pre-signed blocks (the blocks the
    growing peer would have committed next at that size) untimed, as a warm-up: a new peer checks its
    members' certificates and fills its caches on its first blocks, which the growing peer did long before.
    Each `sample` then commits the next chunk, timed like the growing peer's own chunks; `stop` closes and
    removes the copy. Every copy starts from the same state, so the same blocks are valid each time."""

    def __init__(self, bench: BenchPeer, directory: Path, *, blocks: int, block_size: int, chunk_blocks: int) -> None:
        self.directory = directory
        self.chunk_blocks = chunk_blocks
        template = bench.fork(directory / "template", workers=1)
        try:
            self.blocks = template.sign_blocks(blocks, block_size)
            self._consortium, self._generator = template.consortium, template.generator
            self._clock_ms, self._committed = bench.clock_ms, bench.committed
        finally:
            template.close()
        self._ledger = template.peer.store.path
        self._copies = 0
        self._running: BenchPeer | None = None
        self._next = 0
        self._timed: list[TimedCommit] = []

    def start(self) -> None:
        """Open a fresh copy of the reference ledger for the next window."""
        self.stop()
        self._copies += 1
        copy_dir = self.directory / f"copy-{self._copies}"
        copy_dir.mkdir(parents=True)
        shutil.copyfile(self._ledger, copy_dir / self._ledger.name)
        self._running = BenchPeer(
            copy_dir,
            workers=2,
            consortium=self._consortium,
            generator=self._generator,
            clock_ms=self._clock_ms,
            committed=self._committed,
        )
        self._running.checker.warm_up()
        self._running.commit_timed(self.blocks[: self.chunk_blocks], _NO_SAMPLES, self.chunk_blocks)
        self._next = self.chunk_blocks
        self._timed = []

    def sample(self) -> float:
        """Commit the copy's next chunk of blocks; return its rate."""
        if self._running is None:
            raise RuntimeError("start the reference peer before sampling it")
        chunk = self.blocks[self._next : self._next + self.chunk_blocks]
        if len(chunk) < self.chunk_blocks:
            raise RuntimeError(f"the reference peer has only {len(self.blocks)} blocks signed: sign more")
        self._next += len(chunk)
        timed = self._running.commit_timed(chunk, _NO_SAMPLES, len(chunk))
        self._timed.append(timed)
        return timed.transactions / timed.seconds

    @property
    def valid(self) -> int:
        """Transactions applied since `start` (the mix intends every one to be)."""
        return sum(t.valid for t in self._timed)

    @property
    def rate(self) -> float:
        """Transactions per second over every chunk since `start` (NaN before the first)."""
        seconds = sum(t.seconds for t in self._timed)
        return sum(t.transactions for t in self._timed) / seconds if seconds else float("nan")

    def stop(self) -> None:
        if self._running is not None:
            path = self._running.peer.data_dir
            self._running.close()
            self._running = None
            shutil.rmtree(path, ignore_errors=True)


class _NoSamples:
    def sample(self) -> float:
        return float("nan")


_NO_SAMPLES = _NoSamples()


@dataclass
class _PairedSampler:
    """Between the growing peer's chunks: a slice of one-core verifying, then a chunk of the reference."""

    speed: SpeedSampler
    reference: ReferencePeer | None

    def start_window(self) -> None:
        """Before the window's first chunk: a fresh copy of the reference, and the first sample."""
        if self.reference is not None:
            self.reference.start()
        self.sample()

    def sample(self) -> float:
        if self.reference is not None:
            self.reference.sample()
        return self.speed.sample()

    def finish_window(self) -> tuple[float, float]:
        """(verify rate, reference commit rate: NaN without a reference) over the window; the copy closed."""
        if self.reference is None:
            return self.speed.rate, float("nan")
        reference_rate = self.reference.rate
        self.reference.stop()
        return self.speed.rate, reference_rate


def _time_history_queries(bench: BenchPeer) -> tuple[float, float, float]:
    patients = list(bench.generator.retired[-PATIENTS_ASKED:]) or list(bench.generator.patients)[:PATIENTS_ASKED]
    latencies, returned = [], []
    for patient in patients:
        runs = []
        for _ in range(QUERY_REPEATS):
            started = time.perf_counter()
            answer = bench.peer.query("audit", "accesses", {"patient": patient.pseudonym})
            runs.append((time.perf_counter() - started) * 1000)
        latencies.append(statistics.median(runs))
        returned.append(len(answer))
    return statistics.median(latencies), max(latencies), statistics.mean(returned)


def _database_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def measure_growth(
    directory: Path,
    *,
    checkpoints: Sequence[int] = FULL_CHECKPOINTS,
    window: int = WINDOW,
    block_size: int = 500,
    workers: int = 2,
    segment_blocks: int = 40,
    progress: ProgressCallback | None = None,
) -> GrowthResult:
    """Grow a fresh ledger to `checkpoints[-1]` transactions, measuring at each checkpoint."""
    report = progress or no_progress
    top = checkpoints[-1]
    started = time.perf_counter()
    signing = 0.0
    points: list[GrowthPoint] = []
    bench = BenchPeer(directory / "ledger", workers=workers)
    speed_checks = make_checks(200)
    reference: ReferencePeer | None = None
    """From the first checkpoint on: that ledger, committing the same blocks beside each later window."""
    window_blocks = -(-window // block_size)
    try:
        bench.set_up()
        bench.checker.warm_up()
        freeze_start_up()
        timed: list[TimedCommit] = []
        """The timed blocks of each segment in the window."""
        sampler = _PairedSampler(SpeedSampler(speed_checks), None)
        """The machine's speed, and the reference's rate, through the window of the next checkpoint."""
        pending = list(checkpoints)
        while pending:
            count = max(1, min(segment_blocks, -(-(pending[0] - bench.committed) // block_size)))
            sign_started = time.perf_counter()
            signed = bench.sign_blocks(count, block_size)
            signing += time.perf_counter() - sign_started
            # Blocks go through the peer's commit pipeline, as a peer process commits them: the next
            # block executes while the previous one is written. Those in the window before the
            # checkpoint are timed together, from the first staged to the last durable.
            window_start = pending[0] - window
            first_timed = next(
                (i for i in range(len(signed)) if bench.committed + (i + 1) * block_size > window_start), len(signed)
            )  # every signed block holds block_size transactions
            for timestamp, transactions in signed[:first_timed]:
                bench.stage(timestamp, transactions)
                report("growth: committing", min(bench.committed, top), top)
            bench.peer.wait_for_commits()
            if first_timed < len(signed):
                if not timed:  # the window starts: how fast is the machine, and the small ledger, right now?
                    sampler.start_window()
                timed.append(
                    bench.commit_timed(
                        signed[first_timed:],
                        sampler,
                        WINDOW_CHUNK_BLOCKS,
                        lambda: report("growth: committing", min(bench.committed, top), top),
                    )
                )
            if bench.committed >= pending[0]:
                count = sum(t.transactions for t in timed)
                rate = count / sum(t.seconds for t in timed)
                cpu_us = sum(t.cpu_seconds for t in timed) / count * 1e6
                speed, reference_rate = sampler.finish_window()
                p50, slowest, entries = _time_history_queries(bench)
                size = _database_bytes(bench.peer.store.path)
                points.append(
                    GrowthPoint(bench.committed, rate, cpu_us, p50, slowest, entries, size, speed, reference_rate)
                )
                if reference is None and len(pending) > 1:
                    report("growth: copying the first checkpoint's ledger", 0, 1)
                    sign_started = time.perf_counter()
                    # a warm-up, a slice before the window and one after each chunk (a window may span two segments)
                    chunks = -(-window_blocks // WINDOW_CHUNK_BLOCKS) + 3
                    reference = ReferencePeer(
                        bench,
                        directory / "reference",
                        blocks=chunks * WINDOW_CHUNK_BLOCKS,
                        block_size=block_size,
                        chunk_blocks=WINDOW_CHUNK_BLOCKS,
                    )
                    signing += time.perf_counter() - sign_started
                    report("growth: copying the first checkpoint's ledger", 1, 1)
                timed, sampler = [], _PairedSampler(SpeedSampler(speed_checks), reference)
                pending.pop(0)
    finally:
        gc.unfreeze()
        if reference is not None:
            reference.stop()
        bench.close()
    return GrowthResult(tuple(points), time.perf_counter() - started, signing)
