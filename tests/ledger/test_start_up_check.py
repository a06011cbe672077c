"""The start-up check of a SQLite ledger (`check_at_start_up`) on a small chain that replaces,
deletes and re-creates keys: every stored state value, current or superseded, is hashed against the
headers' state roots, and every receipt against its receipts root; a change is named by its block
or its row."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from medledger.core.encoding import encode
from medledger.core.hashing import ZERO_HASH, sha256
from medledger.core.merkle import merkle_root
from medledger.ledger.blocks import Block, BlockHeader
from medledger.ledger.errors import IntegrityError
from medledger.ledger.integrity import ReplayWithHistory, check_at_start_up
from medledger.ledger.receipts import VALID, Receipt, RejectionCode
from medledger.ledger.sqlite_store import SQLiteLedgerStore
from medledger.ledger.state import next_state_root
from medledger.ledger.store import LedgerStore

Writes = Mapping[str, bytes | None]

CHAIN: tuple[Writes, ...] = (
    {"a": b"a0", "b": b"b0", "c": b"c0"},
    {f"many/{index:03}": encode(index) for index in range(24)} | {"a": b"a1", "b": None},
    {f"more/{index:03}": encode(index) for index in range(300)} | {"b": b"b2", "c": None, "d": b"d2"},
    {"d": None, "gone": None, "a": b"a3"},
    {},
)
"""Each block's writes (None: a deletion). Sizes cross the CBOR list-length boundaries (24, 256)."""


def _receipts(number: int) -> list[Receipt]:
    valid = Receipt(sha256(b"tx %d" % number), VALID, "", (), 1, 1)
    refused = Receipt(sha256(b"bad %d" % number), RejectionCode.BAD_SIGNATURE, "forged", (), 0, 0)
    return [valid, refused]


def build_chain(store: LedgerStore) -> None:
    """Commit CHAIN with headers whose roots commit to its transactions, receipts and writes."""
    previous_hash, state_root = ZERO_HASH, ZERO_HASH
    for number, writes in enumerate(CHAIN):
        transactions = (b"tx %d" % number, b"bad %d" % number)
        receipts = _receipts(number)
        state_root = next_state_root(state_root, number, writes)
        header = BlockHeader(
            number=number,
            previous_hash=previous_hash,
            timestamp_ms=1_000 + number,
            tx_count=len(transactions),
            tx_root=merkle_root(transactions),
            receipts_root=merkle_root([receipt.encode() for receipt in receipts]),
            state_root=state_root,
            orderer={"orderer": "test"},
        )
        block = Block.from_header(header, transactions)
        store.commit_block(block, receipts, {key: (value, 0) for key, value in writes.items()})
        previous_hash = block.hash


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ledger.sqlite"
    store = SQLiteLedgerStore(path)
    build_chain(store)
    store.close()
    yield path


def start_up(path: Path) -> None:
    store = SQLiteLedgerStore(path, read_only=True)
    try:
        check_at_start_up(store)
    finally:
        store.close()


def test_a_sound_chain_passes_and_every_write_is_kept(ledger: Path) -> None:
    # Execute
    store = SQLiteLedgerStore(ledger, read_only=True)
    try:
        checked = check_at_start_up(store)
        history = store.raw_rows("state_history")
    finally:
        store.close()
    # Assert
    assert (checked.blocks, checked.receipts) == (len(CHAIN), 2 * len(CHAIN))
    assert checked.state_rows == 24 + 300 + len(["a", "b"])  # c and d were deleted, b re-created
    assert sorted((key, number, value) for key, number, _, value in history) == [
        ("a", 0, b"a0"),
        ("a", 1, b"a1"),
        ("b", 0, b"b0"),
        ("b", 1, None),
        ("c", 0, b"c0"),
        ("c", 2, None),
        ("d", 2, b"d2"),
        ("d", 3, None),
        ("gone", 3, None),
    ]
    assert checked.superseded_rows == len(history)


def test_the_replay_of_verify_expects_the_superseded_values_the_store_keeps(ledger: Path) -> None:
    # Prepare
    replay = ReplayWithHistory()
    # Execute
    build_chain(replay)
    store = SQLiteLedgerStore(ledger, read_only=True)
    try:
        stored = sorted(tuple(row) for row in store.raw_rows("state_history"))
    finally:
        store.close()
    # Assert
    assert sorted(replay.superseded.values()) == stored


@pytest.mark.parametrize(
    ("change", "place"),
    [
        ("UPDATE state SET value=x'00' WHERE key='a'", "block 3"),
        ("UPDATE state SET value=x'00' WHERE key='more/150'", "block 2"),
        ("UPDATE state SET block_number=4 WHERE key='more/000'", "block 2"),
        ("UPDATE state SET block_number=1 WHERE key='b'", "state row 'b'"),
        ("DELETE FROM state WHERE key='many/000'", "block 1"),
        ("INSERT INTO state VALUES ('planted', x'01', 4, 0)", "block 4"),
        ("INSERT INTO state VALUES ('c', x'63', 2, 0)", "state row 'c'"),
        ("INSERT INTO state VALUES ('c', x'63', 4, 0)", "block 4"),
        ("UPDATE state SET key=CAST('b' AS BLOB) WHERE key='b'", "state row b'b'"),
        ("UPDATE state_history SET value=x'ff' WHERE key='a' AND block_number=0", "block 0"),
        ("DELETE FROM state_history WHERE key='gone'", "block 3"),
        ("UPDATE state_history SET value=NULL WHERE key='a' AND block_number=1", "block 1"),
        ("INSERT INTO state_history VALUES ('planted', 99, 0, NULL)", "state_history rows of block 99"),
        ("UPDATE state_history SET value=x'63' WHERE key='c' AND block_number=2", "state row 'c'"),
        ("UPDATE state_history SET block_number=4 WHERE key='a' AND block_number=1", "state row 'a'"),
        ("UPDATE receipts SET receipt=x'a0' WHERE block_number=1 AND tx_index=1", "block 1"),
        ("UPDATE receipts SET consumed=1 WHERE block_number=2 AND tx_index=1", "block 2 receipt 1"),
        ("UPDATE receipts SET tx_id=x'00' WHERE block_number=0 AND tx_index=0", "block 0 receipt 0"),
        ("DELETE FROM receipts WHERE block_number=3 AND tx_index=1", "block 3 receipts"),
        ("DELETE FROM receipts WHERE block_number=2", "block 2 receipts"),
        ("UPDATE receipts SET block_number=9 WHERE block_number=4 AND tx_index=1", "block 4 receipts"),
    ],
)
def test_a_changed_stored_value_is_named(ledger: Path, change: str, place: str) -> None:
    # Prepare
    db = sqlite3.connect(ledger, isolation_level=None)
    db.execute(change)
    db.close()
    # Execute
    with pytest.raises(IntegrityError) as caught:
        start_up(ledger)
    # Assert
    assert caught.value.location == place, str(caught.value)


def test_a_current_row_moved_into_the_history_is_missing(ledger: Path) -> None:
    """The moved row still hashes with its block, so only the latest-write rule sees it."""
    # Prepare
    db = sqlite3.connect(ledger, isolation_level=None)
    db.execute("INSERT INTO state_history SELECT key, block_number, tx_index, value FROM state WHERE key='b'")
    db.execute("DELETE FROM state WHERE key='b'")
    db.close()
    # Execute
    with pytest.raises(IntegrityError) as caught:
        start_up(ledger)
    # Assert
    assert caught.value.location == "state row 'b'"
    assert "is missing" in caught.value.problem


def test_a_ledger_of_the_previous_schema_is_refused_and_left_unchanged(ledger: Path) -> None:
    # Prepare: what a version 1 ledger looks like (no superseded values kept)
    db = sqlite3.connect(ledger, isolation_level=None)
    db.execute("DROP TABLE state_history")
    db.execute("UPDATE meta SET value=x'31' WHERE key='schema_version'")
    db.close()
    # Execute
    with pytest.raises(Exception, match=r"ledger schema version 1, this medledger reads version 2") as caught:
        SQLiteLedgerStore(ledger)
    # Assert
    db = sqlite3.connect(ledger, isolation_level=None)
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert type(caught.value).__name__ == "StoreError"
    assert "state_history" not in tables
