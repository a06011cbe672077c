"""Tests of the commit path's accelerations: they must change how fast, never what.

The process-parallel signature checker answers exactly as the serial one (in any order of asking,
across chunk boundaries, when a worker dies); a peer using it builds the same blocks; the indexed
block state scans exactly like the reference one; the codec's fast path writes the bytes cbor2's
canonical mode writes; the store's state cache follows every commit; the resolver's caches still
see a revocation at once; and the receipts the store keeps are the bytes the receipts root hashed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError
from medledger.core.identity import Role
from medledger.core.signing import Domain, SigningKey
from medledger.ledger.execution import EncodedReceipts, SignatureCheck, check_signatures_serially
from medledger.ledger.indexed_state import IndexedBlockState
from medledger.ledger.parallel import ParallelSignatureChecker
from medledger.ledger.sqlite_store import SQLiteLedgerStore
from medledger.ledger.state import BlockState
from tests.conftest import LedgerHarness, start_twin
from tests.ledger.test_execution_determinism import assert_same_execution, run


def mixed_checks(count: int, seed: int = 1) -> list[SignatureCheck]:
    """Valid checks with every fifth one broken in a different way."""
    rng = random.Random(seed)
    keys = [SigningKey(bytes([index]) * 32) for index in range(4)]
    checks: list[SignatureCheck] = []
    for index in range(count):
        key = keys[index % len(keys)]
        payload = rng.randbytes(rng.randrange(0, 400))
        signature = key.sign(Domain.TRANSACTION, payload)
        match index % 5:
            case 1:
                checks.append((keys[(index + 1) % len(keys)].public_key, payload, signature))  # wrong key
            case 2:
                checks.append((key.public_key, payload + b"x", signature))  # payload changed
            case 3:
                checks.append((key.public_key, payload, signature[:63]))  # truncated signature
            case 4:
                checks.append((key.public_key, payload, key.sign(Domain.BLOCK_ATTESTATION, payload)))  # other domain
            case _:
                checks.append((key.public_key, payload, signature))
    return checks


@pytest.fixture(scope="module")
def checker() -> Iterator[ParallelSignatureChecker]:
    with ParallelSignatureChecker(2, chunk_size=7, inline_below=4) as parallel:
        yield parallel


# the parallel signature checker ------------------------------------------------------------------


def test_outcomes_equal_the_serial_checker(checker: ParallelSignatureChecker) -> None:
    # Prepare
    checks = mixed_checks(101)
    # Execute
    outcomes = checker(checks)
    # Assert
    assert outcomes == check_signatures_serially(checks)
    assert outcomes.count(True) == 21


def test_streamed_outcomes_can_be_asked_in_any_order(checker: ParallelSignatureChecker) -> None:
    # Prepare
    checks = mixed_checks(60, seed=2)
    expected = check_signatures_serially(checks)
    order = list(range(len(checks)))
    random.Random(3).shuffle(order)
    # Execute
    pending = checker.start(checks)
    outcomes = {index: pending.outcome(index) for index in order}
    pending.close()
    # Assert
    assert [outcomes[index] for index in range(len(checks))] == expected


def test_an_abandoned_batch_does_not_leak_into_the_next(checker: ParallelSignatureChecker) -> None:
    # Prepare
    first = mixed_checks(80, seed=4)
    second = mixed_checks(80, seed=5)
    # Execute: only the first outcome of a batch is read before the next batch starts
    abandoned = checker.start(first)
    assert abandoned.outcome(0) is True
    outcomes = checker(second)
    # Assert
    assert outcomes == check_signatures_serially(second)


def test_small_batches_are_checked_on_the_calling_thread() -> None:
    # Prepare
    with ParallelSignatureChecker(1, inline_below=10) as parallel:
        # Execute
        outcomes = parallel(mixed_checks(9))
        # Assert
        assert outcomes == check_signatures_serially(mixed_checks(9))
        assert parallel._lanes == []


def test_each_thread_gets_workers_of_its_own(checker: ParallelSignatureChecker) -> None:
    # Prepare
    checks = mixed_checks(50, seed=6)
    results: dict[str, list[bool]] = {}

    def verify(name: str) -> None:
        results[name] = checker(checks)

    threads = [threading.Thread(target=verify, args=(f"peer-{n}",)) for n in range(3)]
    # Execute
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Assert
    expected = check_signatures_serially(checks)
    assert all(outcomes == expected for outcomes in results.values())
    pids = [worker.process.pid for lane in checker._lanes for worker in lane.workers]
    assert len(pids) == len(set(pids)) >= 6


def test_a_dead_worker_is_covered_and_replaced() -> None:
    # Prepare
    checks = mixed_checks(90, seed=7)
    with ParallelSignatureChecker(2, chunk_size=10, inline_below=1) as parallel:
        parallel(checks)
        parallel._lanes[0].workers[0].process.kill()
        parallel._lanes[0].workers[0].process.wait()
        # Execute
        during = parallel(checks)
        after = parallel(checks)
        # Assert
        assert during == after == check_signatures_serially(checks)
        assert not any(worker.broken for worker in parallel._lanes[0].workers)


def test_a_peer_checking_in_processes_builds_the_same_blocks(harness: LedgerHarness, tmp_path: Path) -> None:
    # Prepare: chunks of one transaction, so every block streams through the workers
    with ParallelSignatureChecker(2, chunk_size=1, inline_below=1) as parallel:
        twin = start_twin(harness, tmp_path / "parallel", org_id="mutual-health", checker=parallel)
        # Execute
        try:
            executed = run(harness, [twin])
        finally:
            twin.close()
    # Assert
    for blocks in executed:
        assert_same_execution(blocks)


# the indexed block state -------------------------------------------------------------------------

KEYS = st.text(alphabet="ab/\U0010ffff", min_size=1, max_size=5)


class CommittedState:
    """A StateReader over a plain dict: the simplest possible committed state."""

    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values

    def get_state(self, key: str) -> bytes | None:
        return self.values.get(key)

    def scan_state(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        found = sorted(
            (k, v) for k, v in self.values.items() if k.startswith(prefix) and (start_after is None or k > start_after)
        )
        return found if limit is None else found[:limit]


@settings(max_examples=200, deadline=None)
@given(
    committed=st.dictionaries(KEYS, st.binary(max_size=2), max_size=12),
    blocks=st.lists(st.dictionaries(KEYS, st.none() | st.binary(max_size=2), max_size=6), max_size=4),
    prefix=st.text(alphabet="ab/\U0010ffff", max_size=3),
    start_after=st.none() | KEYS,
    limit=st.none() | st.integers(min_value=1, max_value=5),
)
def test_indexed_scans_equal_the_reference_scans(
    committed: dict[str, bytes],
    blocks: list[dict[str, bytes | None]],
    prefix: str,
    start_after: str | None,
    limit: int | None,
) -> None:
    # Prepare
    store = CommittedState(committed)
    reference, indexed = BlockState(store), IndexedBlockState(store)
    # Execute
    for index, writes in enumerate(blocks):
        reference.apply(index, writes)
        indexed.apply(index, writes)
    # Assert
    assert indexed.scan_state(prefix, start_after, limit) == reference.scan_state(prefix, start_after, limit)
    assert indexed.writes == reference.writes


# the canonical codec -----------------------------------------------------------------------------

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64 - 1) | st.text() | st.binary(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)


@given(VALUES)
def test_encode_writes_what_cbor2_canonical_mode_writes(value: Any) -> None:
    # Prepare / Execute
    encoded = encode(value)
    # Assert
    assert encoded == cbor2.dumps(value, canonical=True)
    assert decode(encoded) == value


@given(st.dictionaries(st.text(max_size=6), st.integers(0, 9), min_size=2, max_size=6))
def test_decode_refuses_a_map_whose_keys_are_not_in_canonical_order(value: dict[str, int]) -> None:
    # Prepare: the same map written in reverse canonical order (plain, not canonical, cbor2)
    canonical = list(cbor2.loads(encode(value)).items())
    reordered = cbor2.dumps(dict(reversed(canonical)))
    # Execute / Assert
    with pytest.raises(EncodingError, match="canonical"):
        decode(reordered)


def test_an_enum_member_encodes_as_its_value() -> None:
    # Prepare / Execute / Assert
    assert encode({"role": Role.CLINICIAN, "n": True}) == encode({"role": "clinician", "n": True})


# the state cache of the SQLite store -------------------------------------------------------------


def test_reads_follow_every_commit(harness: LedgerHarness) -> None:
    # Prepare
    store = harness.peer.store
    registrar = harness.enrol("st-mary", "registrar", Role.REGISTRAR)
    key = f"identity/member/{registrar.certificate.cert_id}"
    before = store.get_state(key)
    # Execute: revoking rewrites the member row, which the cache holds
    receipt = harness.submit(
        harness.admins["st-mary"],
        "identity",
        "revoke_member",
        {"cert_id": registrar.certificate.cert_id, "reason": "left"},
    )
    # Assert
    assert receipt.is_valid
    after = store.get_state(key)
    assert before is not None and after is not None and after != before
    assert decode(after)["status"] == "revoked"
    assert harness.submit(registrar, "identity", "register_patient", {}).code == "CERT_REVOKED"


def test_a_read_only_store_sees_another_writer(harness: LedgerHarness) -> None:
    # Prepare
    reader = SQLiteLedgerStore(harness.peer.store.path, read_only=True)
    try:
        registrar = harness.enrol("st-mary", "registrar", Role.REGISTRAR)
        key = f"identity/member/{registrar.certificate.cert_id}"
        first = reader.get_state(key)
        # Execute
        harness.submit(
            harness.admins["st-mary"],
            "identity",
            "revoke_member",
            {"cert_id": registrar.certificate.cert_id, "reason": "left"},
        )
        # Assert
        second = reader.get_state(key)
        assert first is not None and second is not None
        assert decode(second)["status"] == "revoked"
    finally:
        reader.close()


def test_stored_receipts_are_the_bytes_the_root_hashed(harness: LedgerHarness) -> None:
    # Prepare
    harness.enrol("st-mary", "registrar", Role.REGISTRAR)
    store = harness.peer.store
    number = store.height() - 1
    # Execute
    stored = [bytes(row[4]) for row in store.raw_rows("receipts") if row[0] == number]
    receipts = store.receipts(number)
    # Assert
    assert stored == list(EncodedReceipts(receipts).encoded)


def test_the_resolver_answers_repeated_signers_from_its_caches(harness: LedgerHarness) -> None:
    # Prepare
    registrar = harness.enrol("st-mary", "registrar", Role.REGISTRAR)
    patient = harness.enrol_patient(registrar)
    resolver = harness.peer.resolver
    hits = resolver.hits
    now = harness.clock()
    deny_all = {"provision": "deny", "grantee": {}, "purposes": [], "valid_from": now, "valid_until": now + 10}
    # Execute: each block resolves the patient twice (signature pre-check, then execution)
    receipts = [harness.submit(patient, "consent", "grant", deny_all) for _ in range(3)]
    # Assert: only the very first resolution decodes the patient's row
    assert all(receipt.is_valid for receipt in receipts)
    assert resolver.hits >= hits + 5
