"""The commit path alone: one peer validating, executing and committing pre-signed blocks.

The peer is the real one (`Peer.apply_batch` over its SQLite store, durable commits, its own
attestation per block) with the process-parallel signature checker; the blocks are the
benchmark mix, signed before the clock starts, so what is timed is exactly a peer's work.

The blocks are committed in a few chunks, with a slice of one-core signature verification before
the first and after each (`SpeedSampler`): the ratio of the commit rate to the machine's speed then
compares the two over the same stretch of time. Each chunk is committed through the pipeline (a
block executes while the one before it is written) and waited for before the slice.
"""

from __future__ import annotations

import copy
import gc
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medledger.bench.baseline import SpeedSampler, make_checks
from medledger.bench.machine_cpu import CpuCeiling, CpuMeter
from medledger.bench.progress import ProgressCallback, no_progress
from medledger.bench.workload import Consortium, LoadGenerator
from medledger.contracts.default import default_registry
from medledger.ledger.parallel import ParallelSignatureChecker
from medledger.node.peer import CommittedBlock, Peer
from medledger.ordering.orderer import OrderedBatch

BENCH_START_MS = 1_767_225_600_000
"""Block time of the benchmark ledgers' genesis (2026-01-01T00:00:00Z); blocks are a second apart."""
BLOCK_INTERVAL_MS = 1_000
SPEED_SLICES = 6
"""Chunks the timed blocks of the commit path are cut into, a verify slice before each and after the last."""
SignedBlock = tuple[int, list[bytes]]
"""A block's timestamp and its signed transactions."""


@dataclass(frozen=True, slots=True)
class TimedCommit:
    """Blocks committed on the clock, the machine's speed sampled between their chunks."""

    transactions: int
    seconds: float
    """Wall time of committing them (the speed slices not included)."""
    cpu_seconds: float
    """CPU time of this process over the same time (execution and commit threads)."""
    valid: int
    """Transactions applied."""
    machine_cpu_seconds: float
    """Busy CPU time of the whole machine over the same time (the signature workers included)."""
    cores: int
    """Cores that busy time was counted over."""


@dataclass(frozen=True, slots=True)
class CommitResult(CpuCeiling):
    """What one peer committed in the timed part of the run."""

    transactions: int
    """Transactions in the timed blocks."""
    blocks: int
    """Timed blocks."""
    block_size: int
    """Transactions per block."""
    seconds: float
    """Wall time of committing them."""
    valid: int
    """Transactions applied (the rest were rejected, with a receipt, as the mix intends none to be)."""
    workers: int
    """Signature-checking processes beside the commit thread."""
    signer_cache_hits: int
    """Signer resolutions (two per transaction) answered from the resolver's caches..."""
    signer_cache_misses: int
    """...and those that decoded an identity row (a certificate check, at most, once per member)."""
    certificate_checks: int
    """X.509 chain verifications actually performed (the rest were cached)."""
    verify_per_s: float
    """One-core Ed25519 verifications per second, sampled in slices between the chunks of the timed
    blocks: the machine's speed while they were committed, what `ratio` divides by."""
    verify_slices: tuple[float, ...]
    """The rate of each slice, in order: how much the machine's speed moved during the run."""
    machine_cpu_seconds: float = math.nan
    """Busy CPU time of the whole machine while the timed blocks were committed (`machine_cpu`)."""
    cores: int = 0
    """Cores that busy time was counted over."""

    @property
    def tps(self) -> float:
        return self.transactions / self.seconds

    @property
    def ratio(self) -> float:
        """Committed transactions per second over one-core verifications per second, same moments."""
        return self.tps / self.verify_per_s

    @property
    def committed_tx(self) -> int:
        return self.transactions

    @property
    def ceiling_ratio(self) -> float:
        """`ceiling_tps` over the same verify rate as `ratio`: the highest ratio this work allows here."""
        return self.ceiling_tps / self.verify_per_s


def freeze_start_up() -> None:
    """Take what exists now (modules, the set-up ledger's caches, identities) out of the garbage collector's
    sight, as a peer process does once started (`medledger node run`): full collections then scan only
    what committing creates. `gc.unfreeze` gives it back."""
    gc.collect()
    gc.freeze()


class Sampler(Protocol):
    """What `BenchPeer.commit_timed` runs between its chunks: a measurement taken at the same moments."""

    def sample(self) -> float:
        """Take one more piece of the measurement; return its own figure."""


class BenchPeer:
    """A peer on a fresh ledger of the benchmark consortium, with its load generator."""

    def __init__(
        self,
        directory: Path,
        *,
        workers: int,
        seed: int = 20261129,
        consortium: Consortium | None = None,
        generator: LoadGenerator | None = None,
        clock_ms: int = BENCH_START_MS,
        committed: int = 0,
    ) -> None:
        """A new consortium and load on an empty ledger in `directory`; or, given all of them, a peer
        going on from where another left off (see `fork`)."""
        self.consortium = consortium or Consortium.create(BENCH_START_MS)
        self.checker = ParallelSignatureChecker(workers)
        self.peer = Peer(
            "st-mary", directory, self.consortium.peers["st-mary"], default_registry(), checker=self.checker
        )
        self.peer.bootstrap(self.consortium.genesis, BENCH_START_MS)
        self.generator = generator or LoadGenerator(self.consortium, seed=seed)
        self.clock_ms = clock_ms
        self.committed = committed

    def fork(self, directory: Path, *, workers: int) -> BenchPeer:
        """A second peer over a copy of this one's ledger as it stands (its commits waited for), with the
        same consortium, a copy of the load generator and the same clock: it signs and commits exactly
        what this one would next."""
        self.peer.wait_for_commits()
        directory.mkdir(parents=True, exist_ok=True)
        self.peer.store.copy_to(directory / self.peer.store.path.name)
        generator = copy.deepcopy(self.generator, {id(self.consortium): self.consortium})
        return BenchPeer(
            directory,
            workers=workers,
            consortium=self.consortium,
            generator=generator,
            clock_ms=self.clock_ms,
            committed=self.committed,
        )

    def next_time(self) -> int:
        self.clock_ms += BLOCK_INTERVAL_MS
        return self.clock_ms

    def set_up(self) -> None:
        """Commit the staff and the first patients (not timed)."""
        now = self.next_time()
        for transactions in self.generator.setup_blocks(now):
            self.apply(now, transactions)

    def sign_blocks(self, count: int, size: int) -> list[tuple[int, list[bytes]]]:
        return [(now, self.generator.block(size, now)) for now in (self.next_time() for _ in range(count))]

    def apply(self, timestamp_ms: int, transactions: list[bytes]) -> int:
        """Commit one block; return how many of its transactions were valid."""
        batch = OrderedBatch(self.peer.executed_height(), timestamp_ms, tuple(transactions), "bench")
        committed = self.peer.apply_batch(batch)
        self.committed += len(transactions)
        return sum(1 for receipt in committed.receipts if receipt.is_valid)

    def stage(self, timestamp_ms: int, transactions: list[bytes]) -> Future[CommittedBlock]:
        """Execute one block and hand it to the peer's commit pipeline (the next may execute at once)."""
        batch = OrderedBatch(self.peer.executed_height(), timestamp_ms, tuple(transactions), "bench")
        staged = self.peer.stage_batch(batch)
        self.committed += len(transactions)
        return staged

    def commit_timed(
        self,
        blocks: Sequence[SignedBlock],
        sampler: Sampler,
        chunk_blocks: int,
        on_block: Callable[[], None] = lambda: None,
    ) -> TimedCommit:
        """Commit `blocks` through the pipeline in chunks of `chunk_blocks`, each waited for until durable,
        with `sampler` taking a slice after each chunk (the caller takes the one before the first)."""
        seconds = cpu_seconds = 0.0
        valid = 0
        machine = CpuMeter()
        for start in range(0, len(blocks), chunk_blocks):
            machine.start()
            started, cpu_started = time.perf_counter(), time.process_time()
            staged = []
            for timestamp, transactions in blocks[start : start + chunk_blocks]:
                staged.append(self.stage(timestamp, transactions))
                on_block()
            committed = [future.result() for future in staged]
            seconds += time.perf_counter() - started
            cpu_seconds += time.process_time() - cpu_started
            machine.stop()
            valid += sum(1 for block in committed for receipt in block.receipts if receipt.is_valid)
            sampler.sample()
        count = sum(len(t) for _, t in blocks)
        return TimedCommit(count, seconds, cpu_seconds, valid, machine.busy_seconds, machine.cores)

    def close(self) -> None:
        self.peer.close()
        self.checker.close()


def measure_commit_path(
    directory: Path,
    *,
    blocks: int,
    block_size: int = 500,
    workers: int = 2,
    warm_up_blocks: int = 2,
    speed_slices: int = SPEED_SLICES,
    progress: ProgressCallback | None = None,
) -> CommitResult:
    """Commit `blocks` pre-signed blocks of `block_size` on a fresh peer and time it, sampling the machine's
    speed before the first of `speed_slices` chunks and after each."""
    report = progress or no_progress
    bench = BenchPeer(directory, workers=workers)
    try:
        bench.set_up()
        bench.checker.warm_up()
        signed = []
        for index in range(blocks + warm_up_blocks):
            signed.extend(bench.sign_blocks(1, block_size))
            report("commit path: signing", index + 1, blocks + warm_up_blocks)
        for timestamp, transactions in signed[:warm_up_blocks]:
            bench.apply(timestamp, transactions)
        sampler = SpeedSampler(make_checks(200))
        done = [0]

        def on_block() -> None:
            done[0] += 1
            report("commit path: committing", done[0], blocks)

        freeze_start_up()
        sampler.sample()
        timed = bench.commit_timed(signed[warm_up_blocks:], sampler, math.ceil(blocks / speed_slices), on_block)
        resolver = bench.peer.resolver
        caching = (resolver.hits, resolver.misses, resolver.verifier.misses)
    finally:
        gc.unfreeze()
        bench.close()
    return CommitResult(
        timed.transactions,
        blocks,
        block_size,
        timed.seconds,
        timed.valid,
        workers,
        *caching,
        verify_per_s=sampler.rate,
        verify_slices=tuple(sampler.slices),
        machine_cpu_seconds=timed.machine_cpu_seconds,
        cores=timed.cores,
    )
