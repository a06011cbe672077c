"""The default `VaultBackend`: one directory holding a SQLite database (WAL) and content-addressed blob files.

Layout: ``<dir>/vault.sqlite`` holds every row and the small ciphertexts; ``<dir>/blobs/ab/cdef…``
holds each large ciphertext under its hex SHA-256. A blob file is written and fsynced before its
row commits, and removed only after its row is gone, so a crash can leave an unreferenced file
(harmless) but never a row without its bytes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from medledger.core.hashing import HASH_SIZE, sha256
from medledger.vault.backend import (
    DEFAULT_INLINE_LIMIT,
    ROW_COLUMNS,
    CiphertextDigest,
    ObjectId,
    StoredObject,
    VaultBackend,
    blob_name,
    check_ciphertext_matches,
    stored_object_from_row,
    stored_object_row,
)
from medledger.vault.errors import ObjectNotFound, VaultBackendError, VaultIntegrityError

SCHEMA_VERSION = "1"

DATABASE_NAME = "vault.sqlite"
BLOBS_DIRECTORY = "blobs"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    object_id       TEXT PRIMARY KEY,
    media_type      TEXT NOT NULL,
    size            INTEGER NOT NULL,
    content_hash    BLOB NOT NULL,
    ciphertext_hash BLOB NOT NULL,
    nonce           BLOB NOT NULL,
    wrapped_key     BLOB NOT NULL,
    created_ms      INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    ciphertext      BLOB            -- NULL: the ciphertext is the file blobs/<ciphertext_hash>
);
CREATE INDEX IF NOT EXISTS objects_by_ciphertext_hash ON objects (ciphertext_hash);
"""
# A rowid table on purpose: WITHOUT ROWID suits rows far smaller than a page, and inline
# ciphertexts reach `inline_limit` bytes.

SCRUB_PAGE_ROWS = 64
"""Rows a scrub reads per query (the lock is released between pages; an inline ciphertext is below
`inline_limit`, so a page holds at most 64 of them in memory)."""

_COLUMNS = ", ".join(ROW_COLUMNS)
_INSERT = f"INSERT INTO objects ({_COLUMNS}, ciphertext) VALUES ({', '.join('?' * (len(ROW_COLUMNS) + 1))})"


class SQLiteVaultBackend(VaultBackend):
    """A vault in one directory: SQLite for rows and small ciphertexts, files for large ones.

    One connection serves every thread behind a lock; blob files are read and written outside it.
    """

    def __init__(
        self, directory: Path | str, *, inline_limit: int = DEFAULT_INLINE_LIMIT, read_only: bool = False
    ) -> None:
        """Open (creating on first use) the vault in `directory`; `read_only` opens an existing one
        without writing anything to it, as verification must."""
        super().__init__(inline_limit=inline_limit)
        self.directory = Path(directory)
        """The vault directory."""
        self.database_path = self.directory / DATABASE_NAME
        """The SQLite database file."""
        self.blobs_path = self.directory / BLOBS_DIRECTORY
        """Root of the content-addressed blob files."""
        self.read_only = read_only
        """True when opened for reading only."""
        self._lock = threading.RLock()
        if read_only:
            self._db = self._open_read_only()
            self._closed = False
            return
        try:
            self.blobs_path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.database_path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise VaultBackendError(f"cannot open vault {self.description}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a row is durable when put() returns, like the blob file it points to.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise VaultBackendError(
                    f"vault {self.description} has schema version {row[0]!r}; this medledger reads {SCHEMA_VERSION!r}"
                )
        except sqlite3.Error as exc:
            self._db.close()
            raise VaultBackendError(f"cannot open vault {self.description}: {exc}") from exc
        except VaultBackendError:
            self._db.close()
            raise
        self._closed = False

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.database_path.is_file():
            raise VaultBackendError(f"no vault database at {self.database_path}")
        try:
            db = sqlite3.connect(
                f"file:{self.database_path.resolve()}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise VaultBackendError(f"cannot open vault {self.description}: {exc}") from exc
        try:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.Error as exc:
            db.close()
            raise VaultBackendError(f"{self.database_path} is not a medledger vault: {exc}") from exc
        if row is None or row[0] != SCHEMA_VERSION:
            db.close()
            found = "none" if row is None else repr(row[0])
            raise VaultBackendError(
                f"vault {self.description} has schema version {found}; this medledger reads {SCHEMA_VERSION!r}"
            )
        return db

    @property
    def description(self) -> str:
        return f"sqlite://{self.directory}"

    def blob_path(self, ciphertext_hash: bytes) -> Path:
        """The file holding an out-of-row ciphertext with this SHA-256."""
        return self.blobs_path / blob_name(ciphertext_hash)

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise VaultBackendError(f"vault {self.description} is closed")
        return self._db

    def put(self, stored: StoredObject, ciphertext: bytes) -> None:
        check_ciphertext_matches(stored, ciphertext)
        self._connection()  # refuse before writing a blob file if closed
        outside = self.stores_outside_row(len(ciphertext))
        if outside:
            self._write_blob(stored.ciphertext_hash, ciphertext)
        try:
            with self._lock:
                self._connection().execute(_INSERT, (*stored_object_row(stored), None if outside else ciphertext))
        except sqlite3.Error as exc:
            if outside and not self._blob_is_referenced(stored.ciphertext_hash):
                self.blob_path(stored.ciphertext_hash).unlink(missing_ok=True)
            if isinstance(exc, sqlite3.IntegrityError):
                raise VaultBackendError(f"object {stored.object_id} already exists in {self.description}") from exc
            raise VaultBackendError(f"cannot store object {stored.object_id} in {self.description}: {exc}") from exc

    def _write_blob(self, ciphertext_hash: bytes, ciphertext: bytes) -> None:
        # Written privately, fsynced, then renamed into place: a blob file is whole or absent.
        path = self.blob_path(ciphertext_hash)
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
            try:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(ciphertext)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary_name, path)
            except BaseException:
                Path(temporary_name).unlink(missing_ok=True)
                raise
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise VaultBackendError(f"cannot write blob {path}: {exc}") from exc

    def _blob_is_referenced(self, ciphertext_hash: bytes) -> bool:
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT 1 FROM objects WHERE ciphertext_hash=? AND ciphertext IS NULL LIMIT 1", (ciphertext_hash,)
                )
                .fetchone()
            )
        return row is not None

    def get(self, object_id: ObjectId) -> StoredObject:
        try:
            with self._lock:
                row = (
                    self._connection()
                    .execute(f"SELECT {_COLUMNS} FROM objects WHERE object_id=?", (object_id,))
                    .fetchone()
                )
        except sqlite3.Error as exc:
            raise VaultBackendError(f"cannot read object {object_id} from {self.description}: {exc}") from exc
        if row is None:
            raise ObjectNotFound(object_id, self.description)
        return stored_object_from_row(row)

    def read_ciphertext(self, object_id: ObjectId) -> bytes:
        try:
            with self._lock:
                row = (
                    self._connection()
                    .execute("SELECT ciphertext_hash, ciphertext FROM objects WHERE object_id=?", (object_id,))
                    .fetchone()
                )
        except sqlite3.Error as exc:
            raise VaultBackendError(f"cannot read object {object_id} from {self.description}: {exc}") from exc
        if row is None:
            raise ObjectNotFound(object_id, self.description)
        ciphertext_hash, inline = row
        if inline is not None:
            return bytes(inline)
        path = self.blob_path(bytes(ciphertext_hash))
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            if not self.exists(object_id):  # deleted by another thread since the row was read
                raise ObjectNotFound(object_id, self.description) from exc
            raise VaultIntegrityError(object_id, f"its ciphertext file {path} is missing") from exc
        except OSError as exc:
            raise VaultBackendError(f"cannot read blob {path} of object {object_id}: {exc}") from exc

    def exists(self, object_id: ObjectId) -> bool:
        with self._lock:
            row = self._connection().execute("SELECT 1 FROM objects WHERE object_id=?", (object_id,)).fetchone()
        return row is not None

    def list_ids(self) -> list[ObjectId]:
        with self._lock:
            rows = self._connection().execute("SELECT object_id FROM objects ORDER BY object_id").fetchall()
        return [row[0] for row in rows]

    def ciphertext_digests(self) -> Iterator[CiphertextDigest]:
        after = ""
        while True:
            try:
                with self._lock:
                    rows = (
                        self._connection()
                        .execute(
                            "SELECT object_id, ciphertext_hash, ciphertext FROM objects WHERE object_id > ? "
                            f"ORDER BY object_id LIMIT {SCRUB_PAGE_ROWS}",
                            (after,),
                        )
                        .fetchall()
                    )
            except sqlite3.Error as exc:
                raise VaultBackendError(f"cannot scrub {self.description}: {exc}") from exc
            if not rows:
                return
            for object_id, recorded, inline in rows:
                recorded = recorded if isinstance(recorded, bytes) else str(recorded).encode()
                if inline is not None:
                    ciphertext = inline if isinstance(inline, bytes) else str(inline).encode()
                    yield CiphertextDigest(object_id, recorded, sha256(ciphertext), len(ciphertext), "row")
                else:
                    yield self._blob_digest(str(object_id), recorded)
            after = str(rows[-1][0])

    def _blob_digest(self, object_id: str, recorded: bytes) -> CiphertextDigest:
        if len(recorded) != HASH_SIZE:  # a changed hash names no blob file at all
            return CiphertextDigest(object_id, recorded, None, 0, f"{self.blobs_path} (no file for that hash)")
        path = self.blob_path(recorded)
        try:
            with path.open("rb") as file:
                digest = hashlib.file_digest(file, "sha256")
                size = file.tell()
        except FileNotFoundError:
            return CiphertextDigest(object_id, recorded, None, 0, str(path))
        except OSError as exc:
            raise VaultBackendError(f"cannot read blob {path} of object {object_id}: {exc}") from exc
        return CiphertextDigest(object_id, recorded, digest.digest(), size, str(path))

    def unreferenced_blobs(self) -> list[str]:
        with self._lock:
            rows = self._connection().execute("SELECT ciphertext_hash FROM objects WHERE ciphertext IS NULL").fetchall()
        referenced = {self.blob_path(bytes(row[0])) for row in rows if isinstance(row[0], bytes)}
        if not self.blobs_path.is_dir():
            return []
        found = (path for path in self.blobs_path.rglob("*") if not path.is_dir())
        return sorted(str(path.relative_to(self.directory)) for path in found if path not in referenced)

    def delete(self, object_id: ObjectId) -> None:
        try:
            with self._lock:
                row = (
                    self._connection()
                    .execute(
                        "DELETE FROM objects WHERE object_id=? RETURNING ciphertext_hash, ciphertext IS NULL",
                        (object_id,),
                    )
                    .fetchone()
                )
                if row is None:
                    raise ObjectNotFound(object_id, self.description)
                ciphertext_hash, outside = bytes(row[0]), bool(row[1])
                if outside and not self._blob_is_referenced(ciphertext_hash):
                    self.blob_path(ciphertext_hash).unlink(missing_ok=True)
        except sqlite3.Error as exc:
            raise VaultBackendError(f"cannot delete object {object_id} from {self.description}: {exc}") from exc
        except OSError as exc:
            raise VaultBackendError(f"object {object_id} deleted, but not its blob file: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
