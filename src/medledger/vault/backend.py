"""The `VaultBackend` interface: durable rows of encrypted objects and their ciphertext bytes.

A backend stores what `Vault` hands it and never sees a plaintext or an unwrapped key. Small
ciphertexts live inline in their row; ciphertexts of at least `inline_limit` bytes (DICOM studies,
scans) live outside it, content-addressed by their SHA-256. Where each ciphertext lives is recorded
per row, so changing the limit never strands an object. Backends live beside this module
(`sqlite_backend`, `postgres_backend`); `backend_factory.open_backend` picks one from a URL.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from medledger.core.hashing import Hash32, sha256
from medledger.vault.errors import VaultBackendError, VaultIntegrityError

ObjectId = str
"""32 lowercase hex digits (128 random bits) naming one object in one vault."""

DEFAULT_INLINE_LIMIT = 256 * 1024
"""Ciphertexts of at least this many bytes are stored outside their row, content-addressed."""


class ObjectKind(enum.StrEnum):
    """What an object is for; independent of where its bytes are stored."""

    RECORD = "record"
    """A clinical record (FHIR resource, HL7 message, document)."""
    BLOB = "blob"
    """A large binary attached to records (a DICOM file, a scan, a PDF)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """The metadata row of one encrypted object; its ciphertext is stored beside it."""

    object_id: ObjectId
    """Random 128-bit id, lowercase hex."""
    media_type: str
    """MIME type of the plaintext, e.g. ``application/fhir+json``; bound into the AEAD."""
    size: int
    """Length of the plaintext in bytes (the ciphertext is `TAG_SIZE` longer)."""
    content_hash: Hash32
    """SHA-256 of the plaintext: what the ledger records and a requester checks."""
    ciphertext_hash: Hash32
    """SHA-256 of the ciphertext: checked before every decryption or delivery; the blob address."""
    nonce: bytes
    """The 24-byte XChaCha20-Poly1305 nonce of the ciphertext."""
    wrapped_key: bytes
    """The object's own data key, encrypted under the vault's master key (nonce || ciphertext)."""
    created_ms: int
    """When the object was stored, in Unix milliseconds."""
    kind: ObjectKind
    """``record`` or ``blob``."""


@dataclass(frozen=True, slots=True)
class CiphertextDigest:
    """One object's ciphertext as a scrub sees it: the hash its row records beside the hash of the
    bytes actually stored."""

    object_id: ObjectId
    """The object."""
    recorded: bytes
    """The `ciphertext_hash` its row records."""
    stored: Hash32 | None
    """SHA-256 of the ciphertext bytes stored for it; None when they are missing."""
    size: int
    """Length of the stored ciphertext in bytes (0 when missing)."""
    location: str
    """Where the bytes are: ``row``, or the blob file or table that should hold them."""


def blob_name(ciphertext_hash: Hash32) -> str:
    """Relative location of an out-of-row ciphertext: ``ab/cdef…`` from its hex SHA-256."""
    hex_hash = ciphertext_hash.hex()
    return f"{hex_hash[:2]}/{hex_hash[2:]}"


ROW_COLUMNS = (
    "object_id",
    "media_type",
    "size",
    "content_hash",
    "ciphertext_hash",
    "nonce",
    "wrapped_key",
    "created_ms",
    "kind",
)
"""The metadata columns of an object row in both SQL backends, in `StoredObject` field order."""


def stored_object_from_row(row: Sequence[Any]) -> StoredObject:
    """Rebuild a `StoredObject` from its `ROW_COLUMNS`; VaultIntegrityError naming it if a value was altered."""
    object_id, media_type, size, content_hash, ciphertext_hash, nonce, wrapped_key, created_ms, kind = row
    try:
        object_kind = ObjectKind(kind)
    except ValueError as exc:
        raise VaultIntegrityError(object_id, f"stored kind {kind!r} is neither 'record' nor 'blob'") from exc
    return StoredObject(
        object_id=object_id,
        media_type=media_type,
        size=int(size),
        content_hash=bytes(content_hash),
        ciphertext_hash=bytes(ciphertext_hash),
        nonce=bytes(nonce),
        wrapped_key=bytes(wrapped_key),
        created_ms=int(created_ms),
        kind=object_kind,
    )


def stored_object_row(stored: StoredObject) -> tuple[str, str, int, bytes, bytes, bytes, bytes, int, str]:
    """The `ROW_COLUMNS` values of `stored`."""
    return (
        stored.object_id,
        stored.media_type,
        stored.size,
        stored.content_hash,
        stored.ciphertext_hash,
        stored.nonce,
        stored.wrapped_key,
        stored.created_ms,
        stored.kind.value,
    )


def check_ciphertext_matches(stored: StoredObject, ciphertext: bytes) -> None:
    """Refuse to store `ciphertext` under a row whose ciphertext hash describes other bytes."""
    if sha256(ciphertext) != stored.ciphertext_hash:
        raise VaultBackendError(f"object {stored.object_id}: ciphertext does not match its ciphertext_hash")


class VaultBackend(ABC):
    """Durable home of one vault's encrypted objects. Implementations are safe to share between threads."""

    def __init__(self, *, inline_limit: int = DEFAULT_INLINE_LIMIT) -> None:
        if inline_limit < 1:
            raise VaultBackendError(f"inline_limit must be at least 1 byte, got {inline_limit}")
        self.inline_limit = inline_limit
        """Ciphertexts of at least this many bytes go out of row (files, blob table)."""

    def stores_outside_row(self, ciphertext_size: int) -> bool:
        """True when a new ciphertext of this size is stored out of row."""
        return ciphertext_size >= self.inline_limit

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the objects are, for messages (``sqlite:///var/vault``); never contains a password."""

    @abstractmethod
    def put(self, stored: StoredObject, ciphertext: bytes) -> None:
        """Store a new object and its ciphertext atomically; VaultBackendError if the id is taken."""

    @abstractmethod
    def get(self, object_id: ObjectId) -> StoredObject:
        """The row of `object_id`; ObjectNotFound naming it if absent."""

    @abstractmethod
    def read_ciphertext(self, object_id: ObjectId) -> bytes:
        """The stored ciphertext bytes, unchecked; ObjectNotFound if absent, VaultIntegrityError if lost."""

    @abstractmethod
    def exists(self, object_id: ObjectId) -> bool:
        """True when `object_id` is stored."""

    @abstractmethod
    def list_ids(self) -> list[ObjectId]:
        """Every stored object id, in ascending order."""

    @abstractmethod
    def ciphertext_digests(self) -> Iterator[CiphertextDigest]:
        """Every object's recorded and actual ciphertext hash, in object id order; each backend hashes
        the bytes where it keeps them (SQLite: read and hashed here; PostgreSQL: by the server)."""

    @abstractmethod
    def unreferenced_blobs(self) -> list[str]:
        """Names of stored out-of-row ciphertexts that no row points at (an interrupted put leaves
        one behind: harmless, never served, but listed by a scrub)."""

    @abstractmethod
    def delete(self, object_id: ObjectId) -> None:
        """Remove an object and (if no other row uses them) its out-of-row bytes; ObjectNotFound if absent."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the backend cannot be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
