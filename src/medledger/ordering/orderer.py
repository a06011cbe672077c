"""The Orderer interface and the batch it produces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from medledger.core.encoding import encode
from medledger.core.errors import MedledgerError
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
