"""A peer catching up from another peer checks each block against what the quorum attested."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from medledger.core.identity import Role
from medledger.ledger.errors import IntegrityError
from tests.conftest import LedgerHarness, start_twin


def test_a_block_differing_from_the_attested_one_is_refused_and_named(harness: LedgerHarness, tmp_path: Path) -> None:
    # Prepare: the harness peer commits blocks 1..3; a twin has only genesis
    registrar = harness.enrol("st-mary", "registrar", Role.REGISTRAR)
    harness.enrol_patient(registrar)
    harness.enrol("st-mary", "dr-a", Role.CLINICIAN)
    twin = start_twin(harness, tmp_path / "twin")
    attested = {n: harness.peer.store.block(n).hash for n in range(1, 4)}  # type: ignore[union-attr]
    batch_1 = harness.peer.committed_batch(1)
    assert batch_1 is not None
    forged = dataclasses.replace(batch_1, timestamp_ms=batch_1.timestamp_ms + 1)
    # Execute / Assert: the forged batch is refused and nothing is committed
    with pytest.raises(IntegrityError) as refused:
        twin.apply_batch(forged, attested_hash=attested[1])
    assert refused.value.location == "block 1"
    assert "quorum attested" in refused.value.problem
    assert twin.store.height() == 1
    # the genuine batches are accepted and reproduce the attested hashes
    for number in range(1, 4):
        batch = harness.peer.committed_batch(number)
        assert batch is not None
        assert twin.apply_batch(batch, attested_hash=attested[number]).block.hash == attested[number]
    twin.close()
