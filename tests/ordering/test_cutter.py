"""The block cutter cuts by count and size, the same way every time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from medledger.ordering.cutter import BlockCutter, CutterConfig


def cut_all(config: CutterConfig, stream: list[bytes]) -> list[list[bytes]]:
    cutter = BlockCutter(config)
    batches = [batch for tx in stream for batch in cutter.append(tx)]
    rest = cutter.cut()
    return batches + ([rest] if rest else [])


def test_cuts_by_count() -> None:
    # Execute
    batches = cut_all(CutterConfig(max_tx=3, max_bytes=10_000), [bytes([i]) for i in range(7)])
    # Assert
    assert [len(b) for b in batches] == [3, 3, 1]


def test_cuts_before_a_transaction_that_would_overflow_the_size() -> None:
    # Execute
    batches = cut_all(CutterConfig(max_tx=100, max_bytes=10), [b"aaaa", b"bbbb", b"cccc", b"dd"])
    # Assert
    assert batches == [[b"aaaa", b"bbbb"], [b"cccc", b"dd"]]


def test_an_oversized_transaction_is_a_batch_of_its_own() -> None:
    # Execute
    batches = cut_all(CutterConfig(max_tx=100, max_bytes=10), [b"a", b"x" * 50, b"b"])
    # Assert
    assert batches == [[b"a"], [b"x" * 50], [b"b"]]


@given(
    st.lists(st.binary(min_size=1, max_size=40), max_size=60),
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=1, max_value=200),
)
def test_cutting_is_deterministic_and_loses_nothing(stream: list[bytes], max_tx: int, max_bytes: int) -> None:
    # Prepare
    config = CutterConfig(max_tx=max_tx, max_bytes=max_bytes)
    # Execute
    first, second = cut_all(config, stream), cut_all(config, stream)
    # Assert
    assert first == second
    assert [tx for batch in first for tx in batch] == stream
    for batch in first:
        assert len(batch) <= max_tx
        assert len(batch) == 1 or sum(map(len, batch)) <= max_bytes
