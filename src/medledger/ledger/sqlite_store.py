"""The SQLite `LedgerStore`: one file per peer, WAL journal, one SQL transaction per block.

`synchronous=FULL` makes a commit durable before it returns, so a receipt handed to a
client survives a crash of the process or the machine.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medledger.core.errors import EncodingError
from medledger.ledger.attestations import BlockAttestation
from medledger.ledger.blocks import Block, BlockHeader, decode_body
from medledger.ledger.errors import StoreError
from medledger.ledger.receipts import Receipt
from medledger.ledger.state import prefix_upper_bound
from medledger.ledger.store import LedgerStore, StateRow, TxLocation
from medledger.ledger.transactions import TxId

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY,
    hash   BLOB NOT NULL UNIQUE,
    header BLOB NOT NULL,
    body   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    block_number INTEGER NOT NULL,
    tx_index     INTEGER NOT NULL,
    tx_id        BLOB NOT NULL,
    consumed     INTEGER NOT NULL,
    receipt      BLOB NOT NULL,
    PRIMARY KEY (block_number, tx_index)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS receipts_by_tx_id ON receipts (tx_id, consumed);
CREATE TABLE IF NOT EXISTS state (
    key          TEXT PRIMARY KEY,
    value        BLOB NOT NULL,
    block_number INTEGER NOT NULL,
    tx_index     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attestations (
    block_number INTEGER NOT NULL,
    org_id       TEXT NOT NULL,
    attestation  BLOB NOT NULL,
    PRIMARY KEY (block_number, org_id)
) WITHOUT ROWID;
"""


_PUT_ATTESTATION = "INSERT OR REPLACE INTO attestations VALUES (?, ?, ?)"


def _attestation_row(attestation: BlockAttestation) -> tuple[int, str, bytes]:
    return (attestation.block_number, attestation.org_id, attestation.encode())


class SQLiteLedgerStore(LedgerStore):
    """A peer's ledger in one SQLite file: one writer connection behind a lock, one reader per thread."""

    def __init__(self, path: Path, *, durable: bool = True, read_only: bool = False) -> None:
        """Open (creating if needed) the ledger at `path`; `read_only` opens an existing one without
        writing anything to it, as verification must."""
        self.path = Path(path)
        self.read_only = read_only
        try:
            if read_only:
                if not self.path.is_file():
                    raise StoreError(f"no ledger database at {self.path}")
                self._db = self._connect()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = self._connect()
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._db.execute("PRAGMA cache_size=-65536")
                self._db.executescript(SCHEMA)
                row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION).encode(),))
                elif row[0] != str(SCHEMA_VERSION).encode():
                    raise StoreError(f"{self.path}: schema version {row[0]!r}, this medledger reads {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open ledger database {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._readers = threading.local()
        self._closed = False
        self._reader_connections: list[sqlite3.Connection] = []
        try:
            self._height = self._read_height()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a medledger ledger: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            uri = f"file:{self.path.resolve()}?mode=ro"
            return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        return sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection: readers never wait for the writer (WAL snapshots)."""
        if self._closed:
            raise StoreError(f"ledger {self.path} is closed")
        connection: sqlite3.Connection | None = getattr(self._readers, "connection", None)
        if connection is None:
            connection = self._connect()
            connection.execute("PRAGMA query_only=ON")
            self._readers.connection = connection
            with self._lock:
                self._reader_connections.append(connection)
        return connection

    def _read_height(self) -> int:
        row = self._db.execute("SELECT MAX(number) FROM blocks").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def height(self) -> int:
        return self._height

    def block(self, number: int) -> Block | None:
        row = self._reader().execute("SELECT header, hash, body FROM blocks WHERE number=?", (number,)).fetchone()
        if row is None:
            return None
        header_bytes, stored_hash, body = row
        try:
            header = BlockHeader.decode(header_bytes)
            transactions = decode_body(body)
        except EncodingError as exc:
            raise StoreError(f"block {number} in {self.path} does not decode: {exc}") from exc
        return Block(header, header_bytes, stored_hash, transactions)

    def receipts(self, block_number: int) -> list[Receipt]:
        rows = (
            self._reader()
            .execute("SELECT receipt FROM receipts WHERE block_number=? ORDER BY tx_index", (block_number,))
            .fetchall()
        )
        return [Receipt.decode(r[0]) for r in rows]

    def raw_receipt(self, location: TxLocation) -> bytes | None:
        row = (
            self._reader()
            .execute(
                "SELECT receipt FROM receipts WHERE block_number=? AND tx_index=?",
                (location.block_number, location.tx_index),
            )
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def locate(self, tx_id: TxId) -> TxLocation | None:
        row = (
            self._reader()
            .execute(
                "SELECT block_number, tx_index FROM receipts WHERE tx_id=? "
                "ORDER BY consumed DESC, block_number, tx_index LIMIT 1",
                (tx_id,),
            )
            .fetchone()
        )
        return None if row is None else TxLocation(row[0], row[1])

    def id_is_consumed(self, tx_id: TxId) -> bool:
        row = self._reader().execute("SELECT 1 FROM receipts WHERE tx_id=? AND consumed=1 LIMIT 1", (tx_id,)).fetchone()
        return row is not None

    def get_state(self, key: str) -> bytes | None:
        row = self._reader().execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan_state(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        clauses, params = ["key >= ?"], [prefix]
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            clauses.append("key < ?")
            params.append(upper)
        if start_after is not None:
            clauses.append("key > ?")
            params.append(start_after)
        sql = f"SELECT key, value FROM state WHERE {' AND '.join(clauses)} ORDER BY key"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [(k, bytes(v)) for k, v in self._reader().execute(sql, params).fetchall()]

    def state_rows(self) -> Iterator[StateRow]:
        rows = self._reader().execute("SELECT key, value, block_number, tx_index FROM state ORDER BY key").fetchall()
        for key, value, number, index in rows:
            yield StateRow(key, bytes(value), number, index)

    def commit_block(
        self,
        block: Block,
        receipts: Sequence[Receipt],
        writes: Mapping[str, tuple[bytes | None, int]],
        attestations: Sequence[BlockAttestation] = (),
    ) -> None:
        number = block.number
        receipt_rows = [
            (number, index, receipt.tx_id, int(receipt.consumes_id), receipt.encode())
            for index, receipt in enumerate(receipts)
        ]
        upserts = [(key, value, number, index) for key, (value, index) in writes.items() if value is not None]
        deletes = [(key,) for key, (value, _) in writes.items() if value is None]
        with self._lock:
            if number != self._height:
                raise StoreError(f"block {number} does not follow the stored height {self._height}")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO blocks (number, hash, header, body) VALUES (?, ?, ?, ?)",
                    (number, block.hash, block.header_bytes, block.encode_body()),
                )
                self._db.executemany("INSERT INTO receipts VALUES (?, ?, ?, ?, ?)", receipt_rows)
                self._db.executemany(
                    "INSERT INTO state (key, value, block_number, tx_index) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value, "
                    "block_number=excluded.block_number, tx_index=excluded.tx_index",
                    upserts,
                )
                self._db.executemany("DELETE FROM state WHERE key=?", deletes)
                self._db.executemany(_PUT_ATTESTATION, [_attestation_row(a) for a in attestations])
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"cannot commit block {number} to {self.path}: {exc}") from exc
            self._height = number + 1

    def put_attestations(self, attestations: Sequence[BlockAttestation]) -> None:
        if not attestations:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(_PUT_ATTESTATION, [_attestation_row(a) for a in attestations])
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"cannot store attestations in {self.path}: {exc}") from exc

    def attestations(self, block_number: int) -> list[BlockAttestation]:
        rows = (
            self._reader()
            .execute("SELECT attestation FROM attestations WHERE block_number=? ORDER BY org_id", (block_number,))
            .fetchall()
        )
        return [BlockAttestation.decode(r[0]) for r in rows]

    def raw_rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of a table as stored: for `medledger verify`, which checks each byte."""
        if table not in {"meta", "blocks", "receipts", "state", "attestations"}:
            raise StoreError(f"no table {table!r}")
        return list(self._reader().execute(f"SELECT * FROM {table}").fetchall())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()
            self._db.close()
