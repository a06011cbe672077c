"""Block attestations: each organisation's peer signs (block hash, state root) after commit.

A block is final when a quorum of organisations attested the same pair; a peer whose pair
differs from the quorum's has diverged and is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError
from medledger.core.hashing import Hash32
from medledger.core.signing import Domain, SigningKey, signature_is_valid


@dataclass(frozen=True, slots=True)
class BlockAttestation:
    """One organisation's signed statement that it committed a block with a given state root."""

    block_number: int
    """Height of the attested block."""
    block_hash: Hash32
    """Hash of the attested header."""
    state_root: Hash32
    """State root the organisation's peer reached."""
    org_id: str
    """The attesting organisation."""
    signer: str
    """Certificate id of the organisation's peer member."""
    signature: bytes
    """Ed25519 signature in the block-attestation domain over the other fields."""

    def signed_payload(self) -> bytes:
        return attestation_payload(self.block_number, self.block_hash, self.state_root, self.org_id, self.signer)

    def signature_is_valid(self, public_key: bytes) -> bool:
        return signature_is_valid(Domain.BLOCK_ATTESTATION, public_key, self.signed_payload(), self.signature)

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "state_root": self.state_root,
            "org_id": self.org_id,
            "signer": self.signer,
            "signature": self.signature,
        }

    def encode(self) -> bytes:
        return encode(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes) -> BlockAttestation:
        value = decode(raw)
        try:
            attestation = cls(**value)
        except TypeError as exc:
            raise EncodingError(f"attestation fields wrong: {exc}") from exc
        expected = {
            "block_number": int,
            "block_hash": bytes,
            "state_root": bytes,
            "org_id": str,
            "signer": str,
            "signature": bytes,
        }
        for name, kind in expected.items():
            field_value = getattr(attestation, name)
            if not isinstance(field_value, kind) or (kind is int and isinstance(field_value, bool)):
                raise EncodingError(f"attestation field {name!r} must be {kind.__name__}")
        return attestation


def attestation_payload(block_number: int, block_hash: Hash32, state_root: Hash32, org_id: str, signer: str) -> bytes:
    return encode([block_number, block_hash, state_root, org_id, signer])


def attest(
    block_number: int, block_hash: Hash32, state_root: Hash32, org_id: str, signer: str, key: SigningKey
) -> BlockAttestation:
    payload = attestation_payload(block_number, block_hash, state_root, org_id, signer)
    return BlockAttestation(
        block_number, block_hash, state_root, org_id, signer, key.sign(Domain.BLOCK_ATTESTATION, payload)
    )
