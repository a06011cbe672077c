"""`open_backend(url)`: the one place that turns a vault URL into a `VaultBackend`.

- ``sqlite:///var/lib/medledger/vault`` : a SQLite + files vault in the directory ``/var/lib/medledger/vault``
  (everything after ``sqlite://`` is the path, so ``sqlite://vault-data`` is relative);
- ``postgresql://user:password@host:port/dbname`` (or ``postgres://``): a PostgreSQL vault, in
  schema `schema` (default ``medledger_vault``).
"""

from __future__ import annotations

from pathlib import Path

from medledger.vault.backend import DEFAULT_INLINE_LIMIT, VaultBackend
from medledger.vault.errors import VaultBackendError

SQLITE_SCHEME = "sqlite://"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_backend(url: str, *, inline_limit: int = DEFAULT_INLINE_LIMIT, schema: str | None = None) -> VaultBackend:
    """Open (creating on first use) the vault backend that `url` names; `schema` applies to PostgreSQL only."""
    if url.startswith(SQLITE_SCHEME):
        directory = url[len(SQLITE_SCHEME) :]
        if not directory:
            raise VaultBackendError(f"vault URL {url!r} names no directory: use sqlite:///absolute/path")
        if schema is not None:
            raise VaultBackendError("a schema applies to PostgreSQL vaults only, not to sqlite:// ones")
        from medledger.vault.sqlite_backend import SQLiteVaultBackend

        return SQLiteVaultBackend(Path(directory), inline_limit=inline_limit)
    if url.startswith(POSTGRES_SCHEMES):
        # Imported here so that SQLite-only deployments never load libpq.
        from medledger.vault.postgres_backend import DEFAULT_SCHEMA, PostgresVaultBackend

        return PostgresVaultBackend(url, schema=schema or DEFAULT_SCHEMA, inline_limit=inline_limit)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise VaultBackendError(f"unknown vault URL scheme {scheme!r}: use sqlite:///path/to/dir or postgresql://...")
