"""The consent policy as a pure function: grantee, purpose, scope, period, exceptions, deny overrides."""

from __future__ import annotations

from typing import Any

import pytest

from medledger.contracts.consent import AccessQuery, evaluate_consents

DAY = 86_400_000
NOW = 1_767_225_600_000

RECORD = {
    "record_id": "a" * 32,
    "patient": "p" * 32,
    "resource_type": "Observation",
    "category": "laboratory",
    "clinical_date": "2025-11-20",
}


def consent(consent_id: str = "c1", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "consent_id": consent_id * 16 if len(consent_id) == 2 else consent_id,
        "status": "active",
        "provision": "permit",
        "grantee": {"org": "city-general", "member": None, "role": None},
        "purposes": ["TREAT"],
        "actions": ["read"],
        "scope": {
            "record_ids": [],
            "resource_types": ["Observation"],
            "categories": ["laboratory"],
            "date_from": "2025-07-01",
            "date_to": None,
        },
        "exceptions": [],
        "valid_from": NOW - DAY,
        "valid_until": NOW + 30 * DAY,
    }
    base.update(overrides)
    return base


def query(**overrides: Any) -> AccessQuery:
    fields: dict[str, Any] = {
        "org_id": "city-general",
        "member_id": "m" * 64,
        "role": "clinician",
        "purpose": "TREAT",
        "action": "read",
        "record": RECORD,
        "at_ms": NOW,
    }
    fields.update(overrides)
    return AccessQuery(**fields)


def test_a_matching_permit_permits_and_names_itself() -> None:
    # Execute
    decision = evaluate_consents([consent()], query())
    # Assert
    assert decision.permitted
    assert decision.consent_id == "c1" * 16


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"org_id": "riverside"}, "no consent that covers"),
        ({"purpose": "HRESCH"}, "allows purposes TREAT, not HRESCH"),
        ({"record": {**RECORD, "clinical_date": "2025-01-10"}}, "clinical dates from 2025-07-01"),
        ({"record": {**RECORD, "resource_type": "Condition"}}, "covers Observation, not Condition"),
        ({"record": {**RECORD, "category": "imaging"}}, "categories laboratory, not imaging"),
        ({"at_ms": NOW + 31 * DAY}, "expired at"),
        ({"at_ms": NOW - 2 * DAY}, "valid only from"),
    ],
)
def test_each_mismatch_denies_and_says_which(change: dict[str, Any], words: str) -> None:
    # Execute
    decision = evaluate_consents([consent()], query(**change))
    # Assert
    assert not decision.permitted
    assert words in decision.reason


def test_a_revoked_consent_no_longer_permits() -> None:
    # Execute
    decision = evaluate_consents([consent(status="revoked", revoked_at=NOW - 1)], query())
    # Assert
    assert not decision.permitted
    assert "revoked" in decision.reason


def test_deny_overrides_permit() -> None:
    # Prepare
    deny = consent("d1", provision="deny", grantee={"org": "city-general"}, purposes=[], scope={})
    # Execute
    decision = evaluate_consents([consent(), deny], query())
    # Assert
    assert not decision.permitted
    assert decision.consent_id == "d1" * 16


def test_an_expired_deny_does_not_block() -> None:
    # Prepare
    deny = consent("d1", provision="deny", grantee={}, purposes=[], scope={}, valid_until=NOW - 1)
    # Execute / Assert
    assert evaluate_consents([consent(), deny], query()).permitted


def test_a_nested_exception_carves_out_part_of_a_permit() -> None:
    # Prepare: permit lab results except for one record
    carve: dict[str, Any] = {"grantee": None, "purposes": [], "actions": [], "scope": {"record_ids": ["a" * 32]}}
    # Execute
    excepted = evaluate_consents([consent(exceptions=[carve])], query())
    other = evaluate_consents([consent(exceptions=[carve])], query(record={**RECORD, "record_id": "b" * 32}))
    # Assert
    assert not excepted.permitted and "exceptions" in excepted.reason
    assert other.permitted


def test_role_and_member_grantees() -> None:
    # Prepare
    by_role = consent(grantee={"org": None, "member": None, "role": "clinician"})
    by_member = consent("c2", grantee={"member": "m" * 64})
    # Execute / Assert
    assert evaluate_consents([by_role], query(org_id="riverside")).permitted
    assert not evaluate_consents([by_role], query(role="nurse")).permitted
    assert evaluate_consents([by_member], query(org_id="anywhere")).permitted
    assert not evaluate_consents([by_member], query(member_id="n" * 64)).permitted


def test_partial_dates_compare_as_the_period_they_start() -> None:
    # Prepare
    scoped = consent(scope={"date_from": "2025-07", "date_to": "2025"})
    # Execute / Assert
    assert evaluate_consents([scoped], query(record={**RECORD, "clinical_date": "2025-07"})).permitted
    assert not evaluate_consents([scoped], query(record={**RECORD, "clinical_date": "2025-06-30"})).permitted


def test_the_decision_does_not_depend_on_the_order_of_consents() -> None:
    # Prepare
    consents = [consent("c3"), consent("c1"), consent("c2", purposes=["HRESCH"])]
    # Execute
    forward = evaluate_consents(consents, query())
    backward = evaluate_consents(list(reversed(consents)), query())
    # Assert
    assert forward == backward
