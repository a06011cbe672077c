"""The commit pipeline: the next block executes while the previous one is written. Blocks made
that way are exactly the blocks made one at a time; a staged block is read as committed by the
next block's execution but never acknowledged before it is durable; a failed commit stops
everything after it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from medledger.bench.commit_path import BENCH_START_MS, BenchPeer
from medledger.contracts.default import default_registry
from medledger.ledger.errors import StoreError
from medledger.ledger.transactions import decode_transaction
from medledger.node.peer import Peer
from medledger.ordering.orderer import OrderedBatch

BLOCK_SIZE = 40


@pytest.fixture
def source(tmp_path: Path) -> Iterator[BenchPeer]:
    """A peer of the benchmark consortium with its staff and first patients committed."""
    bench = BenchPeer(tmp_path / "source", workers=0)
    bench.set_up()
    try:
        yield bench
    finally:
        bench.close()


def twin_of(bench: BenchPeer, directory: Path) -> Peer:
    """A second peer of the same organisation on a fresh store, fed the source's set-up blocks."""
    peer = Peer("st-mary", directory, bench.consortium.peers["st-mary"], default_registry())
    peer.bootstrap(bench.consortium.genesis, BENCH_START_MS)
    for number in range(1, bench.peer.store.height()):
        batch = bench.peer.committed_batch(number)
        assert batch is not None
        peer.apply_batch(batch)
    return peer


def batches(bench: BenchPeer, count: int) -> list[OrderedBatch]:
    first = bench.peer.store.height()
    return [
        OrderedBatch(first + offset, timestamp, tuple(transactions), "test")
        for offset, (timestamp, transactions) in enumerate(bench.sign_blocks(count, BLOCK_SIZE))
    ]


def gate_commits(peer: Peer) -> tuple[threading.Event, list[int]]:
    """Hold every store commit of `peer` until the returned event is set; list the committed numbers."""
    release, committed = threading.Event(), []
    commit_block: Callable[..., None] = peer.store.commit_block

    def gated(block: Any, *args: Any) -> None:
        assert release.wait(30), "the test never released the commit"
        commit_block(block, *args)
        committed.append(block.number)

    peer.store.commit_block = gated  # type: ignore[method-assign,assignment]
    return release, committed


def test_pipelined_blocks_are_the_blocks_made_one_at_a_time(source: BenchPeer, tmp_path: Path) -> None:
    # Prepare: one peer applies each batch and waits; its twin stages them all back to back
    twin = twin_of(source, tmp_path / "twin")
    ordered = batches(source, 6)
    try:
        # Execute
        one_at_a_time = [source.peer.apply_batch(batch) for batch in ordered]
        pipelined = [future.result(30) for future in [twin.stage_batch(batch) for batch in ordered]]
        # Assert: same blocks, receipts and state, block by block, and the same stored chain
        for alone, staged in zip(one_at_a_time, pipelined, strict=True):
            assert staged.block.hash == alone.block.hash
            assert [r.encode() for r in staged.receipts] == [r.encode() for r in alone.receipts]
        assert sum(r.is_valid for block in pipelined for r in block.receipts) > len(ordered) * BLOCK_SIZE // 2
        assert twin.status().state_root == source.peer.status().state_root
        assert list(twin.store.state_rows()) == list(source.peer.store.state_rows())
    finally:
        twin.close()


def test_a_staged_block_is_read_as_committed_but_acknowledged_only_when_durable(source: BenchPeer) -> None:
    # Prepare: hold the store's commits
    peer = source.peer
    release, committed = gate_commits(peer)
    first, second = batches(source, 2)
    stored_height = peer.store.height()
    # Execute: stage the first block; the second executes on top of it while the first is held
    first_done = peer.stage_batch(first)
    second_done = peer.stage_batch(second)
    # Assert: nothing durable, nothing acknowledged, yet the second block followed the first
    assert peer.executed_height() == stored_height + 2
    assert peer.store.height() == stored_height and committed == []
    assert not first_done.done() and not second_done.done()
    # Execute: let the commits through
    release.set()
    first_block, second_block = first_done.result(30), second_done.result(30)
    # Assert: committed in order, chained, and only now visible in the store
    assert committed == [stored_height, stored_height + 1]
    assert second_block.block.header.previous_hash == first_block.block.hash
    assert peer.store.height() == stored_height + 2


def test_a_receipt_waits_for_the_durable_commit(source: BenchPeer) -> None:
    # Prepare
    peer = source.peer
    release, _ = gate_commits(peer)
    (batch,) = batches(source, 1)
    # Execute
    tx_id = decode_transaction(batch.transactions[0]).tx_id
    waiter = peer.receipt_future(tx_id)
    done = peer.stage_batch(batch)
    # Assert: executed, but not acknowledged while the commit is held ...
    assert peer.executed_height() == batch.number + 1
    assert not waiter.done() and peer.receipt(tx_id) is None
    release.set()
    # ... and acknowledged with the committed receipt once it is durable
    committed = done.result(30)
    assert waiter.result(30).encode() == committed.receipts[0].encode()
    assert peer.receipt(tx_id) is not None


def test_a_failed_commit_refuses_every_later_block(source: BenchPeer) -> None:
    # Prepare: the store's next commit fails (a full disk, say)
    peer = source.peer
    height = peer.store.height()
    first, second, third = batches(source, 3)

    def failing(*_: Any) -> None:
        raise StoreError("disk full")

    peer.store.commit_block = failing  # type: ignore[method-assign,assignment]
    # Execute
    failed = peer.stage_batch(first)
    with pytest.raises(StoreError, match="disk full"):
        failed.result(30)
    # Assert: nothing after it is accepted, the store is where it was, and the error says why
    for batch in (second, third):
        with pytest.raises(StoreError, match="earlier block failed to commit"):
            peer.stage_batch(batch)
    assert peer.store.height() == height
