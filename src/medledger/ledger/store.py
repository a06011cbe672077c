"""The `LedgerStore` interface: blocks, receipts, transaction index, world state, attestations.

One block is committed atomically: its header and body, its receipts, the transaction index
and every state write land together or not at all. Backends live beside this module
(`sqlite_store` for disk, `memory_store` for replays and tests).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from medledger.ledger.attestations import BlockAttestation
from medledger.ledger.blocks import Block, SealedHeader
from medledger.ledger.receipts import Receipt
from medledger.ledger.transactions import TxId


@dataclass(frozen=True, slots=True)
class TxLocation:
    """Where a transaction sits in the chain."""

    block_number: int
    """Height of the block holding it."""
    tx_index: int
    """Its position in the block."""


@dataclass(frozen=True, slots=True)
class StateRow:
    """One row of world state with the version that last wrote it."""

    key: str
    """State key, e.g. ``records/entry/<id>``."""
    value: bytes
    """Canonical CBOR value."""
    block_number: int
    """Block of the last write."""
    tx_index: int
    """Transaction index (within that block) of the last write."""


class LedgerStore(ABC):
    """Durable home of one peer's copy of the ledger."""

    @abstractmethod
    def height(self) -> int:
        """Number of committed blocks (the next block number); 0 when empty."""

    @abstractmethod
    def block(self, number: int) -> Block | None:
        """The committed block at `number`, or None."""

    @abstractmethod
    def receipts(self, block_number: int) -> list[Receipt]:
        """Receipts of a block, in transaction order."""

    @abstractmethod
    def locate(self, tx_id: TxId) -> TxLocation | None:
        """Where the first id-consuming transaction with this id is, or the first one at all."""

    @abstractmethod
    def id_is_consumed(self, tx_id: TxId) -> bool:
        """True when a transaction with this id was applied or rejected after its signature was checked."""

    @abstractmethod
    def get_state(self, key: str) -> bytes | None:
        """Committed value of `key`."""

    @abstractmethod
    def scan_state(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        """Committed (key, value) pairs under `prefix` in key order."""

    @abstractmethod
    def state_rows(self) -> Iterator[StateRow]:
        """Every state row with its version, in key order."""

    @abstractmethod
    def commit_block(
        self,
        block: Block,
        receipts: Sequence[Receipt],
        writes: Mapping[str, tuple[bytes | None, int]],
        attestations: Sequence[BlockAttestation] = (),
    ) -> None:
        """Atomically store a block, its receipts, the transaction index, its state writes and any
        attestations (of this or earlier blocks) that arrived meanwhile."""

    @abstractmethod
    def put_attestations(self, attestations: Sequence[BlockAttestation]) -> None:
        """Store (or replace) organisations' attestations, in one write."""

    @abstractmethod
    def attestations(self, block_number: int) -> list[BlockAttestation]:
        """Attestations of a block, by organisation id."""

    @abstractmethod
    def close(self) -> None:
        """Release the store."""

    def last_block(self) -> Block | None:
        height = self.height()
        return None if height == 0 else self.block(height - 1)

    def header(self, number: int) -> SealedHeader | None:
        """The header and hash of the committed block at `number`, or None (a store that can read them
        without the transactions should)."""
        block = self.block(number)
        return None if block is None else block.sealed_header

    def last_header(self) -> SealedHeader | None:
        height = self.height()
        return None if height == 0 else self.header(height - 1)

    def blocks(self, start: int = 0) -> Iterator[Block]:
        for number in range(start, self.height()):
            block = self.block(number)
            if block is None:
                return
            yield block
