"""Errors of the vault layer.

MedledgerError (core)
└── VaultError
    ├── ObjectNotFound          no object with this id in this vault
    ├── VaultIntegrityError     stored or delivered bytes that do not match their hashes or do not
    │                           authenticate; names the object
    ├── KeyDeliveryError        a sealed data key that cannot be opened with this recipient's key
    ├── VaultBackendError       the storage (SQLite + files, PostgreSQL) cannot be opened, read or written
    ├── MasterKeyError          a master key file that is missing its guarantees (size, permissions)
    └── LocatorError            a string that is not a ``vault://<org_id>/<object_id>`` locator
"""

from __future__ import annotations

from medledger.core.errors import MedledgerError


class VaultError(MedledgerError):
    """Root of vault errors."""


class ObjectNotFound(VaultError):
    """No object with `object_id` in the vault described by `where`."""

    def __init__(self, object_id: str, where: str) -> None:
        super().__init__(f"object {object_id} is not in {where}")
        self.object_id = object_id
        self.where = where


class VaultIntegrityError(VaultError):
    """Bytes of object `object_id` that were changed, truncated or lost; `problem` says how."""

    def __init__(self, object_id: str, problem: str) -> None:
        super().__init__(f"object {object_id}: {problem}")
        self.object_id = object_id
        self.problem = problem


class KeyDeliveryError(VaultError):
    """A sealed data key that this recipient cannot open, or a delivery that is malformed."""


class VaultBackendError(VaultError):
    """The storage behind a vault could not be opened, read or written."""


class MasterKeyError(VaultError):
    """A vault master key (or its file) that is not 32 private bytes."""


class LocatorError(VaultError):
    """A locator that is malformed or names another organisation's vault."""
