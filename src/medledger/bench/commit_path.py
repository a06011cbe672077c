"""The commit path alone: one peer validating, executing and committing pre-signed blocks.

The peer is the real one (`Peer.apply_batch` over its SQLite store, durable commits, its own
attestation per block) with the process-parallel signature checker; the blocks are the
benchmark mix, signed before the clock starts, so what is timed is exactly a peer's work.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from medledger.bench.progress import ProgressCallback, no_progress
from medledger.bench.workload import Consortium, LoadGenerator
from medledger.contracts.default import default_registry
from medledger.ledger.parallel import ParallelSignatureChecker
from medledger.node.peer import CommittedBlock, Peer
from medledger.ordering.orderer import OrderedBatch

BENCH_START_MS = 1_767_225_600_000
"""Block time of the benchmark ledgers' genesis (2026-01-01T00:00:00Z); blocks are a second apart."""
BLOCK_INTERVAL_MS = 1_000


@dataclass(frozen=True, slots=True)
class CommitResult:
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

    @property
    def tps(self) -> float:
        return self.transactions / self.seconds


class BenchPeer:
    """A peer on a fresh ledger of the benchmark consortium, with its load generator."""

    def __init__(self, directory: Path, *, workers: int, seed: int = 20261129) -> None:
        self.consortium = Consortium.create(BENCH_START_MS)
        self.checker = ParallelSignatureChecker(workers)
        self.peer = Peer(
            "st-mary", directory, self.consortium.peers["st-mary"], default_registry(), checker=self.checker
        )
        self.peer.bootstrap(self.consortium.genesis, BENCH_START_MS)
        self.generator = LoadGenerator(self.consortium, seed=seed)
        self.clock_ms = BENCH_START_MS
        self.committed = 0

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
    progress: ProgressCallback | None = None,
) -> CommitResult:
    """Commit `blocks` pre-signed blocks of `block_size` on a fresh peer and time it."""
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
        started = time.perf_counter()
        staged = []
        for index, (timestamp, transactions) in enumerate(signed[warm_up_blocks:]):
            staged.append(bench.stage(timestamp, transactions))
            report("commit path: committing", index + 1, blocks)
        committed = [future.result() for future in staged]
        seconds = time.perf_counter() - started
        valid = sum(1 for block in committed for receipt in block.receipts if receipt.is_valid)
        resolver = bench.peer.resolver
        caching = (resolver.hits, resolver.misses, resolver.verifier.misses)
    finally:
        bench.close()
    return CommitResult(blocks * block_size, blocks, block_size, seconds, valid, workers, *caching)
