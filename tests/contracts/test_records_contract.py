"""The records contract: register, amend as a linked new version, retire, and the patient index."""

from __future__ import annotations

from typing import Any

import pytest

from medledger.contracts.records import record_id_for
from medledger.core.hashing import sha256
from medledger.core.identity import MemberIdentity, Role
from medledger.sdk import PatientWallet
from tests.conftest import LedgerHarness


def record_args(patient: PatientWallet, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "patient": patient.pseudonym,
        "resource_type": "Observation",
        "clinical_date": "2026-01-15",
        "content_hash": sha256(b"glucose 5.4 mmol/L"),
        "locator": "vault://st-mary/obs-1",
    }
    args.update(overrides)
    return args


@pytest.fixture
def registrar(harness: LedgerHarness) -> MemberIdentity:
    return harness.enrol("st-mary", "registrar", Role.REGISTRAR)


@pytest.fixture
def patient(harness: LedgerHarness, registrar: MemberIdentity) -> PatientWallet:
    return harness.enrol_patient(registrar)


def register(harness: LedgerHarness, registrar: MemberIdentity, patient: PatientWallet, **overrides: Any) -> str:
    tx = harness.sign(registrar, "records", "register", record_args(patient, **overrides))
    receipt = harness.apply([tx.encoded])[0]
    assert receipt.is_valid, receipt
    return record_id_for(tx.tx_id)


def test_register_indexes_the_record_under_its_patient(
    harness: LedgerHarness, registrar: MemberIdentity, patient: PatientWallet
) -> None:
    # Execute
    record_id = register(harness, registrar, patient)
    # Assert
    entry = harness.query("records", "get", record_id=record_id)
    assert entry["source_org"] == "st-mary"
    assert entry["content_hash"] == sha256(b"glucose 5.4 mmol/L")
    assert entry["version"] == 1 and entry["previous"] is None and entry["status"] == "current"
    listed = harness.query("records", "by_patient", patient=patient.pseudonym)
    assert listed == [
        {
            "record_id": record_id,
            "resource_type": "Observation",
            "category": None,
            "clinical_date": "2026-01-15",
            "status": "current",
        }
    ]


def test_unknown_patient_is_refused(harness: LedgerHarness, registrar: MemberIdentity) -> None:
    # Execute
    receipt = harness.submit(registrar, "records", "register", record_args(PatientWallet.generate()))
    # Assert
    assert receipt.code == "UNKNOWN_PATIENT"


def test_amendment_is_a_new_version_linked_to_the_old(
    harness: LedgerHarness, registrar: MemberIdentity, patient: PatientWallet
) -> None:
    # Prepare
    first = register(harness, registrar, patient)
    amend = harness.sign(
        registrar,
        "records",
        "amend",
        {
            "previous": first,
            "clinical_date": "2026-01-15",
            "content_hash": sha256(b"glucose 5.6 mmol/L"),
            "locator": "vault://st-mary/obs-1-v2",
            "reason": "transcription error corrected",
        },
    )
    # Execute
    receipt = harness.apply([amend.encoded])[0]
    # Assert
    assert receipt.is_valid, receipt
    second = record_id_for(amend.tx_id)
    history = harness.query("records", "history", record_id=second)
    assert [v["record_id"] for v in history] == [second, first]
    assert [v["version"] for v in history] == [2, 1]
    assert history[0]["amend_reason"] == "transcription error corrected"
    assert history[1]["status"] == "superseded" and history[1]["superseded_by"] == second


def test_only_the_latest_version_can_be_amended(
    harness: LedgerHarness, registrar: MemberIdentity, patient: PatientWallet
) -> None:
    # Prepare
    first = register(harness, registrar, patient)
    args = {
        "previous": first,
        "clinical_date": "2026-01-15",
        "content_hash": bytes(32),
        "locator": "vault://st-mary/x",
        "reason": "fix",
    }
    assert harness.submit(registrar, "records", "amend", args).is_valid
    # Execute
    receipt = harness.submit(registrar, "records", "amend", args)
    # Assert
    assert receipt.code == "RECORD_NOT_CURRENT"


def test_retired_records_stay_listed_as_retired(
    harness: LedgerHarness, registrar: MemberIdentity, patient: PatientWallet
) -> None:
    # Prepare
    record_id = register(harness, registrar, patient)
    # Execute
    receipt = harness.submit(registrar, "records", "retire", {"record_id": record_id, "reason": "entered in error"})
    # Assert
    assert receipt.is_valid
    assert harness.query("records", "get", record_id=record_id)["status"] == "retired"
    assert harness.query("records", "by_patient", patient=patient.pseudonym)[0]["status"] == "retired"


def test_by_patient_filters_by_resource_type(
    harness: LedgerHarness, registrar: MemberIdentity, patient: PatientWallet
) -> None:
    # Prepare
    register(harness, registrar, patient)
    report = register(harness, registrar, patient, resource_type="DiagnosticReport", locator="vault://st-mary/r1")
    # Execute
    reports = harness.query("records", "by_patient", patient=patient.pseudonym, resource_type="DiagnosticReport")
    # Assert
    assert [r["record_id"] for r in reports] == [report]


@pytest.mark.parametrize("date", ["2026", "2026-02", "2024-02-29"])
def test_partial_and_leap_dates_are_accepted(
    harness: LedgerHarness, registrar: MemberIdentity, patient: PatientWallet, date: str
) -> None:
    # Execute / Assert
    register(harness, registrar, patient, clinical_date=date)


@pytest.mark.parametrize("date", ["2025-02-29", "2026-13", "2026-00-10"])
def test_dates_not_on_the_calendar_are_refused(
    harness: LedgerHarness, registrar: MemberIdentity, patient: PatientWallet, date: str
) -> None:
    # Execute
    receipt = harness.submit(registrar, "records", "register", record_args(patient, clinical_date=date))
    # Assert
    assert receipt.code == "BAD_DATE"
    assert date in receipt.reason
