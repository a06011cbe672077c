"""An organisation's vault: encrypts records on the way in, checks them on the way out, and
delivers one record's data key sealed to one requester.

Object ids are random 128-bit hex strings, not content addresses: two stores of the same bytes
must be two objects with two keys; the id exists before encryption, so the wrapped key can be
bound to it; and a locator on the ledger then reveals nothing about the record (a content
address would let anyone confirm a guessed record). Whether a requester may have a record is
decided by the node (an on-chain permit) before it calls `Vault.deliver`; the vault only makes
sure the bytes it hands out are exactly the bytes it stored.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from medledger.core.hashing import Hash32, sha256
from medledger.core.identity import NAME_PATTERN
from medledger.vault.backend import ObjectId, ObjectKind, StoredObject, VaultBackend
from medledger.vault.crypto import (
    decrypt_record,
    encrypt_record,
    new_data_key,
    open_sealed_key,
    seal_key,
    unwrap_data_key,
    wrap_data_key,
)
from medledger.vault.errors import KeyDeliveryError, LocatorError, VaultError, VaultIntegrityError
from medledger.vault.master_key import MASTER_KEY_SIZE
from medledger.vault.scrub import ScrubReport, scrub

LOCATOR_SCHEME = "vault://"
OBJECT_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
"""What `Vault.put` issues: 128 random bits as lowercase hex."""
MEDIA_TYPE_PATTERN = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(?: *;[\x20-\x7e]*)?$"
)
"""An RFC 6838 type/subtype, optionally with parameters (``application/fhir+json; fhirVersion=4.0``)."""
MAX_MEDIA_TYPE_LENGTH = 255


@dataclass(frozen=True, slots=True)
class VaultLocator:
    """Where a record lives: the organisation whose vault holds it and its object id there."""

    org_id: str
    """The organisation running the vault."""
    object_id: ObjectId
    """The object's id in that vault."""

    def __str__(self) -> str:
        return f"{LOCATOR_SCHEME}{self.org_id}/{self.object_id}"


def parse_locator(locator: str) -> VaultLocator:
    """Split ``vault://<org_id>/<object_id>``; LocatorError saying what is wrong otherwise."""
    if not isinstance(locator, str) or not locator.startswith(LOCATOR_SCHEME):
        raise LocatorError(f"locator {locator!r} does not start with {LOCATOR_SCHEME!r}")
    org_id, separator, object_id = locator[len(LOCATOR_SCHEME) :].partition("/")
    if not separator or not NAME_PATTERN.fullmatch(org_id) or not OBJECT_ID_PATTERN.fullmatch(object_id):
        raise LocatorError(
            f"locator {locator!r} is not vault://<org_id>/<object_id> "
            "(an organisation id, then 32 lowercase hex digits)"
        )
    return VaultLocator(org_id, object_id)


@dataclass(frozen=True, slots=True)
class SealedDelivery:
    """One record as a vault hands it to one requester: ciphertext plus its data key sealed to them."""

    object_id: ObjectId
    """The object's id in the serving vault."""
    media_type: str
    """MIME type of the plaintext (part of the AEAD associated data)."""
    ciphertext: bytes
    """The stored XChaCha20-Poly1305 ciphertext, unchanged."""
    nonce: bytes
    """Its 24-byte nonce."""
    sealed_key: bytes
    """The object's data key in a sealed box to the requester's X25519 public key."""
    content_hash: Hash32
    """SHA-256 of the plaintext, as stored; compare with the ledger's record entry."""
    ciphertext_hash: Hash32
    """SHA-256 of `ciphertext`, as stored."""
    org_id: str
    """The organisation whose vault served it (part of the AEAD associated data)."""

    def to_dict(self) -> dict[str, str | bytes]:
        """Field name -> value; every value is canonically encodable (`medledger.core.encoding.encode`)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> SealedDelivery:
        """The inverse of `to_dict`; KeyDeliveryError naming the first missing, extra or mistyped field."""
        expected = [field.name for field in fields(cls)]
        if not isinstance(value, Mapping):
            raise KeyDeliveryError(f"malformed delivery: expected a map, got {type(value).__name__}")
        missing = sorted(set(expected) - set(value))
        extra = sorted(set(value) - set(expected))
        if missing or extra:
            raise KeyDeliveryError(f"malformed delivery: missing fields {missing}, unknown fields {extra}")
        for name in expected:
            wanted = str if name in _TEXT_FIELDS else bytes
            if not isinstance(value[name], wanted):
                raise KeyDeliveryError(
                    f"malformed delivery: field {name!r} is a {type(value[name]).__name__}, expected {wanted.__name__}"
                )
        return cls(**{name: value[name] for name in expected})


_TEXT_FIELDS = frozenset({"object_id", "media_type", "org_id"})
"""The `SealedDelivery` fields that are text; all others are bytes."""


def check_media_type(media_type: str) -> str:
    """Return `media_type` if it is a type/subtype MIME string of at most 255 characters, else raise VaultError."""
    if (
        not isinstance(media_type, str)
        or len(media_type) > MAX_MEDIA_TYPE_LENGTH
        or not MEDIA_TYPE_PATTERN.fullmatch(media_type)
    ):
        raise VaultError(f"media type {media_type!r} is not a MIME type such as 'application/fhir+json'")
    return media_type


class Vault:
    """One organisation's encrypted store. Thread-safe when its backend is (both shipped backends are)."""

    def __init__(self, backend: VaultBackend, org_id: str, master_key: bytes, *, scrub_on_open: bool = True) -> None:
        """Open the vault over `backend`. Unless `scrub_on_open` is False, every stored ciphertext is
        hashed against its row first (`medledger.vault.scrub`), and a vault with a changed or missing
        ciphertext is refused with a VaultIntegrityError naming the first broken object."""
        if not isinstance(org_id, str) or not NAME_PATTERN.fullmatch(org_id):
            raise VaultError(f"organisation id {org_id!r} is not valid: use 2-63 characters of a-z, 0-9 and '-'")
        if not isinstance(master_key, bytes) or len(master_key) != MASTER_KEY_SIZE:
            raise VaultError(f"a vault master key is {MASTER_KEY_SIZE} bytes: load it with load_or_create_master_key")
        self.backend = backend
        """Where the encrypted objects are stored."""
        self.org_id = org_id
        """The organisation that runs this vault; bound into every record's AEAD."""
        self._master_key = master_key
        self.opening_scrub: ScrubReport | None = None
        """What the scrub at opening found (None when it was skipped)."""
        if scrub_on_open:
            self.opening_scrub = scrub(backend)
            refusal = self.opening_scrub.refusal()
            if refusal is not None:
                raise refusal

    def __repr__(self) -> str:
        return f"Vault(org_id={self.org_id!r}, backend={self.backend.description!r})"

    def put(self, plaintext: bytes, media_type: str, now_ms: int, *, kind: ObjectKind | str = "record") -> StoredObject:
        """Encrypt `plaintext` under a fresh data key and store it; return its row (hashes for the ledger)."""
        check_media_type(media_type)
        try:
            object_kind = ObjectKind(kind)
        except ValueError as exc:
            raise VaultError(f"object kind {kind!r} is neither 'record' nor 'blob'") from exc
        if isinstance(now_ms, bool) or not isinstance(now_ms, int) or now_ms < 0:
            raise VaultError(f"now_ms must be a non-negative integer of Unix milliseconds, got {now_ms!r}")
        plaintext = bytes(plaintext)
        object_id = secrets.token_hex(16)
        data_key = new_data_key()
        nonce, ciphertext = encrypt_record(plaintext, data_key, org_id=self.org_id, media_type=media_type)
        stored = StoredObject(
            object_id=object_id,
            media_type=media_type,
            size=len(plaintext),
            content_hash=sha256(plaintext),
            ciphertext_hash=sha256(ciphertext),
            nonce=nonce,
            wrapped_key=wrap_data_key(data_key, self._master_key, object_id),
            created_ms=now_ms,
            kind=object_kind,
        )
        self.backend.put(stored, ciphertext)
        return stored

    def get(self, object_id: ObjectId) -> StoredObject:
        """The row of `object_id`; ObjectNotFound naming it if absent."""
        return self.backend.get(object_id)

    def exists(self, object_id: ObjectId) -> bool:
        """True when `object_id` is stored here."""
        return self.backend.exists(object_id)

    def list_ids(self) -> list[ObjectId]:
        """Every object id in this vault, in ascending order."""
        return self.backend.list_ids()

    def delete(self, object_id: ObjectId) -> None:
        """Remove `object_id` and its ciphertext (the ledger keeps its hashes); ObjectNotFound if absent."""
        self.backend.delete(object_id)

    def locator_for(self, object_id: ObjectId) -> str:
        """``vault://<org_id>/<object_id>``: what the ledger's record entry points at."""
        return str(VaultLocator(self.org_id, object_id))

    def object_id_for(self, locator: str) -> ObjectId:
        """The object id in `locator`; LocatorError if it is malformed or names another organisation's vault."""
        parsed = parse_locator(locator)
        if parsed.org_id != self.org_id:
            raise LocatorError(f"locator {locator!r} points at the vault of {parsed.org_id!r}, this is {self.org_id!r}")
        return parsed.object_id

    def read_ciphertext(self, object_id: ObjectId) -> bytes:
        """The stored ciphertext, after checking it against its stored hash (VaultIntegrityError otherwise)."""
        return self._verified_ciphertext(self.backend.get(object_id))

    def decrypt(self, object_id: ObjectId) -> bytes:
        """The plaintext of `object_id`, every stored byte checked; VaultIntegrityError naming it on any change."""
        stored = self.backend.get(object_id)
        ciphertext = self._verified_ciphertext(stored)
        data_key = unwrap_data_key(stored.wrapped_key, self._master_key, object_id)
        plaintext = decrypt_record(
            ciphertext, stored.nonce, data_key, org_id=self.org_id, media_type=stored.media_type, object_id=object_id
        )
        _check_hash(object_id, "plaintext", stored.content_hash, sha256(plaintext))
        return plaintext

    def deliver(self, object_id: ObjectId, recipient_x25519_public: bytes) -> SealedDelivery:
        """`object_id`'s checked ciphertext with its data key sealed to the recipient.

        Call it only for a request the node has checked against an on-chain permit.
        """
        stored = self.backend.get(object_id)
        ciphertext = self._verified_ciphertext(stored)
        data_key = unwrap_data_key(stored.wrapped_key, self._master_key, object_id)
        return SealedDelivery(
            object_id=object_id,
            media_type=stored.media_type,
            ciphertext=ciphertext,
            nonce=stored.nonce,
            sealed_key=seal_key(data_key, recipient_x25519_public),
            content_hash=stored.content_hash,
            ciphertext_hash=stored.ciphertext_hash,
            org_id=self.org_id,
        )

    def _verified_ciphertext(self, stored: StoredObject) -> bytes:
        ciphertext = self.backend.read_ciphertext(stored.object_id)
        _check_hash(stored.object_id, "ciphertext", stored.ciphertext_hash, sha256(ciphertext))
        return ciphertext


def _check_hash(object_id: ObjectId, what: str, stored: Hash32, computed: Hash32, *, source: str = "stored") -> None:
    """Raise VaultIntegrityError ``object <id>: <what> hash mismatch: stored …, computed …`` unless equal."""
    if stored != computed:
        raise VaultIntegrityError(
            object_id, f"{what} hash mismatch: {source} {stored.hex()}, computed {computed.hex()}"
        )


def open_delivery(
    delivery: SealedDelivery,
    recipient_x25519_private: bytes,
    *,
    expected_content_hash: Hash32 | None = None,
    expected_ciphertext_hash: Hash32 | None = None,
) -> bytes:
    """The plaintext of `delivery`, checked end to end.

    Pass the hashes the ledger records as `expected_*`: then a vault that serves other bytes than
    it registered is caught too. Raises VaultIntegrityError (a hash mismatch or a ciphertext that
    does not authenticate) or KeyDeliveryError (sealed to another recipient), each naming the object.
    """
    object_id = delivery.object_id
    ciphertext_hash = sha256(delivery.ciphertext)
    _check_hash(object_id, "ciphertext", delivery.ciphertext_hash, ciphertext_hash, source="delivered")
    if expected_ciphertext_hash is not None:
        _check_hash(object_id, "ciphertext", expected_ciphertext_hash, ciphertext_hash, source="expected")
    try:
        data_key = open_sealed_key(delivery.sealed_key, recipient_x25519_private)
    except KeyDeliveryError as exc:
        raise KeyDeliveryError(f"object {object_id}: {exc}") from exc
    plaintext = decrypt_record(
        delivery.ciphertext,
        delivery.nonce,
        data_key,
        org_id=delivery.org_id,
        media_type=delivery.media_type,
        object_id=object_id,
    )
    content_hash = sha256(plaintext)
    _check_hash(object_id, "plaintext", delivery.content_hash, content_hash, source="delivered")
    if expected_content_hash is not None:
        _check_hash(object_id, "plaintext", expected_content_hash, content_hash, source="expected")
    return plaintext
