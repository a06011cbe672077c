"""SeenRequests: how a node remembers the signed requests it served, so each is served once, in
bounded memory: pairs are forgotten once their timestamp leaves the accepted window, and when the
cap is reached the oldest are forgotten and no request stamped at or before them is served; nor is
one stamped before the node started, as an earlier run may have served it."""

from __future__ import annotations

import pytest

from medledger.node.service import AuthenticationError, SeenRequests

WINDOW_MS = 1_000
NOW = 1_000_000


def nonce(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_a_pair_is_admitted_once_and_another_signer_may_use_the_same_nonce() -> None:
    # Prepare
    seen = SeenRequests(WINDOW_MS)
    seen.admit("member:a", nonce(1), NOW, NOW)
    # Execute
    with pytest.raises(AuthenticationError) as replayed:
        seen.admit("member:a", nonce(1), NOW, NOW)
    seen.admit("member:b", nonce(1), NOW, NOW)
    # Assert
    assert replayed.value.message.startswith("REPLAYED:")
    assert len(seen) == 2


def test_pairs_are_forgotten_once_their_timestamp_leaves_the_window() -> None:
    # Prepare: one request stamped a window ago, one a window ahead
    seen = SeenRequests(WINDOW_MS)
    seen.admit("member:a", nonce(1), NOW - WINDOW_MS, NOW)
    seen.admit("member:a", nonce(2), NOW + WINDOW_MS, NOW)
    # Execute: a millisecond later, then when the second reaches the far edge, then past it
    seen.admit("member:a", nonce(3), NOW + 1, NOW + 1)
    remembered_a_millisecond_later = len(seen)
    with pytest.raises(AuthenticationError) as at_the_edge:
        seen.admit("member:a", nonce(2), NOW + WINDOW_MS, NOW + 2 * WINDOW_MS)
    seen.admit("member:a", nonce(2), NOW + WINDOW_MS, NOW + 2 * WINDOW_MS + 1)
    # Assert: the past-stamped pair went first; the future-stamped one stayed while it could be accepted
    assert remembered_a_millisecond_later == 2
    assert at_the_edge.value.message.startswith("REPLAYED:")
    assert len(seen) == 1


def test_at_the_cap_the_oldest_are_forgotten_and_requests_no_newer_are_refused() -> None:
    # Prepare: a cap of three, filled with requests stamped NOW, NOW + 1, NOW + 2
    seen = SeenRequests(WINDOW_MS, max_entries=3)
    for n in range(3):
        seen.admit("member:a", nonce(n), NOW + n, NOW)
    # Execute: a fourth pushes out the oldest (stamped NOW)
    seen.admit("member:a", nonce(3), NOW + 3, NOW)
    with pytest.raises(AuthenticationError) as forgotten:
        seen.admit("member:a", nonce(0), NOW, NOW)
    with pytest.raises(AuthenticationError) as as_old:
        seen.admit("member:b", nonce(9), NOW, NOW)
    seen.admit("member:b", nonce(9), NOW + 1, NOW)
    # Assert
    assert forgotten.value.message.startswith("REQUEST_TOO_OLD:")
    assert as_old.value.message.startswith("REQUEST_TOO_OLD:")
    assert len(seen) == 3


def test_requests_stamped_before_the_node_started_are_refused() -> None:
    # Prepare
    seen = SeenRequests(WINDOW_MS, started_ms=NOW)
    # Execute
    with pytest.raises(AuthenticationError) as before_start:
        seen.admit("member:a", nonce(1), NOW - 1, NOW)
    seen.admit("member:a", nonce(2), NOW, NOW)
    # Assert
    assert before_start.value.message.startswith("REQUEST_TOO_OLD:")
    assert len(seen) == 1


def test_a_cap_below_one_is_refused() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="positive"):
        SeenRequests(WINDOW_MS, max_entries=0)
