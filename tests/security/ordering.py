"""Submitting raw transaction bytes to a running embedded network, as an attacker would, and reading
back the receipt each copy got, even when several copies of one transaction (replays) were ordered.

A client waiting on a transaction id sees the first copy that consumed the id; an attack needs the
receipt of every copy, so these helpers find each submitted byte string in the blocks cut after it
and return the receipts in submission order. They also check that every organisation's peer reached
the same block hash, so a refusal is the network's, not one peer's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from medledger.ledger.receipts import Receipt
from medledger.node.network import EmbeddedNetwork

DEFAULT_ORG = "st-mary"
TIMEOUT_S = 20.0


def submit_raw(network: EmbeddedNetwork, raw: Sequence[bytes], org_id: str = DEFAULT_ORG) -> list[Receipt]:
    """Order `raw` (in that order) through `org_id`'s gateway; return the receipt of each copy."""
    assert network.orderer is not None
    assert network.wait_until_synced()
    start = network.orderer.height()
    gateway = network.gateway(org_id)
    for tx in raw:
        gateway.submit(tx)
    peer = network.peers[org_id]
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        assert network.wait_until_synced()
        found = _receipts_of(network, start, raw, org_id)
        if found is not None:
            break
        assert time.monotonic() < deadline, f"the submitted transactions did not commit within {TIMEOUT_S} s"
        peer.wait_for_height(peer.store.height() + 1, timeout=0.05)
    assert_peers_agree(network)
    return found


def _receipts_of(network: EmbeddedNetwork, start: int, raw: Sequence[bytes], org_id: str) -> list[Receipt] | None:
    store = network.peers[org_id].store
    ordered: list[tuple[bytes, Receipt]] = []
    for number in range(start, store.height()):
        block = store.block(number)
        assert block is not None
        ordered.extend(zip(block.transactions, store.receipts(number), strict=True))
    receipts: list[Receipt] = []
    used: set[int] = set()
    for tx in raw:
        position = next((i for i, (stored, _) in enumerate(ordered) if stored == tx and i not in used), None)
        if position is None:
            return None
        used.add(position)
        receipts.append(ordered[position][1])
    return receipts


def assert_peers_agree(network: EmbeddedNetwork) -> None:
    """Every peer is at the same height with the same last block hash and state root."""
    assert network.wait_until_synced()
    statuses = {(s.height, s.block_hash, s.state_root) for s in network.statuses()}
    assert len(statuses) == 1, f"peers disagree: {statuses}"


def settle_attestations(network: EmbeddedNetwork, number: int) -> None:
    """Wait until every peer has stored every organisation's attestation of block `number`.

    A peer publishes its attestation just after its commit becomes visible, and a receiving peer
    stores what it received with its next commit (or a flush), so both are awaited here."""
    assert network.wait_until_synced()
    organisations = {org.org_id for org in network.orgs}
    deadline = time.monotonic() + TIMEOUT_S
    for peer in network.peers.values():
        while True:
            peer.flush_attestations()
            if {a.org_id for a in peer.store.attestations(number)} == organisations:
                break
            assert time.monotonic() < deadline, f"{peer.org_id} lacks attestations of block {number}"
            time.sleep(0.005)
