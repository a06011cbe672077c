"""The vault's cryptography: per-object data keys, XChaCha20-Poly1305 (libsodium via PyNaCl), key
wrapping under the vault's master key, and data keys sealed to a recipient's X25519 key.

Every object has its own random data key, so delivering one key opens exactly one object. The
associated data of each AEAD is a canonical encoding under its own domain tag, so a record
ciphertext can never pass as a wrapped key (or the other way round), and a ciphertext moved to
another organisation's vault or relabelled with another media type no longer authenticates.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.utils

from medledger.core.encoding import encode
from medledger.vault.errors import KeyDeliveryError, VaultIntegrityError

DATA_KEY_SIZE: int = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
"""Bytes in a data key and in the master key (32)."""
NONCE_SIZE: int = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
"""Bytes in an XChaCha20-Poly1305 nonce (24): random nonces never collide in practice."""
TAG_SIZE: int = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
"""Bytes the Poly1305 tag adds to every ciphertext (16)."""
WRAPPED_KEY_SIZE = NONCE_SIZE + DATA_KEY_SIZE + TAG_SIZE
"""Bytes in a wrapped data key: its nonce, then the encrypted key and tag (72)."""
X25519_KEY_SIZE: int = nacl.bindings.crypto_box_PUBLICKEYBYTES
"""Bytes in an X25519 public or private key (32)."""
SEALED_KEY_SIZE = nacl.bindings.crypto_box_SEALBYTES + DATA_KEY_SIZE
"""Bytes in a data key sealed to a recipient: ephemeral public key, encrypted key and tag (80)."""

RECORD_AAD_DOMAIN = "medledger/vault-record/v1"
"""Domain tag of the associated data of a record ciphertext."""
KEY_WRAP_AAD_DOMAIN = "medledger/vault-key-wrap/v1"
"""Domain tag of the associated data of a wrapped data key."""

_AEAD_FAILURES = (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, nacl.exceptions.TypeError)


def new_data_key() -> bytes:
    """A fresh random 32-byte key (data key or master key)."""
    return nacl.utils.random(DATA_KEY_SIZE)


def record_aad(org_id: str, media_type: str) -> bytes:
    """Associated data of a record ciphertext: it is bound to its vault's organisation and its media type."""
    return encode([RECORD_AAD_DOMAIN, org_id, media_type])


def key_wrap_aad(object_id: str) -> bytes:
    """Associated data of a wrapped data key: it unwraps only for the object it was made for."""
    return encode([KEY_WRAP_AAD_DOMAIN, object_id])


def encrypt_record(plaintext: bytes, data_key: bytes, *, org_id: str, media_type: str) -> tuple[bytes, bytes]:
    """Encrypt `plaintext` under `data_key` with a fresh random nonce; return (nonce, ciphertext)."""
    nonce = nacl.utils.random(NONCE_SIZE)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, record_aad(org_id, media_type), nonce, data_key
    )
    return nonce, ciphertext


def decrypt_record(
    ciphertext: bytes, nonce: bytes, data_key: bytes, *, org_id: str, media_type: str, object_id: str
) -> bytes:
    """The plaintext of a record ciphertext; VaultIntegrityError naming `object_id` if it does not authenticate."""
    if len(nonce) != NONCE_SIZE or len(ciphertext) < TAG_SIZE:
        raise VaultIntegrityError(
            object_id,
            f"malformed ciphertext: nonce is {len(nonce)} bytes (expected {NONCE_SIZE}), "
            f"ciphertext {len(ciphertext)} bytes (at least {TAG_SIZE})",
        )
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, record_aad(org_id, media_type), nonce, data_key
        )
    except _AEAD_FAILURES as exc:
        raise VaultIntegrityError(
            object_id,
            f"ciphertext does not authenticate under its data key for org {org_id!r} and media type "
            f"{media_type!r}: it, its nonce or its metadata were altered",
        ) from exc


def wrap_data_key(data_key: bytes, master_key: bytes, object_id: str) -> bytes:
    """`data_key` encrypted under the vault's `master_key`, bound to `object_id`: nonce || ciphertext."""
    nonce = nacl.utils.random(NONCE_SIZE)
    return nonce + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        data_key, key_wrap_aad(object_id), nonce, master_key
    )


def unwrap_data_key(wrapped_key: bytes, master_key: bytes, object_id: str) -> bytes:
    """The data key of `object_id`; VaultIntegrityError if the master key is wrong or the wrapped key was altered."""
    if len(wrapped_key) != WRAPPED_KEY_SIZE:
        raise VaultIntegrityError(
            object_id, f"wrapped data key is {len(wrapped_key)} bytes, expected {WRAPPED_KEY_SIZE}"
        )
    nonce, encrypted = wrapped_key[:NONCE_SIZE], wrapped_key[NONCE_SIZE:]
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            encrypted, key_wrap_aad(object_id), nonce, master_key
        )
    except _AEAD_FAILURES as exc:
        raise VaultIntegrityError(
            object_id,
            "data key cannot be unwrapped: this is not the master key the object was stored with, "
            "or the wrapped key was altered",
        ) from exc


def seal_key(data_key: bytes, recipient_x25519_public: bytes) -> bytes:
    """`data_key` sealed (anonymous sender, libsodium sealed box) so only the recipient's private key opens it."""
    if len(recipient_x25519_public) != X25519_KEY_SIZE:
        raise KeyDeliveryError(f"an X25519 public key is {X25519_KEY_SIZE} bytes, got {len(recipient_x25519_public)}")
    box = nacl.public.SealedBox(nacl.public.PublicKey(recipient_x25519_public))
    try:
        return bytes(box.encrypt(data_key))
    except nacl.exceptions.RuntimeError as exc:  # libsodium refuses low-order points such as all zeros
        raise KeyDeliveryError(
            f"recipient key {recipient_x25519_public.hex()[:16]}… is not a usable X25519 public key"
        ) from exc


def open_sealed_key(sealed: bytes, recipient_x25519_private: bytes) -> bytes:
    """The data key inside `sealed`; KeyDeliveryError if it was sealed to someone else or altered."""
    if len(recipient_x25519_private) != X25519_KEY_SIZE:
        raise KeyDeliveryError(f"an X25519 private key is {X25519_KEY_SIZE} bytes, got {len(recipient_x25519_private)}")
    if len(sealed) != SEALED_KEY_SIZE:
        raise KeyDeliveryError(f"a sealed data key is {SEALED_KEY_SIZE} bytes, got {len(sealed)}")
    box = nacl.public.SealedBox(nacl.public.PrivateKey(recipient_x25519_private))
    try:
        return bytes(box.decrypt(sealed))
    except _AEAD_FAILURES as exc:
        raise KeyDeliveryError(
            "this delivery is sealed to another recipient (or its sealed key was altered in transit): "
            "open it with the private key whose public key the request named"
        ) from exc
