"""The institution-side encrypted store of raw records and blobs, and key delivery (DESIGN.md section 6).

Records never leave the hospital in clear: each is encrypted under its own data key, the key is
wrapped under the vault's master key, and a permitted requester receives the ciphertext with the
data key sealed to their X25519 key. A vault re-hashes every stored ciphertext when it opens
(`scrub`) and refuses to serve if one was changed. The interface (`VaultBackend`) is here; its
backends (SQLite + files, PostgreSQL) live beside it and `open_backend` picks one from a URL.
"""

from __future__ import annotations

from medledger.vault.backend import DEFAULT_INLINE_LIMIT, ObjectId, ObjectKind, StoredObject, VaultBackend
from medledger.vault.backend_factory import open_backend
from medledger.vault.crypto import open_sealed_key, seal_key
from medledger.vault.errors import (
    KeyDeliveryError,
    LocatorError,
    MasterKeyError,
    ObjectNotFound,
    VaultBackendError,
    VaultError,
    VaultIntegrityError,
)
from medledger.vault.master_key import load_or_create_master_key
from medledger.vault.scrub import ScrubReport, scrub
from medledger.vault.vault import SealedDelivery, Vault, VaultLocator, open_delivery, parse_locator

__all__ = [
    "DEFAULT_INLINE_LIMIT",
    "KeyDeliveryError",
    "LocatorError",
    "MasterKeyError",
    "ObjectId",
    "ObjectKind",
    "ObjectNotFound",
    "ScrubReport",
    "SealedDelivery",
    "StoredObject",
    "Vault",
    "VaultBackend",
    "VaultBackendError",
    "VaultError",
    "VaultIntegrityError",
    "VaultLocator",
    "load_or_create_master_key",
    "open_backend",
    "open_delivery",
    "open_sealed_key",
    "parse_locator",
    "scrub",
    "seal_key",
]
