"""Execution is a function of (genesis, ordered batches) alone: independent peers fed the same batches
build byte-identical blocks, receipts and state, whoever runs them and however they check signatures.

A golden block hash is not possible here (X.509 serial numbers and keys are random per run), so these
tests check the determinism properties instead: two peers agree block by block, a peer rebuilt from
the stored chain reproduces it, and the block hash does change with what the orderer fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from medledger.contracts.default import default_registry
from medledger.contracts.records.contract import record_id_for
from medledger.core.identity import Role
from medledger.core.signing import Domain, SigningKey, signature_is_valid
from medledger.ledger.execution import (
    ExecutedBlock,
    SignatureCheck,
    execute_block,
)
from medledger.ledger.state import next_state_root
from medledger.node.peer import CommittedBlock, Peer
from medledger.ordering.orderer import OrderedBatch
from medledger.sdk import Credentials, PatientWallet
from tests.conftest import DAY_MS, LedgerHarness, start_twin

BLOCK_INTERVAL_MS = 2_000
"""How far the clock moves between two scenario blocks."""


def check_signatures_in_parallel(checks: Sequence[SignatureCheck]) -> list[bool]:
    """A signature checker that fans out over threads and completes in no particular order."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda check: signature_is_valid(Domain.TRANSACTION, *check), checks))


def record_args(patient: PatientWallet, locator: str, clinical_date: str = "2026-01-01") -> dict[str, Any]:
    return {
        "patient": patient.pseudonym,
        "resource_type": "Observation",
        "clinical_date": clinical_date,
        "content_hash": bytes(range(32)),
        "locator": locator,
    }


def scenario(harness: LedgerHarness) -> Iterator[tuple[bytes, ...]]:
    """Batches exercising identities, patients, records and rejections; the clock moves between them."""
    admin = harness.admins["st-mary"]
    now = harness.clock
    registrar = harness.cas["st-mary"].enrol("registrar", Role.REGISTRAR, now())
    clinician = harness.cas["st-mary"].enrol("clinician", Role.CLINICIAN, now())
    other_clinician = harness.cas["city-general"].enrol("clinician", Role.CLINICIAN, now())
    researcher = harness.cas["northern-research"].enrol("researcher", Role.RESEARCHER, now())

    def register(identity_admin: Any, identity: Any) -> bytes:
        args = {"certificate": identity.certificate.der}
        return harness.sign(identity_admin, "identity", "register_member", args).encoded

    yield (
        register(admin, registrar),
        register(admin, clinician),
        register(harness.admins["city-general"], other_clinician),
        register(harness.admins["northern-research"], researcher),
        register(admin, other_clinician),
    )
    harness.clock.advance(BLOCK_INTERVAL_MS)

    alice, bob = PatientWallet.generate(), PatientWallet.generate()
    yield (
        harness.sign(registrar, "identity", "register_patient", alice.enrolment_args(harness.channel)).encoded,
        b"\x00garbage",
        harness.sign(clinician, "identity", "register_patient", bob.enrolment_args(harness.channel)).encoded,
    )
    harness.clock.advance(BLOCK_INTERVAL_MS)

    first = harness.sign(registrar, "records", "register", record_args(alice, "vault://st-mary/1"))
    second = harness.sign(clinician, "records", "register", record_args(alice, "vault://st-mary/2"))
    third = harness.sign(registrar, "records", "register", record_args(bob, "vault://st-mary/3"))
    forger = Credentials(f"member:{registrar.certificate.cert_id}", SigningKey.generate())
    yield (
        first.encoded,
        harness.sign(researcher, "records", "register", record_args(alice, "vault://lab/1")).encoded,
        second.encoded,
        harness.sign(forger, "records", "register", record_args(bob, "vault://st-mary/x")).encoded,
        third.encoded,
        harness.sign(registrar, "records", "register", record_args(bob, "vault://st-mary/4", "2026-02-30")).encoded,
    )
    harness.clock.advance(BLOCK_INTERVAL_MS)

    yield ()
    harness.clock.advance(BLOCK_INTERVAL_MS)

    amend = {
        "previous": record_id_for(first.tx_id),
        "clinical_date": "2026-01-02",
        "content_hash": bytes(32),
        "locator": "vault://st-mary/1b",
        "reason": "corrected units",
    }
    foreign_amend = {**amend, "previous": record_id_for(third.tx_id), "locator": "vault://city-general/3"}
    retire = {"record_id": record_id_for(second.tx_id), "reason": "entered for the wrong patient"}
    yield (
        harness.sign(clinician, "records", "amend", amend).encoded,
        harness.sign(registrar, "records", "retire", retire).encoded,
        first.encoded,
        harness.sign(other_clinician, "records", "amend", foreign_amend).encoded,
        harness.sign(alice, "records", "register", record_args(alice, "vault://alice/1")).encoded,
    )
    harness.clock.advance(DAY_MS)

    revoke = {"cert_id": clinician.certificate.cert_id, "reason": "left the trust"}
    yield (
        harness.sign(admin, "identity", "revoke_member", revoke).encoded,
        harness.sign(clinician, "records", "register", record_args(bob, "vault://st-mary/5")).encoded,
        harness.sign(registrar, "records", "register", record_args(bob, "vault://st-mary/6")).encoded,
        harness.sign(
            registrar, "records", "register", record_args(bob, "vault://st-mary/7"), timestamp_ms=now() - 2 * DAY_MS
        ).encoded,
    )


def run(harness: LedgerHarness, peers: Sequence[Peer]) -> list[list[CommittedBlock]]:
    """Feed every scenario batch to the harness peer and `peers`; per block, what each executed."""
    executed: list[list[CommittedBlock]] = []
    for transactions in scenario(harness):
        batch = OrderedBatch(harness.peer.store.height(), harness.clock(), transactions, "solo-test")
        executed.append([peer.apply_batch(batch) for peer in [harness.peer, *peers]])
    return executed


def assert_same_execution(blocks: Sequence[ExecutedBlock] | Sequence[CommittedBlock]) -> None:
    first, *others = blocks
    for other in others:
        assert other.block.header_bytes == first.block.header_bytes
        assert other.block.hash == first.block.hash
        assert other.block.transactions == first.block.transactions
        assert other.receipts == first.receipts
        assert other.writes == first.writes


def state_rows(peer: Peer) -> list[tuple[str, bytes, int, int]]:
    return [(row.key, row.value, row.block_number, row.tx_index) for row in peer.store.state_rows()]


@pytest.fixture
def twin(harness: LedgerHarness, tmp_path: Path) -> Iterator[Peer]:
    peer = start_twin(harness, tmp_path / "twin")
    yield peer
    peer.close()


# tests -------------------------------------------------------------------------------------


def test_twin_rebuilds_the_same_genesis_block(harness: LedgerHarness, twin: Peer) -> None:
    # Prepare
    original = harness.peer.store.block(0)
    # Execute
    rebuilt = twin.store.block(0)
    # Assert
    assert original is not None and rebuilt is not None
    assert rebuilt.header_bytes == original.header_bytes
    assert rebuilt.hash == original.hash
    assert state_rows(twin) == state_rows(harness.peer)


def test_identical_batches_give_identical_blocks_block_by_block(harness: LedgerHarness, twin: Peer) -> None:
    # Prepare
    assert twin.org_id != harness.peer.org_id
    assert twin.identity.certificate.cert_id != harness.peer.identity.certificate.cert_id
    # Execute
    executed = run(harness, [twin])
    # Assert
    for blocks in executed:
        assert_same_execution(blocks)
    assert twin.status().block_hash == harness.peer.status().block_hash
    assert twin.status().state_root == harness.peer.status().state_root
    assert state_rows(twin) == state_rows(harness.peer)


def test_scenario_exercises_valid_and_rejected_transactions(harness: LedgerHarness, twin: Peer) -> None:
    # Prepare / Execute
    executed = run(harness, [twin])
    # Assert: the agreement above is not vacuous
    codes = [receipt.code for blocks in executed for receipt in blocks[0].receipts]
    assert codes.count("VALID") >= 10
    assert {
        "WRONG_ORGANISATION",
        "MALFORMED",
        "ROLE_NOT_PERMITTED",
        "BAD_SIGNATURE",
        "BAD_DATE",
        "DUPLICATE_TX",
        "CERT_REVOKED",
        "STALE_TX",
    } <= set(codes)
    assert any(not blocks[0].block.transactions for blocks in executed)


def test_every_block_state_root_chains_from_its_writes(harness: LedgerHarness, twin: Peer) -> None:
    # Prepare
    executed = run(harness, [twin])
    genesis = harness.peer.store.block(0)
    assert genesis is not None
    previous_root = genesis.header.state_root
    # Execute / Assert
    for blocks in executed:
        block = blocks[0]
        assert block.writes is not None
        plain_writes = {key: value for key, (value, _) in block.writes.items()}
        assert block.block.header.state_root == next_state_root(previous_root, block.block.number, plain_writes)
        previous_root = block.block.header.state_root


def test_parallel_signature_checking_gives_the_same_blocks(harness: LedgerHarness, tmp_path: Path) -> None:
    # Prepare
    parallel = start_twin(harness, tmp_path / "parallel", org_id="mutual-health", checker=check_signatures_in_parallel)
    # Execute
    try:
        executed = run(harness, [parallel])
    finally:
        parallel.close()
    # Assert
    for blocks in executed:
        assert_same_execution(blocks)


def test_reopened_peer_continues_with_the_same_blocks(harness: LedgerHarness, tmp_path: Path) -> None:
    # Prepare: the twin is closed and reopened from disk between two blocks, losing every cache
    directory = tmp_path / "reopened"
    twin = start_twin(harness, directory)
    identity = twin.identity
    executed: list[list[CommittedBlock]] = []
    # Execute
    try:
        for number, transactions in enumerate(scenario(harness), start=1):
            batch = OrderedBatch(number, harness.clock(), transactions, "solo-test")
            executed.append([harness.peer.apply_batch(batch), twin.apply_batch(batch)])
            twin.close()
            twin = Peer(twin.org_id, directory, identity, default_registry())
    finally:
        twin.close()
    # Assert
    for blocks in executed:
        assert_same_execution(blocks)


def test_peer_replaying_the_stored_chain_reproduces_it(harness: LedgerHarness, tmp_path: Path) -> None:
    # Prepare
    run(harness, [])
    stored = list(harness.peer.store.blocks(1))
    replica = start_twin(harness, tmp_path / "replica", org_id="health-authority")
    # Execute
    try:
        replayed = [
            replica.apply_batch(
                OrderedBatch(
                    block.number, block.header.timestamp_ms, block.transactions, block.header.orderer["orderer"]
                )
            )
            for block in stored
        ]
        replica_rows = state_rows(replica)
    finally:
        replica.close()
    # Assert
    assert [block.block.hash for block in replayed] == [block.hash for block in stored]
    assert [list(block.receipts) for block in replayed] == [harness.peer.store.receipts(b.number) for b in stored]
    assert replica_rows == state_rows(harness.peer)


def test_executing_a_batch_is_pure_until_committed(harness: LedgerHarness) -> None:
    # Prepare
    batches = scenario(harness)
    for transactions in (next(batches), next(batches)):
        harness.apply(transactions)
    transactions = next(batches)
    peer, number, timestamp = harness.peer, harness.peer.store.height(), harness.clock()
    state_before = state_rows(peer)

    def execute() -> ExecutedBlock:
        metadata = {"orderer": "solo-test"}
        return execute_block(
            peer.store, peer.registry, peer.resolver, peer.rules, number, timestamp, transactions, metadata
        )

    # Execute
    first, second = execute(), execute()
    # Assert
    assert_same_execution([first, second])
    assert peer.store.height() == number
    assert state_rows(peer) == state_before


@pytest.mark.parametrize(
    "change",
    [
        lambda batch: OrderedBatch(batch.number, batch.timestamp_ms, batch.transactions[::-1], batch.orderer_id),
        lambda batch: OrderedBatch(batch.number, batch.timestamp_ms + 1, batch.transactions, batch.orderer_id),
        lambda batch: OrderedBatch(batch.number, batch.timestamp_ms, batch.transactions, "another-orderer"),
        lambda batch: OrderedBatch(batch.number, batch.timestamp_ms, batch.transactions[:-1], batch.orderer_id),
    ],
    ids=["reordered", "later", "other-orderer", "one-fewer"],
)
def test_block_hash_commits_to_what_the_orderer_fixed(
    harness: LedgerHarness, twin: Peer, change: Callable[[OrderedBatch], OrderedBatch]
) -> None:
    # Prepare: both peers agree up to the batch of three record registrations, then get different batches
    batches = scenario(harness)
    for _ in range(2):
        transactions = next(batches)
        batch = OrderedBatch(harness.peer.store.height(), harness.clock(), transactions, "solo-test")
        harness.peer.apply_batch(batch)
        twin.apply_batch(batch)
    batch = OrderedBatch(harness.peer.store.height(), harness.clock(), next(batches), "solo-test")
    # Execute
    original, changed = harness.peer.apply_batch(batch), twin.apply_batch(change(batch))
    # Assert
    assert changed.block.hash != original.block.hash
    assert changed.block.header.previous_hash == original.block.header.previous_hash


def test_the_state_of_the_rejected_does_not_reach_the_state_root(harness: LedgerHarness, twin: Peer) -> None:
    # Prepare: the twin's batch has an extra rejected transaction in front
    garbage = b"\x00garbage"
    number, timestamp = harness.peer.store.height(), harness.clock()
    admin = harness.admins["st-mary"]
    nurse = harness.cas["st-mary"].enrol("nurse", Role.NURSE, timestamp)
    register = harness.sign(admin, "identity", "register_member", {"certificate": nurse.certificate.der}).encoded
    # Execute
    plain = harness.peer.apply_batch(OrderedBatch(number, timestamp, (register,), "solo-test"))
    padded = twin.apply_batch(OrderedBatch(number, timestamp, (garbage, register), "solo-test"))
    # Assert
    assert padded.block.hash != plain.block.hash
    assert padded.receipts[0].code == "MALFORMED"
    assert plain.receipts[0].is_valid and padded.receipts[1].is_valid
    assert [row[:2] for row in state_rows(twin)] == [row[:2] for row in state_rows(harness.peer)]


def test_applying_a_committed_batch_again_is_idempotent(harness: LedgerHarness) -> None:
    # Prepare
    batch = OrderedBatch(harness.peer.store.height(), harness.clock(), (b"\x00garbage",), "solo-test")
    first = harness.peer.apply_batch(batch)
    # Execute
    again = harness.peer.apply_batch(batch)
    # Assert
    assert again.block.hash == first.block.hash
    assert harness.peer.store.height() == batch.number + 1
