"""A `VaultBackend` on PostgreSQL (psycopg 3 with a connection pool): for hospitals that run one.

Rows live in ``<schema>.objects``; large ciphertexts in ``<schema>.blobs`` (bytea), keyed by their
SHA-256 like the files of the SQLite backend. Blobs are kept in the database rather than in files
so that one PostgreSQL backup, replica or point-in-time restore holds the whole vault consistently,
every vault process on any host sees the same bytes, and a row and its blob commit in one
transaction (no orphan files, no second store to secure). The cost: a bytea value is limited to
1 GiB and read whole; both columns use STORAGE EXTERNAL (out of line, uncompressed), since
ciphertext does not compress. The schema is created on first use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from medledger.vault.backend import (
    DEFAULT_INLINE_LIMIT,
    ROW_COLUMNS,
    CiphertextDigest,
    ObjectId,
    StoredObject,
    VaultBackend,
    check_ciphertext_matches,
    stored_object_from_row,
    stored_object_row,
)
from medledger.vault.errors import ObjectNotFound, VaultBackendError, VaultIntegrityError

SCHEMA_VERSION = "1"
DEFAULT_SCHEMA = "medledger_vault"
MAX_BYTEA_SIZE = (1 << 30) - 1
"""PostgreSQL refuses a single field value of 1 GiB or more."""

SCRUB_PAGE_ROWS = 256
"""Objects a scrub asks about per query; the server hashes their bytes, so only hashes travel."""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SCHEMA_LOCK_ID = 0x6D65_646C_7661_756C
"""Advisory lock taken while creating the schema, so two processes starting together do not race."""

_SCHEMA_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.objects (
    object_id       text PRIMARY KEY,
    media_type      text NOT NULL,
    size            bigint NOT NULL,
    content_hash    bytea NOT NULL,
    ciphertext_hash bytea NOT NULL,
    nonce           bytea NOT NULL,
    wrapped_key     bytea NOT NULL,
    created_ms      bigint NOT NULL,
    kind            text NOT NULL,
    ciphertext      bytea  -- NULL: the ciphertext is in blobs under ciphertext_hash
);
CREATE INDEX IF NOT EXISTS objects_by_ciphertext_hash ON {schema}.objects (ciphertext_hash);
CREATE TABLE IF NOT EXISTS {schema}.blobs (
    ciphertext_hash bytea PRIMARY KEY,
    data            bytea NOT NULL
);
ALTER TABLE {schema}.objects ALTER COLUMN ciphertext SET STORAGE EXTERNAL;
ALTER TABLE {schema}.blobs ALTER COLUMN data SET STORAGE EXTERNAL;
"""


def describe_dsn(dsn: str) -> str:
    """``postgresql://user@host:port/dbname`` for messages: the DSN without its password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise VaultBackendError(f"not a PostgreSQL connection string: {exc}") from exc
    user = parts.get("user", "")
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    return f"postgresql://{user}{'@' if user else ''}{host}:{port}/{parts.get('dbname', '')}"


class PostgresVaultBackend(VaultBackend):
    """A vault in one PostgreSQL schema; thread-safe through a pool of up to `max_connections` connections."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        max_connections: int = 4,
        connect_timeout_s: int = 10,
    ) -> None:
        super().__init__(inline_limit=inline_limit)
        if not _SCHEMA_NAME.fullmatch(schema):
            raise VaultBackendError(f"schema name {schema!r} is not valid: use up to 63 of a-z, 0-9 and '_'")
        self.schema = schema
        """The PostgreSQL schema holding this vault's tables."""
        self._description = f"{describe_dsn(dsn)} (schema {schema})"
        self._create_schema(dsn, connect_timeout_s)
        self._pool: ConnectionPool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "connect_timeout": connect_timeout_s},
            check=ConnectionPool.check_connection,
            timeout=float(connect_timeout_s),
            name=f"medledger-vault-{schema}",
            open=True,
        )
        self._queries = self._compose_queries()

    def _create_schema(self, dsn: str, connect_timeout_s: int) -> None:
        try:
            with psycopg.connect(dsn, connect_timeout=connect_timeout_s) as connection:
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
                connection.execute(sql.SQL(_SCHEMA_DDL).format(schema=sql.Identifier(self.schema)))
                meta = sql.Identifier(self.schema, "meta")
                row = connection.execute(
                    sql.SQL("SELECT value FROM {} WHERE key = 'schema_version'").format(meta)
                ).fetchone()
                if row is None:
                    connection.execute(
                        sql.SQL("INSERT INTO {} VALUES ('schema_version', %s)").format(meta), (SCHEMA_VERSION,)
                    )
                elif row[0] != SCHEMA_VERSION:
                    raise VaultBackendError(
                        f"vault {self._description} has schema version {row[0]!r}; "
                        f"this medledger reads {SCHEMA_VERSION!r}"
                    )
        except psycopg.Error as exc:
            raise VaultBackendError(f"cannot open vault {self._description}: {exc}") from exc

    def _compose_queries(self) -> dict[str, sql.Composed]:
        objects = sql.Identifier(self.schema, "objects")
        blobs = sql.Identifier(self.schema, "blobs")
        columns = sql.SQL(", ").join(sql.Identifier(column) for column in ROW_COLUMNS)
        placeholders = sql.SQL(", ").join(sql.Placeholder() for _ in range(len(ROW_COLUMNS) + 1))
        templates = {
            "insert_object": "INSERT INTO {objects} ({columns}, ciphertext) VALUES ({placeholders})",
            "insert_blob": "INSERT INTO {blobs} (ciphertext_hash, data) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            "get": "SELECT {columns} FROM {objects} WHERE object_id = %s",
            "ciphertext": (
                "SELECT o.ciphertext, b.data FROM {objects} o LEFT JOIN {blobs} b "
                "ON o.ciphertext IS NULL AND b.ciphertext_hash = o.ciphertext_hash WHERE o.object_id = %s"
            ),
            "digests": (
                "SELECT o.object_id, o.ciphertext_hash, sha256(COALESCE(o.ciphertext, b.data)), "
                "octet_length(COALESCE(o.ciphertext, b.data)), o.ciphertext IS NOT NULL FROM {objects} o "
                "LEFT JOIN {blobs} b ON o.ciphertext IS NULL AND b.ciphertext_hash = o.ciphertext_hash "
                f"WHERE o.object_id > %s ORDER BY o.object_id LIMIT {SCRUB_PAGE_ROWS}"
            ),
            "unreferenced_blobs": (
                "SELECT b.ciphertext_hash FROM {blobs} b WHERE NOT EXISTS (SELECT 1 FROM {objects} o "
                "WHERE o.ciphertext IS NULL AND o.ciphertext_hash = b.ciphertext_hash) ORDER BY b.ciphertext_hash"
            ),
            "exists": "SELECT 1 FROM {objects} WHERE object_id = %s",
            "list_ids": "SELECT object_id FROM {objects} ORDER BY object_id",
            "delete_object": (
                "DELETE FROM {objects} WHERE object_id = %s RETURNING ciphertext_hash, ciphertext IS NULL"
            ),
            "delete_unreferenced_blob": (
                "DELETE FROM {blobs} WHERE ciphertext_hash = %s AND NOT EXISTS "
                "(SELECT 1 FROM {objects} WHERE ciphertext_hash = %s AND ciphertext IS NULL)"
            ),
        }
        return {
            name: sql.SQL(template).format(objects=objects, blobs=blobs, columns=columns, placeholders=placeholders)
            for name, template in templates.items()
        }

    @property
    def description(self) -> str:
        return self._description

    @contextmanager
    def _connection(self, action: str) -> Iterator[psycopg.Connection[TupleRow]]:
        """A pooled connection (autocommit); psycopg errors become VaultBackendError naming `action`."""
        try:
            with self._pool.connection() as connection:
                yield connection
        except psycopg.Error as exc:
            raise VaultBackendError(f"cannot {action} in {self._description}: {exc}") from exc

    def put(self, stored: StoredObject, ciphertext: bytes) -> None:
        check_ciphertext_matches(stored, ciphertext)
        if len(ciphertext) > MAX_BYTEA_SIZE:
            raise VaultBackendError(
                f"object {stored.object_id}: a ciphertext of {len(ciphertext)} bytes exceeds PostgreSQL's 1 GiB "
                "value limit; store it in a sqlite+files vault"
            )
        outside = self.stores_outside_row(len(ciphertext))
        with self._connection(f"store object {stored.object_id}") as connection:
            try:
                with connection.transaction():
                    if outside:
                        connection.execute(self._queries["insert_blob"], (stored.ciphertext_hash, ciphertext))
                    connection.execute(
                        self._queries["insert_object"], (*stored_object_row(stored), None if outside else ciphertext)
                    )
            except psycopg.errors.UniqueViolation as exc:
                raise VaultBackendError(f"object {stored.object_id} already exists in {self._description}") from exc

    def get(self, object_id: ObjectId) -> StoredObject:
        with self._connection(f"read object {object_id}") as connection:
            row = connection.execute(self._queries["get"], (object_id,)).fetchone()
        if row is None:
            raise ObjectNotFound(object_id, self._description)
        return stored_object_from_row(row)

    def read_ciphertext(self, object_id: ObjectId) -> bytes:
        with self._connection(f"read object {object_id}") as connection:
            # binary: bytea arrives as raw bytes instead of twice as many hex digits.
            row = connection.execute(self._queries["ciphertext"], (object_id,), binary=True).fetchone()
        if row is None:
            raise ObjectNotFound(object_id, self._description)
        inline, blob = row
        if inline is not None:
            return bytes(inline)
        if blob is None:
            raise VaultIntegrityError(object_id, f"its ciphertext blob is missing from {self.schema}.blobs")
        return bytes(blob)

    def exists(self, object_id: ObjectId) -> bool:
        with self._connection(f"look up object {object_id}") as connection:
            return connection.execute(self._queries["exists"], (object_id,)).fetchone() is not None

    def list_ids(self) -> list[ObjectId]:
        with self._connection("list objects") as connection:
            return [str(row[0]) for row in connection.execute(self._queries["list_ids"]).fetchall()]

    def ciphertext_digests(self) -> Iterator[CiphertextDigest]:
        after = ""
        while True:
            with self._connection("scrub the objects") as connection:
                rows = connection.execute(self._queries["digests"], (after,), binary=True).fetchall()
            if not rows:
                return
            for object_id, recorded, stored, size, inline in rows:
                location = "row" if inline else f"{self.schema}.blobs"
                digest = None if stored is None else bytes(stored)
                yield CiphertextDigest(str(object_id), bytes(recorded), digest, int(size or 0), location)
            after = str(rows[-1][0])

    def unreferenced_blobs(self) -> list[str]:
        with self._connection("list unreferenced blobs") as connection:
            rows = connection.execute(self._queries["unreferenced_blobs"]).fetchall()
        return [f"{self.schema}.blobs/{bytes(row[0]).hex()}" for row in rows]

    def delete(self, object_id: ObjectId) -> None:
        with self._connection(f"delete object {object_id}") as connection, connection.transaction():
            row = connection.execute(self._queries["delete_object"], (object_id,)).fetchone()
            if row is None:
                raise ObjectNotFound(object_id, self._description)
            ciphertext_hash, outside = row
            if outside:
                connection.execute(self._queries["delete_unreferenced_blob"], (ciphertext_hash, ciphertext_hash))

    def close(self) -> None:
        self._pool.close()
