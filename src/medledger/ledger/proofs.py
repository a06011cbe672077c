"""Proofs that a transaction, and its receipt, are in block N, checkable from the header alone.

A proof carries the block header bytes, the transaction bytes and receipt bytes, and one
Merkle path to each root in the header. Whoever trusts the block hash (from attestations
of a quorum of organisations) can check the rest with no access to the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError, MerkleProofError
from medledger.core.hashing import Hash32
from medledger.core.merkle import MerkleProof, inclusion_proof, verify_inclusion
from medledger.ledger.blocks import BlockHeader, block_hash
from medledger.ledger.errors import LedgerError
from medledger.ledger.receipts import Receipt
from medledger.ledger.store import LedgerStore
from medledger.ledger.transactions import TxId, decode_transaction


class ProofError(LedgerError):
    """A proof that does not hold: names which link failed."""


@dataclass(frozen=True, slots=True)
class TransactionProof:
    """Everything needed to show that a transaction and its receipt are in a given block."""

    header_bytes: bytes
    """Canonical bytes of the block header."""
    tx_bytes: bytes
    """The stored transaction."""
    tx_path: MerkleProof
    """Path from the transaction to the header's tx_root."""
    receipt_bytes: bytes
    """The encoded receipt."""
    receipt_path: MerkleProof
    """Path from the receipt to the header's receipts_root."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "header": self.header_bytes,
            "tx": self.tx_bytes,
            "tx_path": self.tx_path.to_dict(),
            "receipt": self.receipt_bytes,
            "receipt_path": self.receipt_path.to_dict(),
        }

    def encode(self) -> bytes:
        return encode(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes) -> TransactionProof:
        value = decode(raw)
        try:
            proof = cls(
                value["header"],
                value["tx"],
                MerkleProof.from_dict(value["tx_path"]),
                value["receipt"],
                MerkleProof.from_dict(value["receipt_path"]),
            )
        except (KeyError, TypeError) as exc:
            raise EncodingError(f"transaction proof fields wrong: {exc}") from exc
        for name in ("header_bytes", "tx_bytes", "receipt_bytes"):
            if not isinstance(getattr(proof, name), bytes):
                raise EncodingError(f"transaction proof field {name!r} must be bytes")
        return proof


@dataclass(frozen=True, slots=True)
class ProvenTransaction:
    """What a verified proof establishes."""

    block_number: int
    """The block holding the transaction."""
    block_hash: Hash32
    """Its hash (compare with attested hashes)."""
    tx_id: TxId
    """The transaction's id."""
    receipt: Receipt
    """Its outcome."""


def build_transaction_proof(store: LedgerStore, tx_id: TxId) -> TransactionProof:
    """Build the proof for a committed transaction; LedgerError if it is not in the store."""
    location = store.locate(tx_id)
    if location is None:
        raise LedgerError(f"transaction {tx_id.hex()} is not in this ledger")
    block = store.block(location.block_number)
    if block is None:
        raise LedgerError(f"block {location.block_number} is missing")
    receipts = [r.encode() for r in store.receipts(location.block_number)]
    index = location.tx_index
    return TransactionProof(
        header_bytes=block.header_bytes,
        tx_bytes=block.transactions[index],
        tx_path=inclusion_proof(block.transactions, index),
        receipt_bytes=receipts[index],
        receipt_path=inclusion_proof(receipts, index),
    )


def verify_transaction_proof(proof: TransactionProof, trusted_block_hash: Hash32 | None = None) -> ProvenTransaction:
    """Check every link of the proof; ProofError names the first that fails."""
    try:
        header = BlockHeader.decode(proof.header_bytes)
    except EncodingError as exc:
        raise ProofError(f"block header does not decode: {exc}") from exc
    hash_ = block_hash(proof.header_bytes)
    if trusted_block_hash is not None and hash_ != trusted_block_hash:
        raise ProofError(f"header hash {hash_.hex()} is not the trusted block hash {trusted_block_hash.hex()}")
    # RFC 6962 roots do not bind the tree size, so it must come from the signed header.
    if proof.tx_path.tree_size != header.tx_count or proof.receipt_path.tree_size != header.tx_count:
        raise ProofError(f"proof is for a tree of another size than block {header.number}'s {header.tx_count}")
    if proof.tx_path.leaf_index != proof.receipt_path.leaf_index:
        raise ProofError("transaction and receipt proofs point at different positions")
    try:
        verify_inclusion(header.tx_root, proof.tx_bytes, proof.tx_path)
    except MerkleProofError as exc:
        raise ProofError(f"transaction is not in block {header.number}: {exc}") from exc
    try:
        verify_inclusion(header.receipts_root, proof.receipt_bytes, proof.receipt_path)
    except MerkleProofError as exc:
        raise ProofError(f"receipt is not in block {header.number}: {exc}") from exc
    try:
        tx = decode_transaction(proof.tx_bytes)
        receipt = Receipt.decode(proof.receipt_bytes)
    except EncodingError as exc:
        raise ProofError(f"proven bytes do not decode: {exc}") from exc
    if receipt.tx_id != tx.tx_id:
        raise ProofError("the receipt belongs to another transaction")
    return ProvenTransaction(header.number, hash_, tx.tx_id, receipt)
