"""End-to-end verification of a peer's stored ledger: every byte is re-derived or re-checked.

The chain is replayed from genesis into an in-memory store. For each block the stored header
must hash to the stored hash and link to its predecessor, and re-executing its stored
transactions must reproduce the stored receipts byte for byte and the header's roots. Then
every stored state row must equal the replayed one, and every attestation must be a valid
peer signature over the stored block. The first fault is named by its place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from medledger.core.errors import EncodingError
from medledger.core.hashing import Hash32
from medledger.core.merkle import merkle_root
from medledger.ledger.attestations import BlockAttestation
from medledger.ledger.blocks import Block, BlockHeader, block_hash, decode_body
from medledger.ledger.errors import IntegrityError, TransactionRejected
from medledger.ledger.execution import (
    ContractDispatcher,
    ExecutedBlock,
    SignerKind,
    SignerResolver,
    chain_rules_of,
    execute_block,
    execute_genesis,
    genesis_config_of,
)
from medledger.ledger.memory_store import MemoryLedgerStore
from medledger.ledger.receipts import Receipt
from medledger.ledger.sqlite_store import SCHEMA_VERSION, SQLiteLedgerStore
from medledger.ledger.store import StateRow

PEER_ROLE = "peer"


@dataclass
class VerificationReport:
    """What `verify_ledger` checked, and the first fault it found (None when sound)."""

    path: str
    blocks: int = 0
    transactions: int = 0
    valid_transactions: int = 0
    state_rows: int = 0
    attestations: int = 0
    genesis_hash: Hash32 | None = None
    last_hash: Hash32 | None = None
    state_root: Hash32 | None = None
    unattested_blocks: list[int] = field(default_factory=list)
    fault: IntegrityError | None = None

    @property
    def ok(self) -> bool:
        return self.fault is None


ProgressCallback = Callable[[int, int], None]


def verify_ledger(
    store: SQLiteLedgerStore,
    dispatcher: ContractDispatcher,
    resolver: SignerResolver,
    progress: ProgressCallback | None = None,
) -> VerificationReport:
    """Verify `store` completely; never raises for bad data, reports the first fault instead."""
    report = VerificationReport(str(store.path))
    try:
        replay = _verify_chain(store, dispatcher, resolver, report, progress)
        _verify_state(store, replay, report)
        _verify_attestations(store, replay, resolver, report)
    except IntegrityError as fault:
        report.fault = fault
    except Exception as exc:  # stored bytes so broken they defeat a check: still a named fault, never a crash
        report.fault = IntegrityError(f"{store.path}", f"cannot be read as a ledger: {exc!r}")
    return report


def _verify_meta(store: SQLiteLedgerStore) -> None:
    rows = {key: bytes(value) for key, value in store.raw_rows("meta")}
    if rows != {"schema_version": str(SCHEMA_VERSION).encode()}:
        raise IntegrityError("meta table", f"expected only schema_version={SCHEMA_VERSION}, found {rows!r}")


def _receipt_rows(store: SQLiteLedgerStore) -> dict[int, list[tuple[int, bytes, int, bytes]]]:
    by_block: dict[int, list[tuple[int, bytes, int, bytes]]] = {}
    for number, index, tx_id, consumed, raw in store.raw_rows("receipts"):
        by_block.setdefault(int(number), []).append((int(index), bytes(tx_id), int(consumed), bytes(raw)))
    return by_block


def _decoded_blocks(store: SQLiteLedgerStore) -> Iterator[tuple[Block, bytes]]:
    """Stored blocks in order, each with its stored hash; checks numbering, hashing and linkage."""
    previous: Hash32 | None = None
    rows = sorted(store.raw_rows("blocks"), key=lambda r: int(r[0]))
    for expected, (number, stored_hash, header_bytes, body) in enumerate(rows):
        where = f"block {number}"
        if number != expected:
            raise IntegrityError(f"block {expected}", f"missing (next stored block is {number})")
        header_bytes, stored_hash = bytes(header_bytes), bytes(stored_hash)
        try:
            header = BlockHeader.decode(header_bytes)
        except EncodingError as exc:
            raise IntegrityError(where, f"header does not decode: {exc}") from exc
        computed = block_hash(header_bytes)
        if computed != stored_hash:
            raise IntegrityError(where, f"header hashes to {computed.hex()}, stored hash is {stored_hash.hex()}")
        if header.number != number:
            raise IntegrityError(where, f"header says it is block {header.number}")
        if previous is not None and header.previous_hash != previous:
            raise IntegrityError(where, f"previous_hash {header.previous_hash.hex()} is not block {number - 1}'s hash")
        try:
            transactions = decode_body(bytes(body))
        except EncodingError as exc:
            raise IntegrityError(where, f"body does not decode: {exc}") from exc
        previous = stored_hash
        yield Block(header, header_bytes, stored_hash, transactions), stored_hash


def _check_receipt_rows(number: int, rows: list[tuple[int, bytes, int, bytes]], count: int) -> list[Receipt]:
    rows.sort()
    if [r[0] for r in rows] != list(range(count)):
        raise IntegrityError(
            f"block {number} receipts",
            f"expected {count} receipts numbered 0..{count - 1}, found indexes {[r[0] for r in rows]}",
        )
    receipts = []
    for index, tx_id, consumed, raw in rows:
        where = f"block {number} receipt {index}"
        try:
            receipt = Receipt.decode(raw)
        except EncodingError as exc:
            raise IntegrityError(where, f"does not decode: {exc}") from exc
        if receipt.tx_id != tx_id:
            raise IntegrityError(where, "tx_id column differs from the receipt's own tx_id")
        if consumed != int(receipt.consumes_id):
            raise IntegrityError(where, "consumed flag differs from what the receipt's code implies")
        receipts.append(receipt)
    return receipts


def _compare_execution(block: Block, receipts: list[Receipt], executed: ExecutedBlock) -> None:
    number = block.number
    for index, (stored, derived) in enumerate(zip(receipts, executed.receipts, strict=True)):
        if stored.encode() != derived.encode():
            where = f"block {number} transaction {index} (tx {derived.tx_id.hex()[:16]})"
            if stored.code != derived.code:
                problem = f"stored outcome {stored.code}, re-execution gives {derived.code}"
                if derived.reason:
                    problem += f": {derived.reason}"
            else:
                problem = "stored receipt differs from re-execution (events, counters or id)"
            raise IntegrityError(where, problem)
    stored_header, derived_header = block.header, executed.block.header
    for name in ("tx_count", "tx_root", "receipts_root", "state_root", "timestamp_ms", "previous_hash"):
        if getattr(stored_header, name) != getattr(derived_header, name):
            raise IntegrityError(f"block {number}", f"{name} in the header does not match the re-executed block")
    if executed.block.header_bytes != block.header_bytes:
        raise IntegrityError(f"block {number}", "header differs from the re-executed block")


def _verify_chain(
    store: SQLiteLedgerStore,
    dispatcher: ContractDispatcher,
    resolver: SignerResolver,
    report: VerificationReport,
    progress: ProgressCallback | None,
) -> MemoryLedgerStore:
    _verify_meta(store)
    receipt_rows = _receipt_rows(store)
    replay = MemoryLedgerStore()
    total = store.height()
    rules = None
    for block, stored_hash in _decoded_blocks(store):
        number = block.number
        receipts = _check_receipt_rows(number, receipt_rows.pop(number, []), len(block.transactions))
        if len(block.transactions) != block.header.tx_count:
            raise IntegrityError(f"block {number}", "tx_count does not match the body")
        if number == 0:
            try:
                config = genesis_config_of(block)
                rules = chain_rules_of(config)
                executed = execute_genesis(replay, dispatcher, config, block.header.timestamp_ms)
            except Exception as exc:  # any fault in the founding configuration is a broken block 0
                raise IntegrityError("block 0", f"genesis configuration does not apply: {exc!r}") from exc
            report.genesis_hash = stored_hash
        else:
            assert rules is not None
            executed = execute_block(
                replay,
                dispatcher,
                resolver,
                rules,
                number,
                block.header.timestamp_ms,
                block.transactions,
                block.header.orderer,
            )
        _compare_execution(block, receipts, executed)
        replay.commit_block(executed.block, executed.receipts, executed.writes)
        report.blocks += 1
        report.transactions += len(block.transactions)
        report.valid_transactions += sum(1 for r in receipts if r.is_valid)
        report.last_hash = stored_hash
        report.state_root = block.header.state_root
        if progress is not None:
            progress(number + 1, total)
    if receipt_rows:
        extra = min(receipt_rows)
        raise IntegrityError(f"block {extra} receipts", "receipts stored for a block that does not exist")
    return replay


def _verify_state(store: SQLiteLedgerStore, replay: MemoryLedgerStore, report: VerificationReport) -> None:
    stored_rows = sorted(
        (StateRow(str(k), bytes(v), int(b), int(i)) for k, v, b, i in store.raw_rows("state")),
        key=lambda r: r.key,
    )
    derived_rows = list(replay.state_rows())
    derived_by_key = {row.key: row for row in derived_rows}
    stored_keys = {row.key for row in stored_rows}
    for row in stored_rows:
        derived = derived_by_key.get(row.key)
        if derived is None:
            raise IntegrityError(f"state row {row.key!r}", "is not produced by replaying the chain")
        if derived.value != row.value:
            raise IntegrityError(f"state row {row.key!r}", "value differs from the value the chain produces")
        if (derived.block_number, derived.tx_index) != (row.block_number, row.tx_index):
            raise IntegrityError(
                f"state row {row.key!r}",
                f"version (block {row.block_number}, tx {row.tx_index}) should be "
                f"(block {derived.block_number}, tx {derived.tx_index})",
            )
    for row in derived_rows:
        if row.key not in stored_keys:
            raise IntegrityError(f"state row {row.key!r}", "is missing (the chain writes it)")
    report.state_rows = len(stored_rows)


def _verify_attestations(
    store: SQLiteLedgerStore, replay: MemoryLedgerStore, resolver: SignerResolver, report: VerificationReport
) -> None:
    attested: set[int] = set()
    for number, org_id, raw in sorted(store.raw_rows("attestations")):
        where = f"attestation of block {number} by {org_id}"
        try:
            attestation = BlockAttestation.decode(bytes(raw))
        except EncodingError as exc:
            raise IntegrityError(where, f"does not decode: {exc}") from exc
        if (attestation.block_number, attestation.org_id) != (number, org_id):
            raise IntegrityError(where, "its columns disagree with its content")
        block = replay.block(int(number))
        if block is None:
            raise IntegrityError(where, "attests a block this ledger does not hold")
        try:
            signer = resolver.resolve(replay, f"member:{attestation.signer}", block.header.timestamp_ms)
        except TransactionRejected as exc:
            raise IntegrityError(where, f"signer is not a valid member: {exc.reason}") from exc
        if signer.kind is not SignerKind.MEMBER or signer.org_id != org_id or signer.role != PEER_ROLE:
            raise IntegrityError(where, f"signer is not a peer of {org_id}")
        if not attestation.signature_is_valid(signer.public_key):
            raise IntegrityError(where, "signature does not verify")
        if attestation.block_hash != block.hash or attestation.state_root != block.header.state_root:
            raise IntegrityError(where, "attests a different block hash or state root: that peer diverged")
        attested.add(int(number))
        report.attestations += 1
    report.unattested_blocks = [n for n in range(report.blocks) if n not in attested]


def quick_check(store: SQLiteLedgerStore, recent_receipts: int = 16) -> None:
    """The start-up check of a peer's ledger: every header hashes to its stored hash and links to
    its predecessor, every body matches its header's transaction root, and the latest blocks'
    receipts match their receipts roots. Raises IntegrityError naming the first broken block.

    It does not replay the chain (that is `verify_ledger`, run by `medledger verify`)."""
    last = store.height() - 1
    for block, _ in _decoded_blocks(store):
        if merkle_root(block.transactions) != block.header.tx_root:
            raise IntegrityError(f"block {block.number}", "stored transactions do not match the header's tx_root")
        if block.number > last - recent_receipts:
            raw = [r.encode() for r in store.receipts(block.number)]
            if merkle_root(raw) != block.header.receipts_root:
                raise IntegrityError(f"block {block.number}", "stored receipts do not match the header's receipts_root")
