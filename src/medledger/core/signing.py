"""Ed25519 signatures (PyNaCl / libsodium), each bound to a domain tag.

The signed message is `len(tag) || tag || payload`, so a signature made for one kind of
object (a transaction) never verifies as another (a block attestation). Patients and
members sign with the same primitive; only the domain differs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.signing

from medledger.core.encoding import encode
from medledger.core.errors import SignatureError
from medledger.core.hashing import sha256

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32


class Domain(enum.StrEnum):
    """Every kind of signed object in medledger, one tag each."""

    TRANSACTION = "medledger/tx/v1"
    BLOCK_ATTESTATION = "medledger/block-attest/v1"
    PATIENT_ENROLMENT = "medledger/patient-enrol/v1"
    API_REQUEST = "medledger/api-request/v2"
    VAULT_REQUEST = "medledger/vault-request/v1"


def signing_message(domain: Domain, payload: bytes) -> bytes:
    """The exact bytes that Ed25519 signs for `payload` in `domain`."""
    tag = domain.value.encode("ascii")
    return len(tag).to_bytes(1, "big") + tag + payload


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key, kept as its 32-byte seed."""

    seed: bytes = field(repr=False)
    """The 32-byte RFC 8032 seed; the whole secret."""
    _expanded: nacl.signing.SigningKey = field(init=False, repr=False, compare=False)
    """libsodium's expanded key, derived once (deriving it costs as much as a signature)."""

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_SIZE:
            raise SignatureError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(self.seed)}")
        object.__setattr__(self, "_expanded", nacl.signing.SigningKey(self.seed))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return bytes(self._expanded.verify_key)

    def sign(self, domain: Domain, payload: bytes) -> bytes:
        """A 64-byte signature over `payload` bound to `domain`."""
        return bytes(self._expanded.sign(signing_message(domain, payload)).signature)

    def x25519_private_key(self) -> bytes:
        """The X25519 private key birationally derived from this Ed25519 key (RFC 7748 / libsodium).

        Data keys are sealed to the X25519 form of a member's certified signing key, so only the
        holder of that certificate's key can open a delivery made to them.
        """
        return bytes(self._expanded.to_curve25519_private_key())


def x25519_public_key(ed25519_public_key: bytes) -> bytes:
    """The X25519 public key matching an Ed25519 public key (see SigningKey.x25519_private_key)."""
    try:
        return bytes(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(ed25519_public_key))
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise SignatureError(f"not a usable Ed25519 public key: {exc}") from exc


API_NONCE_SIZE = 16
"""Bytes of the random nonce a caller draws afresh for every REST request it signs."""


def api_request_payload(node: str, method: str, path: str, body: bytes, timestamp_ms: int, nonce: bytes) -> bytes:
    """What a caller signs, in the API_REQUEST domain, to authenticate one REST request.

    `node` is the organisation id of the node the request is addressed to, so no other node
    serves it; `nonce` is fresh per request, so the addressed node serves it only once.
    """
    return encode([node, method.upper(), path, sha256(body), timestamp_ms, nonce])


def signature_is_valid(domain: Domain, public_key: bytes, payload: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature by `public_key` over `payload` in `domain`."""
    if not all(isinstance(v, bytes) for v in (public_key, payload, signature)):
        return False
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + signing_message(domain, payload), public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


def verify_signature(domain: Domain, public_key: bytes, payload: bytes, signature: bytes) -> None:
    """Raise SignatureError unless `signature` verifies for `payload` in `domain`."""
    if not signature_is_valid(domain, public_key, payload, signature):
        raise SignatureError(
            f"signature does not verify for domain {domain.value!r} under key {public_key.hex()[:16]}…"
        )
