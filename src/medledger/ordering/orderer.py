"""The Orderer interface and the batch it produces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError, MedledgerError
from medledger.core.hashing import Hash32, tagged_hash


class OrderingError(MedledgerError):
    """The orderer refused or could not take a transaction, or could not deliver a batch."""


@dataclass(frozen=True, slots=True)
class OrderedBatch:
    """Transactions the orderer fixed in order for one block height."""

    number: int
    """The block height this batch becomes (genesis is 0, batches start at 1)."""
    timestamp_ms: int
    """The block time, non-decreasing from batch to batch."""
    transactions: tuple[bytes, ...]
    """Transaction bytes as submitted, in order."""
    orderer_id: str
    """Which orderer backend (and node) cut it."""

    @property
    def batch_hash(self) -> Hash32:
        return tagged_hash("medledger/batch/v1", encode([self.number, self.timestamp_ms, list(self.transactions)]))

    def metadata(self) -> dict[str, Any]:
        """What the block header records about its ordering."""
        return {"orderer": self.orderer_id, "batch_hash": self.batch_hash}

    def encode(self) -> bytes:
        """The batch as it travels between processes: canonical CBOR of its four fields."""
        return encode([self.number, self.timestamp_ms, list(self.transactions), self.orderer_id])

    @classmethod
    def decode(cls, data: bytes) -> OrderedBatch:
        """The batch `encode` wrote; OrderingError if `data` is not one."""
        try:
            fields = decode(data)
        except EncodingError as exc:
            raise OrderingError(f"a transmitted batch is not canonical CBOR: {exc}") from exc
        if not isinstance(fields, list) or len(fields) != 4:
            raise OrderingError("a transmitted batch is not a [number, timestamp_ms, transactions, orderer] list")
        number, timestamp_ms, transactions, orderer_id = fields
        if not all(isinstance(value, int) and not isinstance(value, bool) for value in (number, timestamp_ms)):
            raise OrderingError("a transmitted batch's number or timestamp is not an integer")
        if not isinstance(transactions, list) or not all(isinstance(tx, bytes) for tx in transactions):
            raise OrderingError("a transmitted batch's transactions are not a list of bytes")
        if not isinstance(orderer_id, str):
            raise OrderingError("a transmitted batch's orderer id is not text")
        return cls(number, timestamp_ms, tuple(transactions), orderer_id)


class Orderer(ABC):
    """Sequences submitted transactions into numbered batches every peer reads alike."""

    @abstractmethod
    def submit(self, tx: bytes) -> None:
        """Accept a transaction for ordering; raise OrderingError if it cannot be taken."""

    @abstractmethod
    def read(self, number: int, timeout: float | None = None) -> OrderedBatch | None:
        """Batch `number`, waiting up to `timeout` seconds for it; None if not yet there."""

    @abstractmethod
    def height(self) -> int:
        """The number the next batch will get."""

    @abstractmethod
    def drain(self) -> None:
        """Stop taking transactions and order what was already taken."""

    @abstractmethod
    def close(self) -> None:
        """Stop ordering; batches already cut stay readable where the backend persists them."""
