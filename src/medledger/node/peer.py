"""A peer: one organisation's copy of the ledger, fed by the orderer, attesting what it commits.

The peer pulls batch n from the orderer, executes it into block n, commits block, receipts,
state and its own attestation in one store transaction, then publishes the attestation to
the other organisations. Clients wait on a peer for their transaction's receipt.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.contracts.framework import ContractRegistry
from medledger.contracts.identity import IdentityResolver
from medledger.core.hashing import Hash32
from medledger.core.identity import MemberIdentity
from medledger.ledger.attestations import BlockAttestation, attest
from medledger.ledger.blocks import Block
from medledger.ledger.errors import IntegrityError, LedgerError, StoreError, TransactionRejected
from medledger.ledger.execution import (
    ChainRules,
    ExecutedBlock,
    SignatureChecker,
    SignerKind,
    chain_rules_of,
    check_signatures_serially,
    execute_block,
    execute_genesis,
    genesis_config_of,
)
from medledger.ledger.integrity import check_at_start_up
from medledger.ledger.pipeline import CommitPipeline, StagedBlock
from medledger.ledger.proofs import TransactionProof, build_transaction_proof
from medledger.ledger.receipts import Receipt, RejectionCode
from medledger.ledger.sqlite_store import SQLiteLedgerStore
from medledger.ledger.transactions import TxId
from medledger.ordering.orderer import OrderedBatch, Orderer

log = logging.getLogger(__name__)

AttestationSink = Callable[[BlockAttestation], None]


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    """A block as committed by this peer, with its receipts."""

    block: Block
    """The committed block."""
    receipts: tuple[Receipt, ...]
    """Its receipts, in transaction order."""
    writes: Mapping[str, tuple[bytes | None, int]] | None
    """The state writes it made; None when the block had been committed before this call."""


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A peer's position in the chain."""

    org_id: str
    height: int
    block_hash: Hash32
    state_root: Hash32
    diverged: tuple[str, ...]
    """Organisations whose attestations disagree with this peer's blocks."""


class Peer:
    """One organisation's peer over its own SQLite ledger."""

    def __init__(
        self,
        org_id: str,
        data_dir: Path,
        identity: MemberIdentity,
        registry: ContractRegistry,
        *,
        resolver: IdentityResolver | None = None,
        checker: SignatureChecker = check_signatures_serially,
    ) -> None:
        self.org_id = org_id
        self.data_dir = Path(data_dir)
        self.identity = identity
        self.registry = registry
        self.resolver = resolver or IdentityResolver()
        self.checker = checker
        self.store = SQLiteLedgerStore(self.data_dir / "ledger.sqlite")
        self._pipeline = CommitPipeline(self.store, self._after_commit, name=f"commit-{org_id}")
        """Blocks executed and waiting for their commit; execution reads through it."""
        self._rules: ChainRules | None = None
        self._waiters: dict[TxId, list[Future[Receipt]]] = {}
        self._lock = threading.Lock()
        self._pending_attestations: list[BlockAttestation] = []
        self._diverged: set[str] = set()
        self._attestation_sinks: list[AttestationSink] = []
        self._commit_listeners: list[Callable[[ExecutedBlock], None]] = []
        self._height_changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        if self.store.height() > 0:
            check_at_start_up(self.store)
            self._load_rules()

    # set-up ------------------------------------------------------------------------------
    def _load_rules(self) -> None:
        genesis = self.store.block(0)
        if genesis is None:
            raise LedgerError(f"{self.store.path}: block 0 missing")
        self._rules = chain_rules_of(genesis_config_of(genesis))

    @property
    def rules(self) -> ChainRules:
        if self._rules is None:
            raise LedgerError(f"peer {self.org_id} has no genesis block yet")
        return self._rules

    def bootstrap(self, genesis_config: Mapping[str, Any], timestamp_ms: int) -> Hash32:
        """Create block 0 from the founding configuration if the store is empty; return its hash."""
        if self.store.height() == 0:
            executed = execute_genesis(self.store, self.registry, genesis_config, timestamp_ms)
            self._commit(executed)
        self._load_rules()
        block = self.store.block(0)
        assert block is not None
        return block.hash

    def on_attestation(self, sink: AttestationSink) -> None:
        """Call `sink` with every attestation this peer makes."""
        self._attestation_sinks.append(sink)

    def on_commit(self, listener: Callable[[ExecutedBlock], None]) -> None:
        self._commit_listeners.append(listener)

    # the commit path -------------------------------------------------------------------------
    def apply_batch(self, batch: OrderedBatch, attested_hash: Hash32 | None = None) -> CommittedBlock:
        """Execute and commit the next batch; return once it is durable. A batch already committed
        is not applied again: it is checked against the stored block (a different batch for a
        committed height is refused).

        `attested_hash` is the block hash a quorum of organisations attested for this height, when
        known (catching up from another peer): a batch that does not produce it is refused, naming
        the block, and nothing is committed."""
        self._pipeline.ensure_accepting()
        if self._pipeline.busy:
            return self.stage_batch(batch, attested_hash).result()
        if batch.number < self.store.height():
            return self._already_committed(batch)
        executed = self._execute(batch, attested_hash)
        self._commit(executed)
        return CommittedBlock(executed.block, executed.receipts, executed.writes)

    def stage_batch(self, batch: OrderedBatch, attested_hash: Hash32 | None = None) -> Future[CommittedBlock]:
        """Execute the next batch and hand its block to the commit pipeline; return a future that
        resolves once the block is durable. The next batch may be executed at once: it reads the
        staged block as committed while the pipeline writes it. Same checks as `apply_batch`."""
        self._pipeline.ensure_accepting()
        result: Future[CommittedBlock] = Future()
        if batch.number < self._pipeline.height():
            result.set_result(self._already_committed(batch))
            return result
        executed = self._execute(batch, attested_hash)
        staged = self._pipeline.stage(executed, self._attestations_for(executed))

        def resolve(done: Future[None]) -> None:
            failure = done.exception()
            if failure is not None:
                result.set_exception(failure)
            else:
                result.set_result(CommittedBlock(executed.block, executed.receipts, executed.writes))

        staged.done.add_done_callback(resolve)
        return result

    def wait_for_commits(self, timeout: float | None = None) -> None:
        """Wait until every staged block is durable; raise StoreError if a commit failed."""
        self._pipeline.drain(timeout)

    def executed_height(self) -> int:
        """Blocks executed so far: those committed and those staged for their commit. The next
        batch to apply or stage is this number."""
        return self._pipeline.height()

    def _execute(self, batch: OrderedBatch, attested_hash: Hash32 | None) -> ExecutedBlock:
        executed = execute_block(
            self._pipeline,
            self.registry,
            self.resolver,
            self.rules,
            batch.number,
            batch.timestamp_ms,
            batch.transactions,
            batch.metadata(),
            self.checker,
        )
        if attested_hash is not None and executed.block.hash != attested_hash:
            raise IntegrityError(
                f"block {batch.number}",
                f"its content hashes to {executed.block.hash.hex()}, but the quorum attested "
                f"{attested_hash.hex()}: refused, nothing committed",
            )
        return executed

    def committed_batch(self, number: int) -> OrderedBatch | None:
        """The ordered batch a committed block was executed from, for a peer catching up."""
        block = self.store.block(number)
        if block is None or number == 0:
            return None
        return OrderedBatch(number, block.header.timestamp_ms, block.transactions, str(block.header.orderer["orderer"]))

    def _already_committed(self, batch: OrderedBatch) -> CommittedBlock:
        block = self._pipeline.block(batch.number)
        assert block is not None
        if block.header.orderer.get("batch_hash") != batch.batch_hash:
            raise IntegrityError(
                f"block {batch.number}", "the orderer delivered a different batch for a height already committed"
            )
        receipts = self._pipeline.receipts(batch.number)
        return CommittedBlock(block, tuple(self.store.receipts(batch.number) if receipts is None else receipts), None)

    def _attestations_for(self, executed: ExecutedBlock) -> list[BlockAttestation]:
        """This peer's attestation of `executed`, then those received since the last commit: all
        stored in the block's own store transaction."""
        block = executed.block
        own = attest(
            block.number,
            block.hash,
            block.header.state_root,
            self.org_id,
            self.identity.certificate.cert_id,
            self.identity.key,
        )
        with self._lock:
            received, self._pending_attestations = self._pending_attestations, []
        return [own, *received]

    def _commit(self, executed: ExecutedBlock) -> None:
        attestations = self._attestations_for(executed)
        self.store.commit_block(executed.block, executed.receipts, executed.writes, attestations)
        self._after_durable(executed, attestations)

    def _after_commit(self, staged: StagedBlock) -> None:
        """Run by the commit pipeline once a staged block is durable."""
        self._after_durable(staged.executed, staged.attestations)

    def _after_durable(self, executed: ExecutedBlock, attestations: Sequence[BlockAttestation]) -> None:
        own, *received = attestations
        for attestation in received:
            self._compare(attestation)
        self._notify(executed)
        self._publish(own)

    def _publish(self, attestation: BlockAttestation) -> None:
        for sink in self._attestation_sinks:
            try:
                sink(attestation)
            except Exception:  # a failing receiver must never stop this peer's commit path
                log.exception("%s: publishing attestation of block %d failed", self.org_id, attestation.block_number)

    def republish_attestations(self, numbers: Iterable[int]) -> None:
        """Send this peer's stored attestations of `numbers` again (e.g. genesis, once others listen)."""
        for number in numbers:
            for attestation in self.store.attestations(number):
                if attestation.org_id == self.org_id:
                    self._publish(attestation)

    def _notify(self, executed: ExecutedBlock) -> None:
        with self._lock:
            for receipt in executed.receipts:
                # A replay's rejection answers nobody: the receipt of the copy that was applied came first, and
                # resolved the waiters there were; a waiter that came since finds that receipt in the store
                # (`receipt_future`), and must not get this one if it lands in between.
                if receipt.code == RejectionCode.DUPLICATE_TX:
                    continue
                for future in self._waiters.pop(receipt.tx_id, []):
                    if not future.done():
                        future.set_result(receipt)
        with self._height_changed:
            self._height_changed.notify_all()
        for listener in self._commit_listeners:
            listener(executed)

    # attestations ------------------------------------------------------------------------------
    def receive_attestation(self, attestation: BlockAttestation) -> None:
        """Accept another organisation's attestation if its peer signed it; compare it when we can."""
        try:
            self._receive_attestation(attestation)
        except (StoreError, sqlite3.ProgrammingError):
            if not self._closed:
                raise

    def _receive_attestation(self, attestation: BlockAttestation) -> None:
        if attestation.org_id == self.org_id or self._closed:
            return
        try:
            signer = self.resolver.resolve(self.store, f"member:{attestation.signer}", self._latest_time())
        except TransactionRejected as exc:
            log.warning("%s: dropped attestation from %s: %s", self.org_id, attestation.org_id, exc.reason)
            return
        if signer.kind is not SignerKind.MEMBER or signer.org_id != attestation.org_id or signer.role != "peer":
            log.warning("%s: dropped attestation signed by a non-peer of %s", self.org_id, attestation.org_id)
            return
        if not attestation.signature_is_valid(signer.public_key):
            log.warning("%s: dropped attestation with a bad signature from %s", self.org_id, attestation.org_id)
            return
        with self._lock:
            if self._closed:
                return
            self._pending_attestations.append(attestation)
        self._compare(attestation)

    def _latest_time(self) -> int:
        last = self.store.last_header()
        return 0 if last is None else last.header.timestamp_ms

    def flush_attestations(self) -> None:
        """Store the received attestations of committed blocks now, comparing each with this peer's
        block (one that arrived while its block was being committed was not compared yet); those
        of blocks not committed here yet wait for their block's commit, or are stored at close."""
        height = self.store.height()
        with self._lock:
            pending = self._pending_attestations
            received = pending if self._closed else [a for a in pending if a.block_number < height]
            self._pending_attestations = [] if self._closed else [a for a in pending if a.block_number >= height]
        self.store.put_attestations(received)
        for attestation in received:
            self._compare(attestation)

    def _compare(self, attestation: BlockAttestation) -> None:
        if attestation.block_number >= self.store.height():
            return
        sealed = self.store.header(attestation.block_number)
        assert sealed is not None
        if (attestation.block_hash, attestation.state_root) != (sealed.hash, sealed.header.state_root):
            with self._lock:
                if attestation.org_id not in self._diverged:
                    log.error("%s: %s diverged at block %d", self.org_id, attestation.org_id, sealed.number)
                self._diverged.add(attestation.org_id)

    def diverged(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._diverged))

    # clients -----------------------------------------------------------------------------------
    def receipt_future(self, tx_id: TxId) -> Future[Receipt]:
        """A future resolved with the transaction's receipt once committed (at once if it is)."""
        future: Future[Receipt] = Future()
        with self._lock:
            self._waiters.setdefault(tx_id, []).append(future)
        committed = self.receipt(tx_id)
        if committed is not None:
            with self._lock:
                waiters = self._waiters.get(tx_id, [])
                if future in waiters:
                    waiters.remove(future)
                if not waiters:
                    self._waiters.pop(tx_id, None)
            if not future.done():
                future.set_result(committed)
        return future

    def receipt(self, tx_id: TxId) -> Receipt | None:
        location = self.store.locate(tx_id)
        if location is None:
            return None
        return self.store.receipts(location.block_number)[location.tx_index]

    def query(self, contract: str, name: str, args: Mapping[str, Any]) -> Any:
        return self.registry.query(self.store, contract, name, args)

    def transaction_proof(self, tx_id: TxId) -> TransactionProof:
        return build_transaction_proof(self.store, tx_id)

    def status(self) -> PeerStatus:
        last = self.store.last_header()
        if last is None:
            raise LedgerError(f"peer {self.org_id} has no blocks")
        # Height from the block read, not a second read of the store: a commit in between would pair the
        # new height with the previous block's hash and state root.
        height = last.header.number + 1
        return PeerStatus(self.org_id, height, last.hash, last.header.state_root, self.diverged())

    # running against an orderer -------------------------------------------------------------
    def start(self, orderer: Orderer) -> None:
        """Follow the orderer on a background thread, committing each batch as it arrives."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow, args=(orderer,), name=f"peer-{self.org_id}", daemon=True)
        self._thread.start()

    def _follow(self, orderer: Orderer) -> None:
        while not self._stop.is_set():
            batch = orderer.read(self.store.height(), timeout=0.2)
            if batch is None:
                continue
            try:
                # One block at a time: peers sharing a process already overlap one another's
                # commits, and a commit thread per peer beside them only adds GIL contention
                # (measured on the embedded network: ~445 tx/s this way, ~405 pipelined).
                self.apply_batch(batch)
            except Exception:  # a failed commit must stop this peer loudly, not spin or skip a block
                log.exception("%s: cannot commit block %d; peer stopped", self.org_id, batch.number)
                self._stop.set()
                raise

    def wait_for_height(self, height: int, timeout: float) -> bool:
        """Block until this peer has committed `height` blocks; False on timeout."""
        with self._height_changed:
            return self._height_changed.wait_for(lambda: self.store.height() >= height, timeout)

    def stop(self) -> None:
        """Stop following the orderer (the store stays open for reads and attestations)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self._pipeline.drain(timeout=30)
        except (StoreError, TimeoutError) as exc:  # logged by the pipeline when it happened
            log.error("%s: stopped with blocks not committed: %s", self.org_id, exc)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._pipeline.close()
        with self._lock:
            self._closed = True
        self.flush_attestations()
        self.store.close()
