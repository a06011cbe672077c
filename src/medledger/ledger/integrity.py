"""Checks of a peer's stored ledger: the full verification, and the lighter one run at start-up.

`verify_ledger` (run by `medledger verify`) replays the chain from genesis into an in-memory
store. For each block the stored header must hash to the stored hash and link to its
predecessor, and re-executing its stored transactions must reproduce the stored receipts byte
for byte and the header's roots. Then every stored state row and superseded value must equal the
replayed ones, and every attestation must be a valid peer signature over the stored block.

`check_at_start_up` (run when a peer opens its ledger) executes nothing: it re-hashes every
stored byte the headers commit to (bodies, receipts, the state rows and superseded values each
block wrote) against the headers' roots. Both name the first fault by its place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medledger.core.encoding import decode_unchecked, encode
from medledger.core.errors import EncodingError
from medledger.core.hashing import ZERO_HASH, Hash32, sha256
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
from medledger.ledger.receipts import ID_NOT_CONSUMED, Receipt
from medledger.ledger.sqlite_store import SCHEMA_VERSION, SQLiteLedgerStore
from medledger.ledger.state import chain_state_root
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
    superseded_rows: int = 0
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
        _verify_state_history(store, replay, report)
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
    rows = store.scan_raw_rows("blocks", "number, hash, header, body")
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


SupersededRow = tuple[str, int, int, bytes | None]
"""A row of `state_history`: key, block that wrote the value, its transaction index, and the value
(None: that block deleted the key)."""


class ReplayWithHistory(MemoryLedgerStore):
    """A replay that also keeps what the SQLite store keeps in `state_history`: each value a later
    block replaced or deleted, with the version that wrote it, and each deletion."""

    def __init__(self) -> None:
        super().__init__()
        self.superseded: dict[tuple[str, int], SupersededRow] = {}
        """(key, block_number) -> the superseded row."""

    def commit_block(
        self,
        block: Block,
        receipts: Sequence[Receipt],
        writes: Mapping[str, tuple[bytes | None, int]],
        attestations: Sequence[BlockAttestation] = (),
    ) -> None:
        for key, (value, tx_index) in writes.items():
            current: StateRow | None = self._state.get(key)
            if current is not None:
                self.superseded[(key, current.block_number)] = (
                    key,
                    current.block_number,
                    current.tx_index,
                    current.value,
                )
            if value is None:
                self.superseded[(key, block.number)] = (key, block.number, tx_index, None)
        super().commit_block(block, receipts, writes, attestations)


def _verify_chain(
    store: SQLiteLedgerStore,
    dispatcher: ContractDispatcher,
    resolver: SignerResolver,
    report: VerificationReport,
    progress: ProgressCallback | None,
) -> ReplayWithHistory:
    _verify_meta(store)
    receipt_rows = _receipt_rows(store)
    replay = ReplayWithHistory()
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


def _verify_state_history(store: SQLiteLedgerStore, replay: ReplayWithHistory, report: VerificationReport) -> None:
    expected = dict(replay.superseded)
    count = 0
    for row in store.scan_raw_rows("state_history", "key, block_number, tx_index, value"):
        key, number, tx_index, value = row
        where = f"state history row {key!r} of block {number!r}"
        derived = expected.pop((key, number), None) if isinstance(key, str) and isinstance(number, int) else None
        if derived is None:
            raise IntegrityError(where, "is not a value the chain wrote and later replaced or deleted")
        if value != derived[3] or type(value) is not type(derived[3]):
            raise IntegrityError(where, "value differs from the one the chain wrote there")
        if tx_index != derived[2] or type(tx_index) is not int:
            raise IntegrityError(where, f"transaction index {tx_index!r} should be {derived[2]}")
        count += 1
    if expected:
        key, number = min(expected)
        raise IntegrityError(f"state history row {key!r} of block {number}", "is missing (the chain replaced it)")
    report.superseded_rows = count


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


@dataclass(frozen=True, slots=True)
class StartUpCheck:
    """What `check_at_start_up` hashed."""

    blocks: int
    """Blocks: header hash, link, body against tx_root."""
    receipts: int
    """Receipts: against their block's receipts_root, with their tx_id and consumed columns."""
    state_rows: int
    """Current state rows: hashed with the block that wrote them."""
    superseded_rows: int
    """Superseded values and deletions: hashed with the block that wrote them."""


def check_at_start_up(store: SQLiteLedgerStore) -> StartUpCheck:
    """The check a peer runs when it opens its ledger; raises IntegrityError naming the first fault.

    Every stored byte the headers commit to is hashed against them, without executing anything:
    each header hashes to its stored hash and links to its predecessor; each body matches its
    tx_root and tx_count; each block's receipts match its receipts_root, and their tx_id and
    consumed columns (which replay protection reads) match the receipts; and the state rows and
    superseded values each block wrote re-derive its state_root, while the latest stored write of
    every key is its current row. One pass over each table, so its cost grows with the ledger
    (about 2 s per 100,000 transactions on the benchmark mix).

    What only `verify_ledger` (a full replay) can check: that executing the transactions gives
    these receipts and writes, a state row's tx_index (the header does not commit to it), and the
    attestations."""
    _verify_meta(store)
    headers = _check_blocks(store)
    receipts = _check_receipts(store, headers)
    state_rows, superseded_rows = _check_state(store, [header.state_root for header in headers])
    return StartUpCheck(len(headers), receipts, state_rows, superseded_rows)


def _check_blocks(store: SQLiteLedgerStore) -> list[BlockHeader]:
    headers = []
    for block, _ in _decoded_blocks(store):
        if len(block.transactions) != block.header.tx_count:
            raise IntegrityError(f"block {block.number}", "tx_count does not match the body")
        if merkle_root(block.transactions) != block.header.tx_root:
            raise IntegrityError(f"block {block.number}", "stored transactions do not match the header's tx_root")
        headers.append(block.header)
    return headers


def _check_receipts(store: SQLiteLedgerStore, headers: list[BlockHeader]) -> int:
    """Every block's receipts against its receipts_root, one block at a time; returns how many."""
    count = 0
    number: Any = None
    rows: list[tuple[Any, ...]] = []
    seen: set[int] = set()
    for row in store.scan_raw_rows("receipts", "block_number, tx_index, tx_id, consumed, receipt"):
        if row[0] != number:
            if number is not None:
                count += _check_block_receipts(number, rows, headers)
                seen.add(number)
            number, rows = row[0], []
        rows.append(row)
    if number is not None:
        count += _check_block_receipts(number, rows, headers)
        seen.add(number)
    for unseen in sorted(set(range(len(headers))) - seen):  # a block whose receipts are all gone
        _check_block_receipts(unseen, [], headers)
    return count


def _check_block_receipts(number: Any, rows: list[tuple[Any, ...]], headers: list[BlockHeader]) -> int:
    if not isinstance(number, int) or not 0 <= number < len(headers):
        raise IntegrityError(f"block {number!r} receipts", "receipts stored for a block that does not exist")
    header = headers[number]
    if [row[1] for row in rows] != list(range(header.tx_count)):
        raise IntegrityError(
            f"block {number} receipts",
            f"expected {header.tx_count} receipts numbered 0..{header.tx_count - 1}, "
            f"found indexes {[row[1] for row in rows]}",
        )
    raws = [row[4] for row in rows]
    if not all(type(raw) is bytes for raw in raws) or merkle_root(raws) != header.receipts_root:
        raise IntegrityError(f"block {number}", "stored receipts do not match the header's receipts_root")
    for _, index, tx_id, consumed, raw in rows:
        # The bytes are the ones the header commits to; only the columns beside them are in question.
        try:
            receipt = decode_unchecked(raw)
            own_tx_id, consumes = receipt["tx_id"], int(receipt["code"] not in ID_NOT_CONSUMED)
        except (EncodingError, KeyError, TypeError) as exc:
            raise IntegrityError(f"block {number} receipt {index}", f"does not decode as a receipt: {exc!r}") from exc
        if tx_id != own_tx_id:
            raise IntegrityError(f"block {number} receipt {index}", "tx_id column differs from the receipt's own tx_id")
        if consumed != consumes or type(consumed) is not int:
            raise IntegrityError(
                f"block {number} receipt {index}", "consumed flag differs from what the receipt's code implies"
            )
    return len(rows)


def _list_head(count: int) -> bytes:
    """The canonical encoding of a list of `count` items, without the items (each 0 is one byte)."""
    encoded = encode([0] * count)
    return encoded[: len(encoded) - count]


_EMPTY_DELTA = sha256(encode([]))
"""The digest of the writes of a block that wrote nothing."""

Written = tuple[str, bytes | None, int]
"""One write as the state root sees it: key, value (None: deleted), and the block that wrote it."""


def _check_state(store: SQLiteLedgerStore, state_roots: list[Hash32]) -> tuple[int, int]:
    """The state rows and superseded values against the headers' state roots; returns how many of each.

    A block's state root chains sha256(encode(sorted [key, value or None] of its writes)). What each
    block wrote is spread over both tables, so both are streamed in key order, merged, and each
    write is fed to the digest of the block that wrote it (a key's writes by different blocks go to
    different digests, so their order between the tables does not matter)."""
    _check_latest_writes(store.superseded_rows_beside_current())
    counts: dict[int, int] = {}
    per_table = []
    for table in ("state", "state_history"):
        rows = store.rows_per_block(table)
        for number, count in rows.items():
            if type(number) is not int or not 0 <= number < len(state_roots):
                raise IntegrityError(f"{table} rows of block {number!r}", "name a block this ledger does not hold")
            counts[number] = counts.get(number, 0) + count
        per_table.append(sum(rows.values()))
    digests = {number: hashlib.sha256(_list_head(count)) for number, count in counts.items()}
    superseded = store.scan_raw_rows("state_history", "key, value, block_number")
    pending = _next_superseded(superseded)
    for key, value, number in store.scan_raw_rows("state", "key, value, block_number"):
        if type(key) is not str or type(value) is not bytes:
            raise IntegrityError(f"state row {key!r}", "key or value is stored with the wrong type")
        while pending is not None and pending[0] < key:
            digests[pending[2]].update(encode([pending[0], pending[1]]))
            pending = _next_superseded(superseded)
        digests[number].update(encode([key, value]))
    while pending is not None:
        digests[pending[2]].update(encode([pending[0], pending[1]]))
        pending = _next_superseded(superseded)
    previous = ZERO_HASH
    for number, expected in enumerate(state_roots):
        digest = digests[number].digest() if number in digests else _EMPTY_DELTA
        previous = chain_state_root(previous, number, digest)
        if previous != expected:
            raise IntegrityError(
                f"block {number}",
                "the state it wrote does not hash to its state_root: a state row this block wrote, or a value "
                "it wrote that a later block replaced, was changed, added or removed (`medledger verify` names it)",
            )
    return per_table[0], per_table[1]


def _next_superseded(rows: Iterator[tuple[Any, ...]]) -> Written | None:
    """The next row of `state_history` as (key, value or None, block), its types checked; None at the end."""
    row = next(rows, None)
    if row is None:
        return None
    key, value, number = row
    if type(key) is not str or not (value is None or type(value) is bytes):
        raise IntegrityError(
            f"state history row {key!r} of block {number!r}", "key or value is stored with the wrong type"
        )
    return key, value, number


def _check_latest_writes(rows: Iterator[tuple[Any, Any, bool, Any]]) -> None:
    """The latest stored write of each key must be its current row: a superseded value needs a later
    write (another superseded value, a deletion or the current row), and the current row must be
    later than every superseded value of its key. Rows come as `superseded_rows_beside_current`
    gives them; keys without superseded values have nothing to check here."""
    key: Any = None
    last: tuple[Any, bool] | None = None
    current: Any = None
    for row_key, number, deleted, row_current in rows:
        if row_key != key:
            _check_latest_write(key, last, current)
            key, current = row_key, row_current
        last = (number, deleted)
    _check_latest_write(key, last, current)


def _check_latest_write(key: Any, last: tuple[Any, bool] | None, current: Any) -> None:
    if last is None:
        return
    number, deleted = last
    if current is None and not deleted:
        raise IntegrityError(
            f"state row {key!r}",
            f"is missing: the value block {number!r} wrote was replaced, but no later write of the key is stored",
        )
    if current is not None and not (type(current) is int and type(number) is int and current > number):
        raise IntegrityError(
            f"state row {key!r}", f"is at block {current!r}, not after the key's superseded value of block {number!r}"
        )
