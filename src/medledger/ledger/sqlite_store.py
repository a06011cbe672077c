"""The SQLite `LedgerStore`: one file per peer, WAL journal, one SQL transaction per block.

`synchronous=FULL` makes a commit durable before it returns, so a receipt handed to a
client survives a crash of the process or the machine.

Point reads of world state go through an in-memory cache of committed values (a read costs a
dict lookup instead of an SQL statement; executing a block reads the same identities, patients
and records again and again). It stays exact because this store is the only writer of its file:
each commit updates the cache with the block's writes after the SQL commit, and a value read from
SQL is only remembered if no commit finished while it was being read.

Checkpoints (copying the WAL back into the database file) run on a background thread of their
own connection rather than inside the commit that crosses SQLite's threshold: a block touches
a page per state row, so checkpointing after every block copied most pages once per block, on
the commit path. A passive checkpoint a few times a second copies each page once per batch of
blocks, while the GIL is released, and never delays a commit's durability.

Every block's state writes stay on disk: the rows it wrote that are still current are in `state`,
and the values it wrote that later blocks replaced or deleted (and its deletions) are in
`state_history`. Together they re-derive each header's `state_root`, so the start-up check
(`medledger.ledger.integrity.check_at_start_up`) can hash the state table against the chain
instead of re-executing it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medledger.core.errors import EncodingError
from medledger.ledger.attestations import BlockAttestation
from medledger.ledger.blocks import Block, BlockHeader, SealedHeader, decode_body
from medledger.ledger.errors import StoreError
from medledger.ledger.execution import encoded_receipts
from medledger.ledger.receipts import Receipt
from medledger.ledger.state import prefix_upper_bound
from medledger.ledger.store import LedgerStore, StateRow, TxLocation
from medledger.ledger.transactions import TxId

SCHEMA_VERSION = 2
"""2: `state_history` keeps the superseded values (version 1 ledgers lack them)."""

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
);
CREATE TABLE IF NOT EXISTS attestations (
    block_number INTEGER NOT NULL,
    org_id       TEXT NOT NULL,
    attestation  BLOB NOT NULL,
    PRIMARY KEY (block_number, org_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state_history (
    key          TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    tx_index     INTEGER NOT NULL,
    value        BLOB,            -- NULL: this block deleted the key
    PRIMARY KEY (key, block_number)
) WITHOUT ROWID;
"""

TABLES = ("meta", "blocks", "receipts", "state", "attestations", "state_history")
"""Every table of a ledger file."""
_ORDER = {
    "meta": "key",
    "blocks": "number",
    "receipts": "block_number, tx_index",
    "state": "key",
    "attestations": "block_number, org_id",
    "state_history": "key, block_number",
}
"""Primary key of each table: the order `scan_raw_rows` streams it in."""


def _forget_scans_over(scans: dict[str, tuple[tuple[str, bytes], ...]], key: str) -> None:
    """Drop every remembered scan whose prefix (ending in "/") `key` falls under."""
    end = key.find("/")
    while end != -1:
        scans.pop(key[: end + 1], None)
        end = key.find("/", end + 1)


_PUT_ATTESTATION = "INSERT OR REPLACE INTO attestations VALUES (?, ?, ?)"
_SUPERSEDE_HEAD = "INSERT INTO state_history SELECT key, block_number, tx_index, value FROM state WHERE key IN"
"""Copies the current rows of the keys that follow (those that have one) into the history, before a
block replaces or deletes them."""
_UPSERT = (
    "ON CONFLICT(key) DO UPDATE SET value=excluded.value, block_number=excluded.block_number, "
    "tx_index=excluded.tx_index"
)

STATE_CACHE_ENTRIES = 65_536
"""Entries per generation of the state cache: when the young generation fills up it becomes the
old one and the previous old one is dropped, so between 64k and 128k recent keys stay cached."""

_MISSING = object()

HEADER_CACHE_ENTRIES = 256
"""Recent committed block headers kept decoded: following the tip, comparing a received attestation
and answering status read the last few blocks' headers again and again (a committed header never
changes, so the cache needs no invalidation)."""

SCAN_CACHE_ENTRIES = 16_384
"""Whole-prefix scans remembered (for prefixes ending in "/", e.g. one patient's consents)."""
SCAN_CACHE_MAX_ROWS = 256
"""A scan answering more rows than this is not remembered (it is rare and would crowd the cache)."""

PAGE_SIZE = 4_096
"""Bytes per database page. The state table is a rowid table with its key in a separate index: a
block's rows are appended at the end of the table, and only the index's small entries (and those of
the receipts' tx-id index) land all over their B-trees. Once those indexes hold far more leaf pages
than a block has inserts, every insert dirties a page of its own, and the whole page goes to the WAL
and again to the database file: measured per 500-transaction block of the benchmark mix, 12.6 MB
written at 10,000 transactions and 61.6 MB at 300,000 on 16 KiB pages (commit rate -21%), against
10.6 MB and 25.0 MB on 4 KiB pages (-10%). On a small ledger the two sizes commit equally fast."""

WRITER_CACHE_KIB = 262_144
"""Page cache of the writer connection (256 MiB): a block's inserts land on pages all over the
state B-tree, and once the ledger outgrows the cache each missing page is a read system call."""
MMAP_BYTES = 0x7FFF0000
"""Pages are read through a memory map of up to 2 GiB, the most this SQLite build maps (no copy
through a read call). A reader's page cache is dropped whenever a block is committed, so execution
reads mostly through the map: past it, each page read is a system call and a copy."""

CHECKPOINT_INTERVAL_S = 0.5
"""The background checkpointer copies the WAL into the database at most this often."""
WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""A reset WAL file is truncated back to this size."""


class _Checkpointer:
    """Runs WAL checkpoints for one ledger file on its own thread and connection.

    A passive checkpoint never waits for the writer, but under a steady stream of commits the
    WAL is never found fully copied at the moment a commit starts, so it is never rewound and
    grows. Once it is past WAL_SIZE_LIMIT the checkpointer asks for a RESTART checkpoint, which
    waits (up to a second) for the commit in progress, copies the little the passive ones left,
    and lets the next commit start the WAL again from its beginning (truncated to the limit)."""

    def __init__(self, path: Path) -> None:
        self._wal = path.with_name(path.name + "-wal")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=1.0)
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoint-{path.name}", daemon=True)
        self._thread.start()

    def commit_happened(self) -> None:
        self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait()
            if self._stopping.is_set():
                return
            self._due.clear()
            with contextlib.suppress(sqlite3.DatabaseError, OSError):  # busy or closing: the next commit asks again
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                if self._wal.stat().st_size > WAL_SIZE_LIMIT:
                    self._db.execute("PRAGMA wal_checkpoint(RESTART)")
            if self._stopping.wait(CHECKPOINT_INTERVAL_S):
                return

    def close(self) -> None:
        self._stopping.set()
        self._due.set()
        self._thread.join(timeout=CHECKPOINT_INTERVAL_S + 5)
        self._db.close()


MAX_PARAMETERS = 32_766
"""Bound parameters per statement (SQLite's default limit since 3.32; the connection's own limit is
used when it is lower)."""


def _execute_rows(db: sqlite3.Connection, head: str, rows: Sequence[tuple[Any, ...]], tail: str, limit: int) -> None:
    """Run `head VALUES (...), (...), ... tail` over `rows` in as few statements as the parameter
    limit allows. One statement per chunk, not one per row: the sqlite3 module releases the GIL
    around each step and must take it back after, and beside a busy Python thread (the next block
    executing) each take-back can wait the interpreter's whole switch interval (5 ms)."""
    if not rows:
        return
    width = len(rows[0])
    per_statement = max(1, limit // width)
    row_marks = "(" + ",".join("?" * width) + ")"
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        db.execute(f"{head} VALUES {','.join([row_marks] * len(chunk))} {tail}", [v for row in chunk for v in row])


def _execute_keys(db: sqlite3.Connection, head: str, keys: Sequence[str], tail: str, limit: int) -> None:
    """Run `head (?, ?, ...) tail` with `keys` in the parenthesis, in as few statements as the limit allows."""
    for start in range(0, len(keys), limit):
        chunk = keys[start : start + limit]
        db.execute(f"{head} ({','.join('?' * len(chunk))}) {tail}", chunk)


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
                self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only on a new file
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._db.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
                self._db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
                self._db.execute("PRAGMA wal_autocheckpoint=0")
                self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
                # Tables and schema version in one transaction: a process killed while creating the
                # ledger leaves either all of them or none (and one fsync instead of one per table);
                # a ledger of another schema version is refused and left as it was.
                version = str(SCHEMA_VERSION).encode()
                stamp = f"INSERT OR IGNORE INTO meta VALUES ('schema_version', X'{version.hex()}');"
                self._db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} {stamp}")
                row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                self._db.execute("COMMIT" if row[0] == version else "ROLLBACK")
                if row[0] != version:
                    found = row[0].decode(errors="replace") if isinstance(row[0], bytes) else repr(row[0])
                    raise StoreError(
                        f"{self.path}: ledger schema version {found}, this "
                        f"medledger reads version {SCHEMA_VERSION}: move the file aside and let the peer catch up "
                        "from the network"
                    )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open ledger database {self.path}: {exc}") from exc
        self._parameter_limit = min(MAX_PARAMETERS, self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        self._lock = threading.RLock()
        self._readers = threading.local()
        self._closed = False
        self._reader_connections: list[sqlite3.Connection] = []
        self._cache_young: dict[str, bytes | None] = {}
        self._cache_old: dict[str, bytes | None] = {}
        self._cache_lock = threading.Lock()
        self._headers: dict[int, SealedHeader] = {}
        """Block number -> its committed header, the most recent HEADER_CACHE_ENTRIES read or written."""
        self._scans: dict[str, tuple[tuple[str, bytes], ...]] = {}
        """Prefix (ending in "/") -> every committed row under it; a commit drops the prefixes of
        each key it writes, so what stays here is exactly what SQL would answer."""
        self._commits = 0
        """Commits finished so far: a value read from SQL is cached only if this did not move."""
        try:
            self._height = self._read_height()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a medledger ledger: {exc}") from exc
        self._checkpointer = None if read_only else _Checkpointer(self.path)

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
            connection.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
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

    def header(self, number: int) -> SealedHeader | None:
        cached = self._headers.get(number)
        if cached is not None:
            return cached
        row = self._reader().execute("SELECT header, hash FROM blocks WHERE number=?", (number,)).fetchone()
        if row is None:
            return None
        try:
            sealed = SealedHeader(BlockHeader.decode(row[0]), row[1])
        except EncodingError as exc:
            raise StoreError(f"block {number} in {self.path} does not decode: {exc}") from exc
        if not self.read_only:  # a verifier reads what is on disk now, every time
            self._keep_header(sealed)
        return sealed

    def _keep_header(self, sealed: SealedHeader) -> None:
        with self._cache_lock:
            self._headers[sealed.number] = sealed
            if len(self._headers) > HEADER_CACHE_ENTRIES:
                del self._headers[next(iter(self._headers))]

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

    def consumed_among(self, tx_ids: Sequence[TxId]) -> set[TxId]:
        """Those of `tx_ids` a committed transaction consumed, in one query per 500 ids (a block's
        replay check at once, instead of one query per transaction)."""
        found: set[TxId] = set()
        reader = self._reader()
        for start in range(0, len(tx_ids), 500):
            chunk = tx_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = reader.execute(
                f"SELECT DISTINCT tx_id FROM receipts WHERE consumed=1 AND tx_id IN ({marks})", chunk
            ).fetchall()
            found.update(bytes(row[0]) for row in rows)
        return found

    def get_state(self, key: str) -> bytes | None:
        if self.read_only:  # another process may be writing this file: always ask SQL
            row = self._reader().execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
            return None if row is None else bytes(row[0])
        value = self._cache_young.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        commits = self._commits
        value = self._cache_old.get(key, _MISSING)
        if value is _MISSING:
            row = self._reader().execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
            value = None if row is None else bytes(row[0])
        with self._cache_lock:
            if commits == self._commits:
                self._remember(key, value)  # type: ignore[arg-type]
        return value  # type: ignore[return-value]

    def _remember(self, key: str, value: bytes | None) -> None:
        """Put one committed value in the young generation (caller holds the cache lock)."""
        if len(self._cache_young) >= STATE_CACHE_ENTRIES:
            self._cache_old, self._cache_young = self._cache_young, {}
        self._cache_young[key] = value

    def scan_state(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        if start_after is not None or limit is not None or not prefix.endswith("/") or self.read_only:
            return self._scan_sql(prefix, start_after, limit)
        cached = self._scans.get(prefix)
        if cached is not None:
            return list(cached)
        commits = self._commits
        rows = self._scan_sql(prefix, None, None)
        if len(rows) <= SCAN_CACHE_MAX_ROWS:
            with self._cache_lock:
                if commits == self._commits:
                    if len(self._scans) >= SCAN_CACHE_ENTRIES:
                        self._scans.clear()
                    self._scans[prefix] = tuple(rows)
        return rows

    def _scan_sql(self, prefix: str, start_after: str | None, limit: int | None) -> list[tuple[str, bytes]]:
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
            (number, index, receipt.tx_id, int(receipt.consumes_id), raw)
            for index, (receipt, raw) in enumerate(zip(receipts, encoded_receipts(receipts), strict=True))
        ]
        # Rows go in key order: each B-tree page is then visited once per block, not once per row.
        receipt_rows.sort(key=lambda row: row[2])
        upserts = sorted((key, value, number, index) for key, (value, index) in writes.items() if value is not None)
        deletes = sorted(key for key, (value, _) in writes.items() if value is None)
        written = sorted(writes)
        limit = self._parameter_limit
        tombstones = sorted((key, number, index, None) for key, (value, index) in writes.items() if value is None)
        with self._lock:
            if number != self._height:
                raise StoreError(f"block {number} does not follow the stored height {self._height}")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO blocks (number, hash, header, body) VALUES (?, ?, ?, ?)",
                    (number, block.hash, block.header_bytes, block.encode_body()),
                )
                _execute_rows(self._db, "INSERT INTO receipts", receipt_rows, "", limit)
                # The rows this block replaces or deletes move to the history first: the state
                # root of the block that wrote them still commits to them.
                _execute_keys(self._db, _SUPERSEDE_HEAD, written, "", limit)
                _execute_rows(self._db, "INSERT INTO state", upserts, _UPSERT, limit)
                _execute_keys(self._db, "DELETE FROM state WHERE key IN", deletes, "", limit)
                _execute_rows(self._db, "INSERT INTO state_history", tombstones, "", limit)
                self._db.executemany(_PUT_ATTESTATION, [_attestation_row(a) for a in attestations])
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"cannot commit block {number} to {self.path}: {exc}") from exc
            if self._checkpointer is not None:
                self._checkpointer.commit_happened()
            with self._cache_lock:
                self._commits += 1
                old = self._cache_old
                scans = self._scans
                for key, (value, _) in writes.items():
                    old.pop(key, None)
                    self._remember(key, value)
                    if scans:
                        _forget_scans_over(scans, key)
            self._keep_header(block.sealed_header)
            self._height = number + 1

    def copy_to(self, path: Path) -> None:
        """Write a consistent copy of the ledger, as it stands between commits, to a new file at `path`
        (SQLite's online backup: commits wait while it runs)."""
        if path.exists():
            raise StoreError(f"{path} exists already: a ledger copy goes to a new file")
        with self._lock:
            target = sqlite3.connect(path)
            try:
                self._db.backup(target)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot copy {self.path} to {path}: {exc}") from exc
            finally:
                target.close()

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
        if table not in TABLES:
            raise StoreError(f"no table {table!r}")
        return list(self._reader().execute(f"SELECT * FROM {table}").fetchall())

    def scan_raw_rows(self, table: str, columns: str = "*") -> Iterator[tuple[Any, ...]]:
        """The rows of a table as stored, in primary key order, streamed rather than loaded at once
        (for the checks of the stored bytes); `columns` is a comma-separated list of column names."""
        names_ok = columns == "*" or all(name.strip().isidentifier() for name in columns.split(","))
        if table not in TABLES or not names_ok:
            raise StoreError(f"no table {table!r} with columns {columns!r}")
        yield from self._stream(f"SELECT {columns} FROM {table} ORDER BY {_ORDER[table]}")

    def rows_per_block(self, table: str) -> dict[Any, int]:
        """block_number (as stored) -> number of rows, for `state` or `state_history`."""
        if table not in ("state", "state_history"):
            raise StoreError(f"table {table!r} has no rows per block to count")
        return dict(self._stream(f"SELECT block_number, COUNT(*) FROM {table} GROUP BY block_number"))

    def superseded_rows_beside_current(self) -> Iterator[tuple[Any, Any, bool, Any]]:
        """Each `state_history` row as (key, block_number, whether it is a deletion, block_number of the
        key's current state row or None), in (key, block_number) order."""
        rows = self._stream(
            "SELECT h.key, h.block_number, h.value IS NULL, s.block_number FROM state_history h "
            "LEFT JOIN state s ON s.key = h.key ORDER BY h.key, h.block_number"
        )
        for key, number, deleted, current in rows:
            yield key, number, bool(deleted), current

    def _stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        """The rows of a query, fetched a few thousand at a time; a damaged file is a StoreError."""
        try:
            cursor = self._reader().execute(sql)
            while rows := cursor.fetchmany(4096):
                yield from rows
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        with self._lock:
            self._closed = True
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()
            self._db.close()
