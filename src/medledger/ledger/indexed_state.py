"""A `BlockState` whose pending writes are also kept in key order, for cheap prefix scans.

The reference `BlockState.scan_state` filters every pending write of the block on each scan,
so a block of n transactions that each scan (an access decision reads the patient's consents)
costs O(n²). This subclass answers the same scans from a sorted index of the pending keys in
O(log n + matches), and returns exactly what the reference would: it hands the matching slice
to the same `overlay_scan`.
"""

from __future__ import annotations

from collections.abc import Mapping

from sortedcontainers import SortedList

from medledger.ledger.state import BlockState, StateReader, overlay_scan, prefix_upper_bound


class IndexedBlockState(BlockState):
    """BlockState with an ordered index of the keys written so far in the block."""

    def __init__(self, base: StateReader) -> None:
        super().__init__(base)
        self._keys: SortedList = SortedList()

    def apply(self, tx_index: int, writes: Mapping[str, bytes | None]) -> None:
        for key in writes:
            if key not in self.writes:
                self._keys.add(key)
        super().apply(tx_index, writes)

    def scan_state(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        upper = prefix_upper_bound(prefix)
        pending = {key: self.writes[key][0] for key in self._keys.irange(prefix, upper, inclusive=(True, False))}
        return overlay_scan(self.base, pending, prefix, start_after, limit)
