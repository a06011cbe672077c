"""FHIR parsing: the canonical form is lossless, checked against the model, and the one medledger hashes.

The golden bytes in test_canonical_bytes_are_exactly_these were written by hand from the rules in
medledger.standards.exact_json (sorted keys, no whitespace, raw UTF-8, numbers as received) and then
confirmed by the implementation, not the other way round.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from medledger.standards import (
    ClinicalSummary,
    ExactDecimal,
    FhirStructureError,
    FhirSyntaxError,
    canonical_json,
    clinical_summary,
    parse_bundle,
    parse_resource,
)
from medledger.standards.exact_json import loads

DATA = Path(__file__).parent / "data"


def _observation(**overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-05T08:30:00+01:00",
    }
    resource.update(overrides)
    return resource


# --- lossless round trip -------------------------------------------------------------------------------


def test_decimals_unicode_and_repetitions_survive_parse_canonical_parse() -> None:
    # Prepare
    original = (DATA / "observation_precision.json").read_bytes()

    # Execute
    first = parse_resource(original)
    second = parse_resource(canonical_json(first))

    # Assert
    assert canonical_json(second) == canonical_json(first)
    canonical = canonical_json(first)
    for token in (b'"value":1.500', b'"value":0.10', b'"value":1e2', b'"value":-0.0'):
        assert token in canonical
    assert b'"value":3.14159265358979323846264338327950288' in canonical
    content: dict[str, Any] = second.content()
    assert content["subject"]["display"] == "Zoë Ångström 王小明"
    assert "Zoë Ångström 王小明".encode() in canonical  # raw UTF-8, not \\u escapes
    assert content["code"]["text"] == "Glukose – nüchtern"
    assert content["note"][0]["text"] == 'Line one\nLine "two"\t😀 \u2028 end'
    assert [identifier["value"] for identifier in content["identifier"]] == ["007", "007", "0042"]
    assert content["effectiveDateTime"] == "2024-03-05T08:30:00.000+01:00"


def test_decimals_are_never_floats() -> None:
    # Execute
    content: dict[str, Any] = parse_resource((DATA / "observation_precision.json").read_bytes()).content()

    # Assert
    value = content["valueQuantity"]["value"]
    assert isinstance(value, ExactDecimal)
    assert str(value) == "1.500"
    assert value == Decimal("1.5")
    low = content["referenceRange"][0]["low"]["value"]
    assert str(low) == "0.10"

    def walk(node: object) -> None:
        assert not isinstance(node, float)
        if isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(content)


def test_the_model_dump_is_lossy_but_the_canonical_form_is_not() -> None:
    """Why the canonical form is built from the original JSON: fhir.resources rounds on the way out."""
    # Execute
    resource = parse_resource((DATA / "observation_precision.json").read_bytes())
    dumped = resource.model.model_dump_json()

    # Assert: the library writes 1.5, 0.1, 100 and drops ".000"; medledger keeps what was received.
    assert '"value":1.5,' in dumped and '"value":0.1,' in dumped and '"value":100,' in dumped
    assert "08:30:00+01:00" in dumped
    assert b'"value":1.500' in resource.canonical
    assert b"08:30:00.000+01:00" in resource.canonical


def test_canonical_bytes_are_exactly_these() -> None:
    # Prepare
    text = '{ "resourceType" : "Patient", "name": [ {"given": ["Zoë", "Ann"], "family": "王"} ], "id": "p1" }'

    # Execute
    canonical = canonical_json(parse_resource(text))

    # Assert
    assert canonical == '{"id":"p1","name":[{"family":"王","given":["Zoë","Ann"]}],"resourceType":"Patient"}'.encode()
    assert parse_resource(text).sha256 == hashlib.sha256(canonical).digest()


def test_key_order_of_the_input_does_not_matter() -> None:
    forward = parse_resource(json.dumps(_observation()))
    backward = parse_resource(json.dumps(dict(reversed(list(_observation().items())))))
    assert canonical_json(forward) == canonical_json(backward)


def test_mapping_input_with_decimals_is_accepted() -> None:
    resource = parse_resource(_observation(valueQuantity={"value": Decimal("5.40"), "unit": "mmol/L"}))
    assert b'"value":5.40' in canonical_json(resource)


def test_canonical_json_of_a_mapping_refuses_floats() -> None:
    with pytest.raises(FhirSyntaxError, match="float"):
        canonical_json(_observation(valueQuantity={"value": 5.4}))


def test_model_divergence_is_recorded_and_the_original_kept() -> None:
    # Prepare: seven fractional digits; Python datetimes hold six
    text = json.dumps(_observation(effectiveDateTime="2024-03-05T08:30:00.1234567+01:00"))

    # Execute
    resource = parse_resource(text)

    # Assert
    assert [(d.path, d.kind) for d in resource.divergences] == [("Observation.effectiveDateTime", "changed")]
    assert b"08:30:00.1234567+01:00" in resource.canonical


def test_no_divergence_for_an_ordinary_resource() -> None:
    assert parse_resource((DATA / "observation_precision.json").read_bytes()).divergences == ()


def test_repr_shows_no_content() -> None:
    resource = parse_resource((DATA / "observation_precision.json").read_bytes())
    assert "Zoë" not in repr(resource)
    assert "precision-1" in repr(resource)


def test_input_may_start_with_a_byte_order_mark() -> None:
    resource = parse_resource(b"\xef\xbb\xbf" + json.dumps(_observation()).encode())
    assert resource.resource_type == "Observation"


# --- syntax the JSON libraries would have let through ----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'{"resourceType": "Patient", "id": "a", "id": "b"}', "duplicate JSON key 'id'"),
        (b'{"resourceType": "Observation", "valueQuantity": {"value": NaN}}', "NaN is not a JSON number"),
        (b'{"resourceType": "Patient", "name": [{"family": "\\ud800"}]}', "lone UTF-16 surrogate"),
        (b'{"resourceType": "Patient", "name": [{"family": "Zo\xeb"}]}', "not UTF-8"),
        (b'{"resourceType": "Patient"', "not JSON"),
        (b"[1, 2]", "is a JSON object"),
        (b"[" * 5000 + b"]" * 5000, "nests deeper"),
    ],
)
def test_syntax_errors(data: bytes, fragment: str) -> None:
    with pytest.raises((FhirSyntaxError, FhirStructureError), match=fragment.replace("(", r"\(")):
        parse_resource(data)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"valueBoolean": "true"}, "Observation.valueBoolean"),
        ({"valueQuantity": {"value": "1.5"}}, "Observation.valueQuantity.value"),
        ({"valueInteger": 1.0}, "Observation.valueInteger"),
        ({"valueInteger": "5"}, "Observation.valueInteger"),
        ({"issued": 1700000000}, "Observation.issued"),
    ],
)
def test_values_of_the_wrong_json_type_are_refused_not_coerced(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(FhirStructureError) as info:
        parse_resource(json.dumps(_observation(**overrides)).encode())
    assert info.value.field == field


# --- bundles -------------------------------------------------------------------------------------------


def test_transaction_bundle_entries_in_order() -> None:
    # Execute
    resources = parse_bundle((DATA / "bundle_transaction.json").read_bytes())

    # Assert
    assert [resource.resource_type for resource in resources] == ["Patient", "Observation"]
    assert b'"value":7.50' in resources[1].canonical
    patient: dict[str, Any] = resources[0].content()
    assert patient["name"][1]["family"] == "王"


@pytest.mark.parametrize("bundle_type", ["collection", "transaction", "batch", "document", "message"])
def test_ingestible_bundle_types(bundle_type: str) -> None:
    bundle = {"resourceType": "Bundle", "type": bundle_type, "entry": [{"resource": _observation()}]}
    assert [r.resource_type for r in parse_bundle(bundle)] == ["Observation"]


# --- clinical summary ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expected_date"),
    [
        (_observation(), "2024-03-05"),
        (_observation(effectiveDateTime=None, effectivePeriod={"start": "2024-02"}), "2024-02"),
        (_observation(effectiveDateTime=None, issued="2024-01-02T03:04:05Z"), "2024-01-02"),
        (_observation(effectiveDateTime="2024-03-05T23:30:00-05:00"), "2024-03-05"),
        (
            {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "code": {"text": "panel"},
                "effectivePeriod": {"start": "2023-12-31T22:00:00Z"},
            },
            "2023-12-31",
        ),
        (
            {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "onsetDateTime": "2019"},
            "2019",
        ),
        (
            {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "recordedDate": "2020-06-01"},
            "2020-06-01",
        ),
        (
            {
                "resourceType": "Procedure",
                "status": "completed",
                "subject": {"reference": "Patient/p1"},
                "performedPeriod": {"start": "2022-05-06T07:08:09+02:00"},
            },
            "2022-05-06",
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": "aspirin"},
                "subject": {"reference": "Patient/p1"},
                "authoredOn": "2021-11-12",
            },
            "2021-11-12",
        ),
        (
            {
                "resourceType": "ImagingStudy",
                "status": "available",
                "subject": {"reference": "Patient/p1"},
                "started": "2004-01-19T07:27:30Z",
            },
            "2004-01-19",
        ),
        (
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                "subject": {"reference": "Patient/p1"},
                "period": {"start": "2024-03-01T10:00:00+01:00"},
            },
            "2024-03-01",
        ),
        ({"resourceType": "Patient", "id": "p1", "birthDate": "1980-02-14"}, None),
    ],
)
def test_clinical_date(resource: dict[str, Any], expected_date: str | None) -> None:
    cleaned = {key: value for key, value in resource.items() if value is not None}
    assert clinical_summary(parse_resource(cleaned)).clinical_date == expected_date


def test_summary_fields() -> None:
    summary = clinical_summary(parse_resource((DATA / "observation_precision.json").read_bytes()))
    assert summary == ClinicalSummary(
        resource_type="Observation",
        resource_id="precision-1",
        clinical_date="2024-03-05",
        category_codes=("laboratory",),
        subject="Patient/zoe",
    )


def test_patient_is_its_own_subject() -> None:
    summary = clinical_summary(parse_resource({"resourceType": "Patient", "id": "p1"}))
    assert summary.subject == "Patient/p1"
    assert summary.clinical_date is None


def test_loads_keeps_number_tokens() -> None:
    assert [str(x) for x in loads(b"[1.50, 1E+2, 0.0000001, -0, 10]")] == ["1.50", "1E+2", "0.0000001", "-0", "10"]  # type: ignore[union-attr]
