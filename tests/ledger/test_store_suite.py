"""One abstract test suite for the LedgerStore interface, run against every backend."""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import pytest

from medledger.core.hashing import ZERO_HASH, sha256
from medledger.core.signing import SigningKey
from medledger.ledger.attestations import attest
from medledger.ledger.blocks import Block, BlockHeader, SealedHeader
from medledger.ledger.memory_store import MemoryLedgerStore
from medledger.ledger.receipts import VALID, Receipt, RejectionCode
from medledger.ledger.sqlite_store import HEADER_CACHE_ENTRIES, SQLiteLedgerStore
from medledger.ledger.store import LedgerStore, TxLocation


def make_block(number: int, previous: bytes, transactions: tuple[bytes, ...]) -> Block:
    header = BlockHeader(
        number=number,
        previous_hash=previous,
        timestamp_ms=1_000 + number,
        tx_count=len(transactions),
        tx_root=sha256(b"".join(transactions)),
        receipts_root=ZERO_HASH,
        state_root=sha256(number.to_bytes(4, "big")),
        orderer={"orderer": "test"},
    )
    return Block.from_header(header, transactions)


def receipt(tx_id: bytes, code: str = VALID) -> Receipt:
    return Receipt(tx_id, code, "" if code == VALID else "because", (), 1, 1 if code == VALID else 0)


class LedgerStoreSuite(ABC):
    """Behaviour every LedgerStore must have."""

    @abstractmethod
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LedgerStore]: ...

    def test_empty_store(self, store: LedgerStore) -> None:
        # Assert
        assert store.height() == 0
        assert store.block(0) is None
        assert store.last_block() is None
        assert store.header(0) is None and store.last_header() is None
        assert store.get_state("a") is None
        assert list(store.state_rows()) == []

    def test_commit_and_read_back(self, store: LedgerStore) -> None:
        # Prepare
        genesis = make_block(0, ZERO_HASH, (b"g",))
        block1 = make_block(1, genesis.hash, (b"t1", b"t2"))
        # Execute
        store.commit_block(genesis, [receipt(b"g" * 32)], {"k/1": (b"v1", 0)})
        store.commit_block(block1, [receipt(b"1" * 32), receipt(b"2" * 32)], {"k/2": (b"v2", 1), "k/1": (None, 0)})
        # Assert
        assert store.height() == 2
        assert store.block(1) == block1
        assert store.last_block() == block1
        assert store.header(0) == SealedHeader(genesis.header, genesis.hash)
        assert store.last_header() == SealedHeader(block1.header, block1.hash)
        assert store.header(2) is None
        assert [b.number for b in store.blocks()] == [0, 1]
        assert store.receipts(1) == [receipt(b"1" * 32), receipt(b"2" * 32)]
        assert store.locate(b"2" * 32) == TxLocation(1, 1)
        assert store.get_state("k/1") is None
        assert store.get_state("k/2") == b"v2"
        assert [(r.key, r.block_number, r.tx_index) for r in store.state_rows()] == [("k/2", 1, 1)]

    def test_out_of_order_block_is_refused_and_changes_nothing(self, store: LedgerStore) -> None:
        # Prepare
        store.commit_block(make_block(0, ZERO_HASH, (b"g",)), [receipt(b"g" * 32)], {"a": (b"1", 0)})
        # Execute / Assert
        with pytest.raises(Exception, match="does not follow"):
            store.commit_block(make_block(5, ZERO_HASH, (b"x",)), [receipt(b"x" * 32)], {"a": (b"2", 0)})
        assert store.height() == 1
        assert store.get_state("a") == b"1"

    def test_rejections_before_the_signature_do_not_consume_the_id(self, store: LedgerStore) -> None:
        # Prepare
        tx_id = b"d" * 32
        store.commit_block(make_block(0, ZERO_HASH, (b"g",)), [receipt(b"g" * 32)], {})
        # Execute
        block1 = make_block(1, store.last_block().hash, (b"forged",))  # type: ignore[union-attr]
        store.commit_block(block1, [receipt(tx_id, RejectionCode.BAD_SIGNATURE)], {})
        # Assert
        assert not store.id_is_consumed(tx_id)
        assert store.locate(tx_id) == TxLocation(1, 0)
        # Execute: the genuine transaction comes later and takes the id
        block2 = make_block(2, block1.hash, (b"genuine",))
        store.commit_block(block2, [receipt(tx_id)], {})
        # Assert: lookups now find the consuming one
        assert store.id_is_consumed(tx_id)
        assert store.locate(tx_id) == TxLocation(2, 0)

    def test_prefix_scan(self, store: LedgerStore) -> None:
        # Prepare
        keys = ["a/1", "a/2", "a/3", "ab/1", "b/1", "a/"]
        store.commit_block(make_block(0, ZERO_HASH, (b"g",)), [receipt(b"g" * 32)], {k: (k.encode(), 0) for k in keys})
        # Execute / Assert
        assert [k for k, _ in store.scan_state("a/")] == ["a/", "a/1", "a/2", "a/3"]
        assert [k for k, _ in store.scan_state("a/", start_after="a/1")] == ["a/2", "a/3"]
        assert [k for k, _ in store.scan_state("a/", limit=2)] == ["a/", "a/1"]
        assert [k for k, _ in store.scan_state("a")] == ["a/", "a/1", "a/2", "a/3", "ab/1"]
        assert store.scan_state("c") == []
        assert [v for _, v in store.scan_state("b/")] == [b"b/1"]

    def test_a_repeated_scan_sees_every_later_write_under_its_prefix(self, store: LedgerStore) -> None:
        # Prepare: scans asked once (a store may remember them), then blocks writing under them
        genesis = make_block(0, ZERO_HASH, (b"g",))
        store.commit_block(genesis, [receipt(b"g" * 32)], {"p/a/1": (b"1", 0), "p/b/1": (b"1", 0), "q/1": (b"q", 0)})
        for prefix in ("p/", "p/a/", "p/b/", "q/"):
            store.scan_state(prefix)
        block1 = make_block(1, genesis.hash, (b"t",))
        block2 = make_block(2, block1.hash, (b"u",))
        # Execute: a new key deep under p/a/, a deletion under p/b/, a rewrite under q/
        store.commit_block(block1, [receipt(b"1" * 32)], {"p/a/x/2": (b"2", 0), "p/b/1": (None, 0)})
        store.commit_block(block2, [receipt(b"2" * 32)], {"q/1": (b"q2", 0)})
        # Assert: every scan answers from the committed state, whether asked before or not
        assert store.scan_state("p/") == [("p/a/1", b"1"), ("p/a/x/2", b"2")]
        assert store.scan_state("p/a/") == [("p/a/1", b"1"), ("p/a/x/2", b"2")]
        assert store.scan_state("p/a/x/") == [("p/a/x/2", b"2")]
        assert store.scan_state("p/b/") == []
        assert store.scan_state("q/") == [("q/1", b"q2")]

    def test_every_header_reads_back_however_long_the_chain(self, store: LedgerStore) -> None:
        # Prepare: more blocks than a store keeps decoded headers of (SQLite: HEADER_CACHE_ENTRIES)
        blocks = [make_block(0, ZERO_HASH, (b"g",))]
        for number in range(1, HEADER_CACHE_ENTRIES + 40):
            blocks.append(make_block(number, blocks[-1].hash, (number.to_bytes(4, "big"),)))
        # Execute
        for block in blocks:
            store.commit_block(block, [receipt(sha256(block.transactions[0]))], {})
            assert store.last_header() == SealedHeader(block.header, block.hash)
        # Assert: the oldest, read again after the newest, and the tip
        for number in (0, 1, len(blocks) - 1, 2, len(blocks) // 2):
            assert store.header(number) == SealedHeader(blocks[number].header, blocks[number].hash)
        assert store.header(len(blocks)) is None

    def test_attestations_are_kept_per_org(self, store: LedgerStore) -> None:
        # Prepare
        genesis = make_block(0, ZERO_HASH, (b"g",))
        key = SigningKey(bytes(range(32)))
        first = attest(0, genesis.hash, genesis.header.state_root, "org-b", "peer-b", key)
        second = attest(0, genesis.hash, genesis.header.state_root, "org-a", "peer-a", key)
        # Execute
        store.commit_block(genesis, [receipt(b"g" * 32)], {}, [first])
        store.put_attestations([second])
        # Assert
        assert [a.org_id for a in store.attestations(0)] == ["org-a", "org-b"]
        assert store.attestations(0)[1] == first
        assert store.attestations(1) == []


class TestMemoryLedgerStore(LedgerStoreSuite):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LedgerStore]:
        yield MemoryLedgerStore()


class TestSQLiteLedgerStore(LedgerStoreSuite):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LedgerStore]:
        store = SQLiteLedgerStore(tmp_path / "ledger.sqlite")
        yield store
        store.close()

    def test_reopened_store_holds_everything(self, tmp_path: Path) -> None:
        # Prepare
        path = tmp_path / "reopen.sqlite"
        store = SQLiteLedgerStore(path)
        genesis = make_block(0, ZERO_HASH, (b"g",))
        store.commit_block(genesis, [receipt(b"g" * 32)], {"k": (b"v", 0)})
        store.close()
        # Execute
        reopened = SQLiteLedgerStore(path)
        # Assert
        assert reopened.height() == 1
        assert reopened.block(0) == genesis
        assert reopened.get_state("k") == b"v"
        reopened.close()

    def test_a_read_only_store_reads_a_header_from_the_file_each_time(self, tmp_path: Path) -> None:
        # Prepare: a committed block, read once through a read-only store, then changed in the file
        path = tmp_path / "headers.sqlite"
        writer = SQLiteLedgerStore(path)
        genesis = make_block(0, ZERO_HASH, (b"g",))
        writer.commit_block(genesis, [receipt(b"g" * 32)], {})
        writer.close()
        reader = SQLiteLedgerStore(path, read_only=True)
        assert reader.header(0) == SealedHeader(genesis.header, genesis.hash)
        other = make_block(0, ZERO_HASH, (b"other",))
        with sqlite3.connect(path) as db:
            db.execute("UPDATE blocks SET header=?, hash=? WHERE number=0", (other.header_bytes, other.hash))
        # Execute
        read_again = reader.header(0)
        reader.close()
        # Assert: what the file holds now, not what was read before (verification must see tampering)
        assert read_again == SealedHeader(other.header, other.hash)

    def test_a_file_that_is_not_a_ledger_is_refused_with_its_name(self, tmp_path: Path) -> None:
        # Prepare
        path = tmp_path / "not-a-ledger.sqlite"
        path.write_bytes(b"this is not a database" * 100)
        # Execute / Assert
        with pytest.raises(Exception, match=r"not-a-ledger\.sqlite"):
            SQLiteLedgerStore(path)
