"""The embedded network under concurrent load: five peers commit the same chain, attest each
other's blocks, refuse a replayed transaction, and prove inclusion with proofs that break when
any byte of them changes."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from medledger.core.identity import Role
from medledger.ledger.proofs import ProofError, TransactionProof, verify_transaction_proof
from medledger.ledger.receipts import VALID, Receipt, RejectionCode
from medledger.ledger.sqlite_store import SQLiteLedgerStore
from medledger.ledger.transactions import Transaction, TxId
from medledger.node.network import EmbeddedNetwork
from medledger.node.peer import Peer
from medledger.sdk import LedgerClient, PatientWallet
from tests.conftest import member_client

HOSPITALS = ("st-mary", "city-general")
RECORDS_PER_HOSPITAL = 100


def _enrol_patients(registrar: LedgerClient, channel: str, count: int) -> list[PatientWallet]:
    wallets = [PatientWallet.generate() for _ in range(count)]
    futures = [
        registrar.send(registrar.prepare("identity", "register_patient", w.enrolment_args(channel))) for w in wallets
    ]
    for future in futures:
        LedgerClient.wait(future)
    return wallets


def _record_args(patient: PatientWallet, org_id: str, index: int) -> dict[str, object]:
    return {
        "patient": patient.pseudonym,
        "resource_type": "Observation",
        "clinical_date": "2025-06-30",
        "content_hash": hashlib.sha256(f"{org_id}/{index}".encode()).digest(),
        "locator": f"vault://{org_id}/{index:06d}",
    }


def _register_all(client: LedgerClient, org_id: str, patients: list[PatientWallet], count: int) -> list[Receipt]:
    """Send `count` records at once, then wait for every receipt."""
    transactions = [
        client.prepare("records", "register", _record_args(patients[i % len(patients)], org_id, i))
        for i in range(count)
    ]
    futures = [client.send(tx) for tx in transactions]
    return [LedgerClient.wait(future) for future in futures]


def _receipts_of(network: EmbeddedNetwork, org_id: str, tx_id: TxId) -> list[Receipt]:
    store = network.peers[org_id].store
    return [r for n in range(store.height()) for r in store.receipts(n) if r.tx_id == tx_id]


def _block_hash(peer: Peer, number: int) -> bytes:
    block = peer.store.block(number)
    assert block is not None, f"{peer.org_id} has no block {number}"
    return block.hash


def _record_count(network: EmbeddedNetwork, org_id: str) -> int:
    return len(network.peers[org_id].store.scan_state("records/entry/"))


@pytest.fixture
def loaded(network: EmbeddedNetwork) -> tuple[EmbeddedNetwork, dict[str, LedgerClient], list[Receipt]]:
    """The network after 200 records were registered concurrently by both hospitals' registrars."""
    registrars = {org: member_client(network, org, "registrar", Role.REGISTRAR)[0] for org in HOSPITALS}
    patients = _enrol_patients(registrars["st-mary"], network.channel, 12)
    with ThreadPoolExecutor(max_workers=len(HOSPITALS)) as pool:
        jobs = [
            pool.submit(_register_all, client, org, patients, RECORDS_PER_HOSPITAL)
            for org, client in registrars.items()
        ]
        receipts = [receipt for job in jobs for receipt in job.result()]
    assert network.wait_until_synced()
    return network, registrars, receipts


def test_concurrent_records_commit_the_same_chain_on_every_peer(
    loaded: tuple[EmbeddedNetwork, dict[str, LedgerClient], list[Receipt]],
) -> None:
    # Prepare
    network, _, receipts = loaded
    peers = list(network.iter_peers())
    # Execute
    statuses = network.statuses()
    heights = {peer.store.height() for peer in peers}
    # Assert
    assert all(r.is_valid for r in receipts) and len(receipts) == 2 * RECORDS_PER_HOSPITAL
    assert len(peers) == 5 and len(heights) == 1
    height = heights.pop()
    assert height > 2
    for number in range(height):
        hashes = {peer.org_id: _block_hash(peer, number) for peer in peers}
        assert len(set(hashes.values())) == 1, f"block {number} differs between peers: {hashes}"
    assert len({(s.height, s.block_hash, s.state_root) for s in statuses}) == 1
    assert all(s.diverged == () for s in statuses)
    rows = [list(peer.store.state_rows()) for peer in peers]
    assert all(r == rows[0] for r in rows)
    assert {_record_count(network, peer.org_id) for peer in peers} == {2 * RECORDS_PER_HOSPITAL}


def test_every_peer_stores_every_organisations_attestation_of_each_block(
    loaded: tuple[EmbeddedNetwork, dict[str, LedgerClient], list[Receipt]],
) -> None:
    # Prepare
    network, _, _ = loaded
    orgs = {org.org_id for org in network.orgs}
    height = network.peers["st-mary"].store.height()
    # Execute
    network.stop()
    stores = {org: SQLiteLedgerStore(network.data_dir / "peers" / org / "ledger.sqlite") for org in orgs}
    try:
        missing: dict[str, list[tuple[int, set[str]]]] = {}
        for org, store in stores.items():
            assert store.height() == height
            for number in range(1, height):
                block = store.block(number)
                assert block is not None
                attestations = store.attestations(number)
                assert all(a.block_hash == block.hash for a in attestations), (org, number)
                assert all(a.state_root == block.header.state_root for a in attestations), (org, number)
                attested_by = {a.org_id for a in attestations}
                if attested_by != orgs:
                    missing.setdefault(org, []).append((number, orgs - attested_by))
    finally:
        for store in stores.values():
            store.close()
    # Assert
    assert not missing, f"attestations missing (peer -> [(block, orgs)]): {missing}"


def test_every_peer_stores_every_organisations_attestation_of_the_genesis_block(network: EmbeddedNetwork) -> None:
    # Prepare
    orgs = {org.org_id for org in network.orgs}
    member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    assert network.wait_until_synced()
    # Execute
    network.stop()
    attested_by: dict[str, set[str]] = {}
    for org in orgs:
        store = SQLiteLedgerStore(network.data_dir / "peers" / org / "ledger.sqlite")
        try:
            attested_by[org] = {a.org_id for a in store.attestations(0)}
        finally:
            store.close()
    # Assert
    assert all(found == orgs for found in attested_by.values()), f"block 0 attested by: {attested_by}"


def test_a_peers_status_pairs_its_height_with_the_block_it_read(
    network: EmbeddedNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status reads the tip once: a commit landing after the tip was read must not pair the new
    height with the previous block's hash and state root."""
    # Prepare: the tip is read just before another block commits (the read returns the block below)
    member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    assert network.wait_until_synced()
    peer = network.peers["city-general"]
    height = peer.store.height()
    tip_before_commit = peer.store.header(height - 2)
    assert tip_before_commit is not None
    monkeypatch.setattr(peer.store, "last_header", lambda: tip_before_commit)
    # Execute
    status = peer.status()
    # Assert
    assert status.height == height - 1
    assert (status.block_hash, status.state_root) == (tip_before_commit.hash, tip_before_commit.header.state_root)


def test_a_client_asking_for_a_committed_transaction_gets_its_receipt_not_a_replays(
    network: EmbeddedNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race CI once met: a waiter registered for a transaction already committed, and before the peer
    looked the receipt up, a block holding a replay of it (DUPLICATE_TX) was committed."""
    # Prepare: a committed transaction; the next receipt look-up first lets a replay of it commit
    client, _ = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    patient = _enrol_patients(client, network.channel, 1)[0]
    tx = client.prepare("records", "register", _record_args(patient, "st-mary", 1))
    committed = LedgerClient.wait(client.send(tx))
    peer = network.peers["st-mary"]
    look_up = peer.receipt

    def replay_lands_first(tx_id: TxId) -> Receipt | None:
        height = peer.store.height()
        network.gateway("st-mary").submit(tx.encoded)
        assert peer.wait_for_height(height + 1, timeout=30)
        return look_up(tx_id)

    monkeypatch.setattr(peer, "receipt", replay_lands_first)
    # Execute
    answer = peer.receipt_future(tx.tx_id).result(timeout=30)
    # Assert: the replay was rejected, and the client got the receipt of the applied copy
    assert [r.code for r in _receipts_of(network, "st-mary", tx.tx_id)] == [VALID, RejectionCode.DUPLICATE_TX]
    assert answer == committed and answer.is_valid


def test_the_same_signed_transaction_sent_twice_is_applied_once(
    loaded: tuple[EmbeddedNetwork, dict[str, LedgerClient], list[Receipt]],
) -> None:
    # Prepare
    network, registrars, _ = loaded
    client = registrars["city-general"]
    patient = _enrol_patients(client, network.channel, 1)[0]
    tx = client.prepare("records", "register", _record_args(patient, "city-general", 999_999))
    records_before = _record_count(network, "city-general")
    # Execute
    first, second = client.send(tx), client.send(tx)
    receipts = (LedgerClient.wait(first), LedgerClient.wait(second))
    network.gateway("city-general").submit(tx.encoded)  # a replay of the committed bytes, in a later block
    _wait_for_receipts(network, tx, 2)
    again = LedgerClient.wait(client.send(tx))
    _wait_until_converged(network)
    # Assert
    assert receipts[0] == receipts[1] == again and again.is_valid
    for peer in network.iter_peers():
        codes = [r.code for r in _receipts_of(network, peer.org_id, tx.tx_id)]
        assert codes.count(VALID) == 1, (peer.org_id, codes)
        assert set(codes) == {VALID, RejectionCode.DUPLICATE_TX}, (peer.org_id, codes)
        assert _record_count(network, peer.org_id) == records_before + 1
    assert len({(s.height, s.state_root) for s in network.statuses()}) == 1


def _wait_until_converged(network: EmbeddedNetwork) -> None:
    """Wait until every batch the orderer cut is committed by every peer and no new batch came (a
    submission may still be on the cutter's timer when the last receipt arrives)."""
    for _ in range(100):
        assert network.wait_until_synced()
        time.sleep(0.1)
        if len({(s.height, s.state_root) for s in network.statuses()}) == 1 and network.wait_until_synced(0):
            return
    raise AssertionError("the peers never converged on one height")


def _wait_for_receipts(network: EmbeddedNetwork, tx: Transaction, count: int) -> None:
    """Wait until every peer holds at least `count` receipts for `tx` (the orderer cuts on a timer)."""
    for _ in range(100):
        assert network.wait_until_synced()
        if all(len(_receipts_of(network, org, tx.tx_id)) >= count for org in network.peers):
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} receipts of {tx.tx_id.hex()} arrived")


def test_inclusion_proof_verifies_and_breaks_on_any_changed_byte(
    loaded: tuple[EmbeddedNetwork, dict[str, LedgerClient], list[Receipt]],
) -> None:
    # Prepare
    network, registrars, receipts = loaded
    store = network.peers["st-mary"].store
    gateway = network.gateway("st-mary")
    tx_id = next(r.tx_id for r in receipts if gateway.transaction_proof(r.tx_id).tx_path.tree_size > 2)
    proof = gateway.transaction_proof(tx_id)
    # Execute
    proven = registrars["st-mary"].proof(tx_id)
    # Assert
    block = store.block(proven.block_number)
    assert block is not None
    assert (proven.tx_id, proven.block_hash, proven.receipt.is_valid) == (tx_id, block.hash, True)
    assert verify_transaction_proof(proof, trusted_block_hash=block.hash) == proven
    assert proof.tx_path.path and proof.receipt_path.path
    for name, tampered in _tampered_proofs(proof):
        with pytest.raises(ProofError):
            verify_transaction_proof(tampered, trusted_block_hash=block.hash)
            pytest.fail(f"proof with a changed {name} still verifies")


def _flip(raw: bytes, position: int) -> bytes:
    return raw[:position] + bytes([raw[position] ^ 0x01]) + raw[position + 1 :]


def _tampered_proofs(proof: TransactionProof) -> list[tuple[str, TransactionProof]]:
    """The proof with one byte changed: first, middle and last byte of each byte field, first
    and last byte of every path hash."""
    out: list[tuple[str, TransactionProof]] = []
    for field in ("tx_bytes", "header_bytes", "receipt_bytes"):
        raw: bytes = getattr(proof, field)
        for position in sorted({0, len(raw) // 2, len(raw) - 1}):
            changes: dict[str, Any] = {field: _flip(raw, position)}
            out.append((f"{field}[{position}]", dataclasses.replace(proof, **changes)))
    for field in ("tx_path", "receipt_path"):
        merkle = getattr(proof, field)
        for index, sibling in enumerate(merkle.path):
            for position in (0, len(sibling) - 1):
                path = (*merkle.path[:index], _flip(sibling, position), *merkle.path[index + 1 :])
                changed = dataclasses.replace(merkle, path=path)
                path_changes: dict[str, Any] = {field: changed}
                out.append((f"{field}.path[{index}][{position}]", dataclasses.replace(proof, **path_changes)))
    return out
