"""Growth: does a peer stay as fast as the ledger grows from 10,000 to 1,000,000 transactions?

One peer (the real commit path, as in `commit_path`) commits the benchmark mix block after block.
At each checkpoint the commit rate over the blocks just before it is taken, and the question a
patient asks, "who accessed my data" (`audit.accesses`), is timed for recently retired patients:
their history is complete and the same size whenever it is asked, so any change in its latency
comes from the size of the ledger, not of the history. Blocks are signed in segments between
commits, with a small set of staff signers, and never while a block is being timed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medledger.bench.baseline import SpeedSampler, make_checks
from medledger.bench.commit_path import BenchPeer, TimedCommit
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
    def top(self) -> GrowthPoint:
        return self.points[-1]


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
    bench = BenchPeer(directory, workers=workers)
    speed_checks = make_checks(200)
    try:
        bench.set_up()
        bench.checker.warm_up()
        timed: list[TimedCommit] = []
        """The timed blocks of each segment in the window."""
        sampler = SpeedSampler(speed_checks)
        """The machine's speed through the window of the next checkpoint."""
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
                if not timed:  # the window starts: how fast is the machine right now?
                    sampler.sample()
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
                p50, slowest, entries = _time_history_queries(bench)
                size = _database_bytes(bench.peer.store.path)
                points.append(GrowthPoint(bench.committed, rate, cpu_us, p50, slowest, entries, size, sampler.rate))
                timed, sampler = [], SpeedSampler(speed_checks)
                pending.pop(0)
    finally:
        bench.close()
    return GrowthResult(tuple(points), time.perf_counter() - started, signing)
