"""Committing blocks on a writer thread while the next block executes.

A peer's work per block is execute (Python, holding the GIL) then commit (SQLite: B-tree pages
and an fsync, most of it with the GIL released). Done one after the other, the core that runs
the commit idles while the block executes and the other way round. A `CommitPipeline` takes
executed blocks in order and commits them on its own thread; meanwhile the next block executes
against the pipeline's view, which answers every read as if the staged blocks were already
committed (their writes over the store's state, their transaction ids as consumed, their
headers as the chain's tip). This is the split FastFabric makes between validation and commit.

What it does not change: a block is acknowledged only once durable. `on_durable` (receipts to
clients, attestations to the other organisations) runs after the store's transaction committed,
in block order. Readers that are not executing a block (queries, proofs, status) keep reading the
store itself, so they never see a block that a crash could still take back. If a commit fails,
the pipeline refuses every later block and reports the failure to whoever waits on one: the
blocks staged after it were executed on top of it and are dropped with it.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from medledger.ledger.attestations import BlockAttestation
from medledger.ledger.blocks import Block, SealedHeader
from medledger.ledger.errors import StoreError
from medledger.ledger.execution import BulkReplayIndex, ExecutedBlock
from medledger.ledger.receipts import Receipt
from medledger.ledger.state import overlay_scan, prefix_upper_bound
from medledger.ledger.store import LedgerStore
from medledger.ledger.transactions import TxId

log = logging.getLogger(__name__)

DEFAULT_DEPTH = 2
"""Blocks that may wait for their commit at once: one committing, one queued behind it. More
would only hold more memory; the writer is never the slower side for long."""


@dataclass(frozen=True, slots=True)
class StagedBlock:
    """An executed block waiting for (or in) its commit, with what the view needs to answer for it."""

    executed: ExecutedBlock
    attestations: tuple[BlockAttestation, ...]
    """Stored in the same transaction (this peer's own, and any received meanwhile)."""
    keys: list[str]
    """The keys it writes, sorted, for prefix scans."""
    consumed: frozenset[TxId]
    """Transaction ids its receipts consume."""
    done: Future[None] = field(default_factory=Future)
    """Resolved once durable (and `on_durable` has run), or failed with the commit's error."""

    @classmethod
    def of(cls, executed: ExecutedBlock, attestations: Sequence[BlockAttestation]) -> StagedBlock:
        consumed = frozenset(r.tx_id for r in executed.receipts if r.consumes_id)
        return cls(executed, tuple(attestations), sorted(executed.writes), consumed)

    @property
    def number(self) -> int:
        return self.executed.block.number


class CommitPipeline:
    """Commits executed blocks to `store` in order on a writer thread; reads through it see them
    as committed from the moment they are staged."""

    def __init__(
        self,
        store: LedgerStore,
        on_durable: Callable[[StagedBlock], None],
        *,
        depth: int = DEFAULT_DEPTH,
        name: str = "commit",
    ) -> None:
        if depth < 1:
            raise ValueError(f"pipeline depth must be at least 1, not {depth}")
        self.store = store
        self._on_durable = on_durable
        self._staged: tuple[StagedBlock, ...] = ()
        """Staged and not yet durable, oldest first. A tuple, replaced and never mutated, so a
        reader holding the old one sees a consistent snapshot."""
        self._room = threading.Semaphore(depth)
        self._queue: deque[StagedBlock] = deque()
        self._wakeup = threading.Condition()
        self._failure: BaseException | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._name = name

    # the view execution reads through -------------------------------------------------------
    def _snapshot(self) -> tuple[StagedBlock, ...]:
        return self._staged

    def height(self) -> int:
        staged = self._snapshot()
        return staged[-1].number + 1 if staged else self.store.height()

    def block(self, number: int) -> Block | None:
        for staged in self._snapshot():
            if staged.number == number:
                return staged.executed.block
        return self.store.block(number)

    def receipts(self, number: int) -> tuple[Receipt, ...] | None:
        """The receipts of a staged block; None when `number` is not staged (ask the store)."""
        for staged in self._snapshot():
            if staged.number == number:
                return tuple(staged.executed.receipts)
        return None

    def last_header(self) -> SealedHeader | None:
        staged = self._snapshot()
        return staged[-1].executed.block.sealed_header if staged else self.store.last_header()

    def get_state(self, key: str) -> bytes | None:
        for staged in reversed(self._snapshot()):
            written = staged.executed.writes.get(key)
            if written is not None:
                return written[0]
        return self.store.get_state(key)

    def scan_state(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        staged = self._snapshot()  # before the store: a block leaves the deque only once it is in the store
        if not staged:
            return self.store.scan_state(prefix, start_after, limit)
        upper = prefix_upper_bound(prefix)
        pending: dict[str, bytes | None] = {}
        for block in staged:  # oldest first: a later block's write wins
            keys = block.keys
            start = bisect.bisect_left(keys, prefix)
            stop = len(keys) if upper is None else bisect.bisect_left(keys, upper, lo=start)
            writes = block.executed.writes
            for key in keys[start:stop]:
                pending[key] = writes[key][0]
        if not pending:
            return self.store.scan_state(prefix, start_after, limit)
        return overlay_scan(self.store, pending, prefix, start_after, limit)

    def id_is_consumed(self, tx_id: TxId) -> bool:
        staged = self._snapshot()
        return any(tx_id in block.consumed for block in staged) or self.store.id_is_consumed(tx_id)

    def consumed_among(self, tx_ids: Sequence[TxId]) -> set[TxId]:
        staged = self._snapshot()
        found = {tx_id for tx_id in tx_ids if any(tx_id in block.consumed for block in staged)}
        if isinstance(self.store, BulkReplayIndex):
            return found | self.store.consumed_among(tx_ids)
        return found | {tx_id for tx_id in tx_ids if self.store.id_is_consumed(tx_id)}

    # staging and committing ------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a staged block is not yet durable."""
        return bool(self._staged)

    def stage(self, executed: ExecutedBlock, attestations: Sequence[BlockAttestation]) -> StagedBlock:
        """Queue `executed` (the next block after the view's tip) for its commit; return it with its
        `done` future. Waits while the pipeline is full; raises StoreError once a commit failed."""
        self.ensure_accepting()
        if executed.block.number != self.height():
            raise StoreError(f"block {executed.block.number} does not follow the staged height {self.height()}")
        staged = StagedBlock.of(executed, attestations)
        self._room.acquire()
        with self._wakeup:
            if self._failure is not None or self._closing:
                self._room.release()
                self.ensure_accepting()
                raise StoreError(f"the commit pipeline is closed; block {staged.number} was not staged")
            self._staged = (*self._staged, staged)
            self._queue.append(staged)
            if self._thread is None:
                self._thread = threading.Thread(target=self._write, name=self._name, daemon=True)
                self._thread.start()
            self._wakeup.notify()
        return staged

    def ensure_accepting(self) -> None:
        """Raise StoreError if a commit failed: no block may be executed or committed after it."""
        if self._failure is not None:
            raise StoreError(f"an earlier block failed to commit; nothing after it is accepted: {self._failure}")

    def _write(self) -> None:
        while True:
            with self._wakeup:
                while not self._queue and not self._closing:
                    self._wakeup.wait()
                if not self._queue:
                    return
                staged = self._queue[0]
            try:
                executed = staged.executed
                self.store.commit_block(executed.block, executed.receipts, executed.writes, staged.attestations)
            except BaseException as exc:  # reported to every waiter, then the thread ends
                log.error(
                    "%s: block %d failed to commit; no later block is accepted: %s", self._name, staged.number, exc
                )
                self._fail(exc)
                return
            with self._wakeup:
                self._queue.popleft()
                self._staged = self._staged[1:]
            self._room.release()
            try:
                self._on_durable(staged)
            finally:
                staged.done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        with self._wakeup:
            self._failure = exc
            failed = list(self._queue)
            self._queue.clear()
            self._staged = ()
        for staged in failed:
            staged.done.set_exception(exc)
            self._room.release()

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every staged block is durable; raise the commit error if one failed."""
        for staged in self._snapshot():
            staged.done.result(timeout)
        self.ensure_accepting()

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is staged, then stop the writer thread."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
