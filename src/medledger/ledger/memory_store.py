"""An in-memory `LedgerStore`: used to replay a chain when verifying it, and in tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from sortedcontainers import SortedDict

from medledger.ledger.attestations import BlockAttestation
from medledger.ledger.blocks import Block
from medledger.ledger.receipts import Receipt
from medledger.ledger.state import prefix_upper_bound
from medledger.ledger.store import LedgerStore, StateRow, TxLocation
from medledger.ledger.transactions import TxId


class MemoryLedgerStore(LedgerStore):
    """Everything in memory; state in a sorted dict for prefix scans."""

    def __init__(self) -> None:
        self._blocks: list[Block] = []
        self._receipts: list[list[Receipt]] = []
        self._locations: dict[TxId, TxLocation] = {}
        self._consumed: set[TxId] = set()
        self._state: SortedDict = SortedDict()
        self._attestations: dict[int, dict[str, BlockAttestation]] = {}

    def height(self) -> int:
        return len(self._blocks)

    def block(self, number: int) -> Block | None:
        return self._blocks[number] if 0 <= number < len(self._blocks) else None

    def receipts(self, block_number: int) -> list[Receipt]:
        return list(self._receipts[block_number]) if 0 <= block_number < len(self._receipts) else []

    def locate(self, tx_id: TxId) -> TxLocation | None:
        return self._locations.get(tx_id)

    def id_is_consumed(self, tx_id: TxId) -> bool:
        return tx_id in self._consumed

    def get_state(self, key: str) -> bytes | None:
        row = self._state.get(key)
        return None if row is None else row.value

    def scan_state(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        lower = prefix if start_after is None or start_after < prefix else start_after
        upper = prefix_upper_bound(prefix)
        out: list[tuple[str, bytes]] = []
        keys = self._state.irange(lower, upper, inclusive=(start_after is None or start_after < prefix, False))
        for key in keys:
            out.append((key, self._state[key].value))
            if limit is not None and len(out) >= limit:
                break
        return out

    def state_rows(self) -> Iterator[StateRow]:
        yield from self._state.values()

    def commit_block(
        self,
        block: Block,
        receipts: Sequence[Receipt],
        writes: Mapping[str, tuple[bytes | None, int]],
        attestations: Sequence[BlockAttestation] = (),
    ) -> None:
        if block.number != len(self._blocks):
            raise ValueError(f"block {block.number} does not follow height {len(self._blocks)}")
        self._blocks.append(block)
        self._receipts.append(list(receipts))
        for index, receipt in enumerate(receipts):
            location = TxLocation(block.number, index)
            if receipt.consumes_id:
                if receipt.tx_id not in self._consumed:
                    self._locations[receipt.tx_id] = location
                self._consumed.add(receipt.tx_id)
            else:
                self._locations.setdefault(receipt.tx_id, location)
        for key, (value, tx_index) in writes.items():
            if value is None:
                self._state.pop(key, None)
            else:
                self._state[key] = StateRow(key, value, block.number, tx_index)
        self.put_attestations(attestations)

    def put_attestations(self, attestations: Sequence[BlockAttestation]) -> None:
        for attestation in attestations:
            self._attestations.setdefault(attestation.block_number, {})[attestation.org_id] = attestation

    def attestations(self, block_number: int) -> list[BlockAttestation]:
        found = self._attestations.get(block_number, {})
        return [found[org] for org in sorted(found)]

    def close(self) -> None:
        pass
