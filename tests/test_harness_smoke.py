"""The shared fixtures themselves work: a member enrols, a patient enrols, a record registers."""

from __future__ import annotations

from medledger.core.identity import Role
from tests.conftest import LedgerHarness


def test_harness_registers_a_record(harness: LedgerHarness) -> None:
    # Prepare
    registrar = harness.enrol("st-mary", "registrar", Role.REGISTRAR)
    patient = harness.enrol_patient(registrar)
    # Execute
    receipt = harness.submit(
        registrar,
        "records",
        "register",
        {
            "patient": patient.pseudonym,
            "resource_type": "Observation",
            "clinical_date": "2026-01-01",
            "content_hash": bytes(32),
            "locator": "vault://st-mary/1",
        },
    )
    # Assert
    assert receipt.is_valid, receipt
    assert len(harness.query("records", "by_patient", patient=patient.pseudonym)) == 1
