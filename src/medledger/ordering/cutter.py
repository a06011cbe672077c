"""The deterministic block cutter: the same stream of transactions and cut signals always gives
the same batches, so any node replaying the ordered stream cuts identical blocks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CutterConfig:
    """When a batch is cut."""

    max_tx: int = 500
    """Cut as soon as a batch holds this many transactions."""
    max_bytes: int = 1_000_000
    """Cut before a transaction would take the batch over this many bytes."""
    time_to_cut_ms: int = 50
    """Cut a non-empty batch this long after its first transaction arrived."""

    def __post_init__(self) -> None:
        if self.max_tx < 1 or self.max_bytes < 1 or self.time_to_cut_ms < 1:
            raise ValueError("cutter limits must be positive")


class BlockCutter:
    """Accumulates transactions and cuts batches by count and size; time cuts are asked for by the caller."""

    def __init__(self, config: CutterConfig) -> None:
        self.config = config
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def append(self, tx: bytes) -> list[list[bytes]]:
        """Add a transaction; return the batches this cuts (zero, one or two)."""
        batches: list[list[bytes]] = []
        if self._pending and self._pending_bytes + len(tx) > self.config.max_bytes:
            batches.append(self.cut())
        self._pending.append(tx)
        self._pending_bytes += len(tx)
        if len(self._pending) >= self.config.max_tx or self._pending_bytes >= self.config.max_bytes:
            batches.append(self.cut())
        return batches

    def cut(self) -> list[bytes]:
        """Cut whatever is pending (possibly nothing)."""
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        return batch
