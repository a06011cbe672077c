"""Blocks: a header that commits to the transactions, their receipts and the state after them.

The orderer fixes the number, timestamp and transactions; every peer executes them and
derives the rest of the header itself, so honest peers build byte-identical headers and
their block hashes agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError
from medledger.core.hashing import Hash32, tagged_hash

BlockHash = Hash32
BLOCK_HASH_TAG = "medledger/block/v1"


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """Everything a block commits to; its hash is the tagged hash of its canonical bytes."""

    number: int
    """Height: 0 for genesis, then +1."""
    previous_hash: BlockHash
    """Hash of the previous header (zero hash for genesis)."""
    timestamp_ms: int
    """Orderer time of the block; the only clock contracts may read."""
    tx_count: int
    """Number of transactions in the block."""
    tx_root: Hash32
    """Merkle root of the stored transaction bytes."""
    receipts_root: Hash32
    """Merkle root of the encoded receipts, in transaction order."""
    state_root: Hash32
    """Hash chain over every state change up to and including this block."""
    orderer: Mapping[str, Any]
    """Orderer metadata: which orderer cut the block and the hash of its batch."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "previous_hash": self.previous_hash,
            "timestamp_ms": self.timestamp_ms,
            "tx_count": self.tx_count,
            "tx_root": self.tx_root,
            "receipts_root": self.receipts_root,
            "state_root": self.state_root,
            "orderer": dict(self.orderer),
        }

    def encode(self) -> bytes:
        return encode(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes) -> BlockHeader:
        value = decode(raw)
        if not isinstance(value, dict):
            raise EncodingError("block header is not a map")
        try:
            header = cls(**value)
        except TypeError as exc:
            raise EncodingError(f"block header fields wrong: {exc}") from exc
        for name in ("number", "timestamp_ms", "tx_count"):
            field_value = getattr(header, name)
            if not isinstance(field_value, int) or isinstance(field_value, bool):
                raise EncodingError(f"block header field {name!r} must be an integer")
        if not isinstance(header.orderer, dict):
            raise EncodingError("block header field 'orderer' must be a map")
        for name in ("previous_hash", "tx_root", "receipts_root", "state_root"):
            if not isinstance(getattr(header, name), bytes) or len(getattr(header, name)) != 32:
                raise EncodingError(f"block header field {name!r} must be 32 bytes")
        return header


def block_hash(header_bytes: bytes) -> BlockHash:
    return tagged_hash(BLOCK_HASH_TAG, header_bytes)


@dataclass(frozen=True, slots=True)
class SealedHeader:
    """A committed block's header and hash, without its transactions: what following the chain and
    comparing attestations need (reading a whole block decodes every transaction in it)."""

    header: BlockHeader
    hash: BlockHash

    @property
    def number(self) -> int:
        return self.header.number


@dataclass(frozen=True, slots=True)
class Block:
    """A header with the transactions it commits to, as stored."""

    header: BlockHeader
    """The decoded header."""
    header_bytes: bytes
    """Canonical bytes of the header: what is hashed."""
    hash: BlockHash
    """Tagged hash of `header_bytes`."""
    transactions: tuple[bytes, ...]
    """Stored transaction bytes, in order (undecodable ones included, with a rejection receipt)."""

    @property
    def number(self) -> int:
        return self.header.number

    @classmethod
    def from_header(cls, header: BlockHeader, transactions: tuple[bytes, ...]) -> Block:
        header_bytes = header.encode()
        return cls(header, header_bytes, block_hash(header_bytes), transactions)

    def encode_body(self) -> bytes:
        return encode(list(self.transactions))

    @property
    def sealed_header(self) -> SealedHeader:
        return SealedHeader(self.header, self.hash)


def decode_body(raw: bytes) -> tuple[bytes, ...]:
    value = decode(raw)
    if not isinstance(value, list) or not all(isinstance(tx, bytes) for tx in value):
        raise EncodingError("block body must be a list of byte strings")
    return tuple(value)


def batch_hash(number: int, timestamp_ms: int, transactions: tuple[bytes, ...]) -> Hash32:
    """The hash an orderer commits to for one cut batch."""
    return tagged_hash("medledger/batch/v1", encode([number, timestamp_ms, list(transactions)]))
