"""The coded-value checks medledger relies on: each rejection names the FHIR path and the bad value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medledger.standards import FhirError, FhirStructureError, FhirValueError, parse_bundle, parse_resource

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _observation(**overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2345-7"}]},
        "subject": {"reference": "Patient/p1"},
    }
    resource.update(overrides)
    return {key: value for key, value in resource.items() if value is not None}


def _patient(**overrides: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **overrides}


CASES: list[tuple[str, dict[str, Any], type[FhirError], str, str | None]] = [
    ("unknown type", {"resourceType": "Patinet"}, FhirValueError, "resourceType", "Patinet"),
    ("abstract type", {"resourceType": "DomainResource"}, FhirValueError, "resourceType", "DomainResource"),
    ("datatype, not a resource", {"resourceType": "HumanName"}, FhirValueError, "resourceType", "HumanName"),
    ("type not a string", {"resourceType": 7}, FhirStructureError, "resourceType", "7"),
    ("status outside value set", _observation(status="done"), FhirValueError, "Observation.status", "done"),
    ("status missing", _observation(status=None), FhirValueError, "Observation.status", None),
    (
        "code without system",
        _observation(code={"coding": [{"code": "2345-7"}]}),
        FhirValueError,
        "Observation.code.coding",
        None,
    ),
    ("code text only", _observation(code={"text": "glucose"}), FhirValueError, "Observation.code.coding", None),
    (
        "LOINC by OID",
        _observation(code={"coding": [{"system": "urn:oid:2.16.840.1.113883.6.1", "code": "2345-7"}]}),
        FhirValueError,
        "Observation.code.coding[0].system",
        "urn:oid:2.16.840.1.113883.6.1",
    ),
    (
        "LOINC with trailing slash in a component",
        _observation(component=[{"code": {"coding": [{"system": "http://loinc.org/", "code": "8480-6"}]}}]),
        FhirValueError,
        "Observation.component[0].code.coding[0].system",
        "http://loinc.org/",
    ),
    (
        "UCUM quantity without code",
        _observation(valueQuantity={"value": 5.4, "unit": "mmol/L", "system": UCUM}),
        FhirValueError,
        "Observation.valueQuantity.code",
        "'mmol/L'",
    ),
    (
        "UCUM range bound without code",
        _observation(referenceRange=[{"low": {"value": 1, "system": UCUM}}]),
        FhirValueError,
        "Observation.referenceRange[0].low.code",
        None,
    ),
    ("gender outside value set", _patient(gender="f"), FhirValueError, "Patient.gender", "f"),
    ("birth date not in calendar", _patient(birthDate="1980-02-30"), FhirValueError, "Patient.birthDate", "1980-02-30"),
    ("birth date with time", _patient(birthDate="1980-02-14T10:00:00Z"), FhirValueError, "Patient.birthDate", None),
    (
        "effective month 13",
        _observation(effectiveDateTime="2024-13-01"),
        FhirValueError,
        "Observation.effectiveDateTime",
        "2024-13-01",
    ),
    (
        "effective time without zone",
        _observation(effectiveDateTime="2024-03-05T10:00:00"),
        FhirValueError,
        "Observation.effectiveDateTime",
        "2024-03-05T10:00:00",
    ),
    (
        "period start in 0000",
        _observation(effectivePeriod={"start": "0000-01-01"}),
        FhirValueError,
        "Observation.effectivePeriod.start",
        "0000-01-01",
    ),
    ("issued without time", _observation(issued="2024-03-05"), FhirValueError, "Observation.issued", "2024-03-05"),
    (
        "reference with empty id",
        _observation(subject={"reference": "Patient//1"}),
        FhirValueError,
        "Observation.subject.reference",
        "Patient//1",
    ),
    (
        "reference to unknown type",
        _observation(subject={"reference": "Patinet/1"}),
        FhirValueError,
        "Observation.subject.reference",
        "Patinet/1",
    ),
    (
        "reference to missing contained",
        _observation(subject={"reference": "#nobody"}),
        FhirValueError,
        "Observation.subject.reference",
        "#nobody",
    ),
    (
        "malformed urn:uuid",
        _observation(subject={"reference": "urn:uuid:not-a-uuid"}),
        FhirValueError,
        "Observation.subject.reference",
        "urn:uuid:not-a-uuid",
    ),
    ("unknown element", _observation(colour="red"), FhirStructureError, "Observation.colour", "'red'"),
    (
        "contained resource checked too",
        _observation(contained=[{"resourceType": "Patient", "id": "c1", "gender": "F"}]),
        FhirValueError,
        "Observation.contained[0].gender",
        "F",
    ),
    (
        "bundle entry checked too",
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": _observation(status="fine")}]},
        FhirValueError,
        "Bundle.entry[0].resource.status",
        "fine",
    ),
    (
        "bundle type outside value set",
        {"resourceType": "Bundle", "type": "pile"},
        FhirValueError,
        "Bundle.type",
        "pile",
    ),
]


@pytest.mark.parametrize(
    ("resource", "error", "field", "value"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_each_check_names_field_and_value(
    resource: dict[str, Any], error: type[FhirError], field: str, value: str | None
) -> None:
    # Prepare
    data = json.dumps(resource, ensure_ascii=False).encode("utf-8")

    # Execute
    with pytest.raises(error) as info:
        parse_resource(data)

    # Assert
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    if value is not None:
        assert info.value.value == value
        assert value.strip("'") in str(info.value)


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        "Patient/p1/_history/2",
        "https://fhir.example.org/r4/Patient/p1",
        "urn:uuid:6e2a3b0c-1b1f-4d3b-8f0e-2a7e2c1d9f10",
        "urn:oid:1.2.840.99999.1",
        "#c1",
    ],
)
def test_well_formed_references_pass(reference: str) -> None:
    resource = _observation(
        subject={"reference": reference}, contained=[{"resourceType": "Patient", "id": "c1", "gender": "female"}]
    )
    assert parse_resource(resource).resource_type == "Observation"


@pytest.mark.parametrize("status", ["registered", "preliminary", "final", "amended", "corrected", "cancelled"])
def test_every_observation_status_passes(status: str) -> None:
    assert parse_resource(_observation(status=status)).content()["status"] == status


@pytest.mark.parametrize("gender", ["male", "female", "other", "unknown"])
def test_every_gender_passes(gender: str) -> None:
    assert parse_resource(_patient(gender=gender)).content()["gender"] == gender


@pytest.mark.parametrize("bundle_type", ["searchset", "history", "transaction-response", "batch-response"])
def test_parse_bundle_refuses_non_record_bundles(bundle_type: str) -> None:
    with pytest.raises(FhirValueError) as info:
        parse_bundle({"resourceType": "Bundle", "type": bundle_type})
    assert info.value.field == "Bundle.type"
    assert info.value.value == bundle_type


def test_parse_bundle_refuses_a_non_bundle() -> None:
    with pytest.raises(FhirValueError) as info:
        parse_bundle(_patient())
    assert info.value.field == "resourceType"
