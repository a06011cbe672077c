"""HL7 v2 ingestion: ADT and ORU messages built with hl7apy, parsed with `hl7`, mapped to FHIR.

Covers exact decimals, non-ASCII names in each supported character set, repetitions, escape
sequences, segment separators, the raw message kept with its hash, and one error per fault, each
naming the segment and field.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import pytest

from medledger.standards import Hl7Error, Hl7Ingest, clinical_summary, ingest_hl7
from medledger.standards.fhir import LOINC_SYSTEM, UCUM_SYSTEM, FhirResource
from tests.standards.hl7_messages import Result, adt_message, oru_message


def _by_type(ingest: Hl7Ingest, resource_type: str) -> list[dict[str, Any]]:
    return [resource.content() for resource in ingest.resources if resource.resource_type == resource_type]


def _only(ingest: Hl7Ingest, resource_type: str) -> dict[str, Any]:
    (content,) = _by_type(ingest, resource_type)
    return content


# --- ADT -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["A01", "A04", "A08"])
def test_adt_maps_to_one_patient(event: str) -> None:
    # Prepare
    message = adt_message(event).encode("utf-8")

    # Execute
    ingest = ingest_hl7(message)

    # Assert
    assert ingest.message_type == f"ADT^{event}"
    assert ingest.control_id == "ADT0001"
    assert ingest.version == "2.5"
    assert [resource.resource_type for resource in ingest.resources] == ["Patient"]


def test_adt_patient_keeps_every_identifier_and_name_in_order() -> None:
    # Execute
    patient = _only(ingest_hl7(adt_message().encode("utf-8")), "Patient")

    # Assert
    assert patient["identifier"] == [
        {
            "value": "00123",
            "system": "urn:oid:1.2.840.99999.1",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "assigner": {"display": "GENHOSP"},
        },
        {
            "value": "999-88-7777",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
            "assigner": {"display": "SSA"},
        },
    ]
    assert patient["name"] == [
        {"use": "official", "family": "Ångström", "given": ["Zoë"], "prefix": ["Dr"]},
        {"use": "usual", "family": "王", "given": ["小明"]},
    ]
    assert patient["birthDate"] == "1980-02-14"
    assert patient["gender"] == "female"
    assert patient["address"] == [
        {
            "line": ["1 Main St", "Apt 2"],
            "city": "Springfield",
            "state": "IL",
            "postalCode": "62701",
            "country": "USA",
            "use": "home",
        }
    ]
    assert patient["telecom"] == [
        {"system": "phone", "value": "+1 (555) 1234567", "use": "home"},
        {"system": "email", "value": "zoe@example.org", "use": "home"},
    ]


@pytest.mark.parametrize(("code", "gender"), [("M", "male"), ("F", "female"), ("O", "other"), ("U", "unknown")])
def test_administrative_sex_maps_to_fhir_gender(code: str, gender: str) -> None:
    patient = _only(ingest_hl7(adt_message(sex=code).encode("utf-8")), "Patient")
    assert patient["gender"] == gender


@pytest.mark.parametrize(
    ("written", "birth_date"), [("1980", "1980"), ("198002", "1980-02"), ("198002141030", "1980-02-14")]
)
def test_birth_date_keeps_the_precision_written(written: str, birth_date: str) -> None:
    patient = _only(ingest_hl7(adt_message(birth=written).encode("utf-8")), "Patient")
    assert patient["birthDate"] == birth_date


def test_the_raw_message_and_its_hash_are_kept() -> None:
    # Prepare
    message = adt_message().encode("utf-8")

    # Execute
    ingest = ingest_hl7(message)

    # Assert
    assert ingest.raw == message
    assert ingest.raw_sha256 == hashlib.sha256(message).digest()
    assert "raw" not in repr(ingest)  # raw bytes carry personal data; repr shows none of it
    assert "Ångström" not in repr(ingest)


def test_the_same_message_always_yields_the_same_resources() -> None:
    message = oru_message().encode("utf-8")
    first, second = ingest_hl7(message), ingest_hl7(message)
    assert [r.canonical for r in first.resources] == [r.canonical for r in second.resources]


# --- ORU -----------------------------------------------------------------------------------------------


def test_oru_yields_patient_report_and_one_observation_per_obx() -> None:
    # Execute
    ingest = ingest_hl7(oru_message().encode("utf-8"))

    # Assert
    assert ingest.message_type == "ORU^R01"
    types = [resource.resource_type for resource in ingest.resources]
    assert types == ["Patient", "DiagnosticReport", "Observation", "Observation", "Observation"]
    report = _only(ingest, "DiagnosticReport")
    observations = _by_type(ingest, "Observation")
    assert report["result"] == [{"reference": f"Observation/{obs['id']}"} for obs in observations]
    assert report["status"] == "final"
    assert report["code"]["coding"][0] == {
        "system": LOINC_SYSTEM,
        "code": "24323-8",
        "display": "Comprehensive metabolic panel",
    }
    patient_reference = f"Patient/{_only(ingest, 'Patient')['id']}"
    assert all(obs["subject"] == {"reference": patient_reference} for obs in observations)
    assert report["subject"] == {"reference": patient_reference}


def test_nm_values_keep_every_digit() -> None:
    # Execute
    ingest = ingest_hl7(oru_message().encode("utf-8"))
    glucose, hemoglobin = (
        r for r in ingest.resources if r.resource_type == "Observation" and b"valueQuantity" in r.canonical
    )

    # Assert
    assert b'"value":5.40' in glucose.canonical
    assert b'"value":7.50' in hemoglobin.canonical
    quantity: dict[str, Any] = glucose.content()["valueQuantity"]  # type: ignore[assignment]
    assert quantity["value"] == Decimal("5.40")
    assert str(quantity["value"]) == "5.40"
    assert quantity == {
        "value": Decimal("5.40"),
        "unit": "mmol/L",
        "system": UCUM_SYSTEM,
        "code": "mmol/L",
    }


def test_reference_range_flags_status_and_times() -> None:
    # Execute
    glucose, hemoglobin, comment = _by_type(ingest_hl7(oru_message().encode("utf-8")), "Observation")

    # Assert
    assert glucose["referenceRange"] == [
        {
            "text": "3.9-5.6",
            "low": {"value": Decimal("3.9"), "unit": "mmol/L", "system": UCUM_SYSTEM, "code": "mmol/L"},
            "high": {"value": Decimal("5.6"), "unit": "mmol/L", "system": UCUM_SYSTEM, "code": "mmol/L"},
        }
    ]
    assert glucose["interpretation"][0]["coding"][0]["code"] == "N"
    assert hemoglobin["interpretation"][0]["coding"][0]["code"] == "L"
    assert glucose["status"] == "final"
    assert glucose["effectiveDateTime"] == "2024-03-05T08:30:00+01:00"  # OBR-7, offset from MSH-7
    assert hemoglobin["effectiveDateTime"] == "2024-03-05T08:45:00+01:00"  # OBX-14 wins
    assert "interpretation" not in comment


def test_escape_sequences_in_text_values_are_resolved() -> None:
    comment = _by_type(ingest_hl7(oru_message().encode("utf-8")), "Observation")[2]
    assert comment["valueString"] == "Sample & hemolysed | repeat ^ recheck"


@pytest.mark.parametrize(("status", "fhir_status"), [("F", "final"), ("C", "corrected"), ("P", "preliminary")])
def test_result_status_maps_to_observation_status(status: str, fhir_status: str) -> None:
    message = oru_message([Result("NM", "2345-7^Glucose^LN", "5.40", status=status)])
    observation = _only(ingest_hl7(message.encode("utf-8")), "Observation")
    assert observation["status"] == fhir_status


@pytest.mark.parametrize(
    ("written", "json_token"),
    [("5.40", b"5.40"), ("+5.40", b"5.40"), ("005.40", b"5.40"), (".5", b"0.5"), ("-0.050", b"-0.050")],
)
def test_nm_normalises_only_what_json_cannot_write(written: str, json_token: bytes) -> None:
    message = oru_message([Result("NM", "2345-7^Glucose^LN", written)])
    observation = next(r for r in ingest_hl7(message.encode("utf-8")).resources if r.resource_type == "Observation")
    assert b'"value":' + json_token + b"}" in observation.canonical


def test_structured_numeric_and_coded_values() -> None:
    # Prepare
    message = oru_message(
        [
            Result("SN", "2345-7^Glucose^LN", "<^2.0", "mmol/L^mmol/L^UCUM"),
            Result("CWE", "883-9^ABO group^LN", "112144000^Blood group A^SCT"),
        ]
    )

    # Execute
    quantity, coded = _by_type(ingest_hl7(message.encode("utf-8")), "Observation")

    # Assert
    assert quantity["valueQuantity"]["comparator"] == "<"
    assert str(quantity["valueQuantity"]["value"]) == "2.0"
    assert coded["valueCodeableConcept"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "112144000", "display": "Blood group A"}
    ]


def test_local_codes_get_a_sender_scoped_system() -> None:
    message = oru_message([Result("NM", "GLU^Glucose^99LAB", "5.40")])
    observation = _only(ingest_hl7(message.encode("utf-8")), "Observation")
    assert observation["code"]["coding"][0]["system"] == "urn:medledger:hl7v2-local:GENHOSP:99LAB"


def test_clinical_summary_of_mapped_observation() -> None:
    observation = next(
        r for r in ingest_hl7(oru_message().encode("utf-8")).resources if r.resource_type == "Observation"
    )
    summary = clinical_summary(observation)
    assert summary.clinical_date == "2024-03-05"
    assert summary.category_codes == ("CH",)
    assert summary.subject is not None and summary.subject.startswith("Patient/")


# --- encodings and framing -----------------------------------------------------------------------------


def _patient_names(ingest: Hl7Ingest) -> list[dict[str, Any]]:
    names: list[dict[str, Any]] = _only(ingest, "Patient")["name"]
    return names


def test_utf8_names_survive() -> None:
    names = _patient_names(ingest_hl7(adt_message().encode("utf-8")))
    assert [name["family"] for name in names] == ["Ångström", "王"]


def test_latin1_names_survive() -> None:
    # Prepare
    message = adt_message(charset="8859/1", names=["Ångström^Zoë"]).encode("iso8859-1")

    # Execute
    names = _patient_names(ingest_hl7(message))

    # Assert
    assert names == [{"family": "Ångström", "given": ["Zoë"]}]


@pytest.mark.parametrize(
    ("charset", "encoding", "escaped"),
    [("UNICODE UTF-8", "utf-8", r"Zo\XC3AB\ "), ("8859/1", "iso8859-1", r"Zo\XEB\ ")],
)
def test_hex_escapes_decode_in_the_declared_character_set(charset: str, encoding: str, escaped: str) -> None:
    # Prepare: hl7apy would escape the escape character, so the hex sequence is put in by text edit
    message = adt_message(charset=charset, names=["Ångström^PLACEHOLDER"]).replace("PLACEHOLDER", escaped.strip())

    # Execute
    names = _patient_names(ingest_hl7(message.encode(encoding)))

    # Assert
    assert names[0]["given"] == ["Zoë"]


def test_text_input_is_accepted() -> None:
    ingest = ingest_hl7(adt_message())
    assert ingest.raw == adt_message().encode("utf-8")


@pytest.mark.parametrize("separator", ["\n", "\r\n", "\r\r"])
def test_segment_separators_lf_and_crlf_are_tolerated(separator: str) -> None:
    # Prepare
    message = oru_message().replace("\r", separator)

    # Execute
    ingest = ingest_hl7(message.encode("utf-8"))

    # Assert
    assert [r.resource_type for r in ingest.resources].count("Observation") == 3
    assert b'"value":5.40' in ingest.resources[2].canonical


def test_mllp_framing_is_tolerated_and_kept_in_raw() -> None:
    framed = b"\x0b" + adt_message().encode("utf-8") + b"\x1c\r"
    ingest = ingest_hl7(framed)
    assert ingest.raw == framed
    assert _only(ingest, "Patient")["gender"] == "female"


# --- errors --------------------------------------------------------------------------------------------


def _with_given_name(escaped: str, charset: str = "UNICODE UTF-8") -> str:
    """An ADT whose given name is `escaped` as written on the wire (hl7apy would escape the backslashes)."""
    return adt_message(charset=charset, names=["Doe^PLACEHOLDER"]).replace("PLACEHOLDER", escaped)


def _error(message: str | bytes) -> Hl7Error:
    with pytest.raises(Hl7Error) as info:
        ingest_hl7(message.encode("utf-8") if isinstance(message, str) else message)
    return info.value


def test_bad_birth_date_names_pid_7() -> None:
    error = _error(adt_message(birth="19801340"))
    assert error.field == "PID-7"
    assert error.value == "19801340"
    assert str(error).startswith("PID-7: '19801340' is not a date")


@pytest.mark.parametrize(
    ("message", "field", "fragment"),
    [
        (b"hello world", None, "must begin with an MSH segment"),
        (b"", None, "must begin with an MSH segment"),
        ("PID|1||123^^^X^MR\rMSH|^~\\&|A", None, "must begin with an MSH segment"),
        ("FHS|^~\\&|A\rMSH|^~\\&|A", None, "batch and file envelopes"),
        (adt_message().replace("ADT^A01^ADT_A01", "ADT^A03^ADT_A03"), "MSH-9", "'ADT^A03' is not supported"),
        (adt_message().replace("|ADT0001|", "||"), "MSH-10", "control id is empty"),
        (adt_message().replace("MSH|^~\\&|", "MSH|^^\\&|"), "MSH-2", "four distinct"),
        (adt_message().replace("UNICODE UTF-8", "KOI8-R"), "MSH-18", "'KOI8-R' is not supported"),
        (adt_message(charset=""), "MSH-18", "is not ASCII"),
        (adt_message().split("\rPID")[0], "PID", "needs a PID segment"),
        (adt_message(ids=[]), "PID-3", "identifier list is empty"),
        (adt_message(ids=["^^^GENHOSP^MR"]), "PID-3.1", "no ID number"),
        (adt_message(sex="Z"), "PID-8", "'Z' is not an administrative sex"),
        (adt_message(birth="1980-02-14"), "PID-7", "is not a date"),
        (adt_message(birth="19800230"), "PID-7", "has day 30"),
        (adt_message(sent_at="2024-03-05"), "MSH-7", "is not a date/time"),
        (adt_message().replace("PV1||I", "pv1||I"), "segment 4", "does not start with a segment id"),
        (adt_message() + "\r" + adt_message(), "segment 5", "a second MSH"),
        (_with_given_name(r"J\Q\n"), "PID-5.2", "not supported"),
        (_with_given_name(r"J\Fn"), "PID-5.2", "unterminated escape"),
        (_with_given_name(r"J\XE9\n", charset=""), "PID-5.2", "not valid ASCII"),
    ],
)
def test_each_fault_names_its_field(message: str | bytes, field: str | None, fragment: str) -> None:
    error = _error(message)
    assert error.field == field
    assert fragment in str(error)
    if field:
        assert str(error).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("results", "field", "fragment"),
    [
        ([Result("NM", "2345-7^Glucose^LN", "abc")], "OBX-5", "'abc' is not a number (NM)"),
        ([Result("NM", "2345-7^Glucose^LN", "5.40", status="Q")], "OBX-11", "'Q' is not an observation result status"),
        ([Result("NM", "2345-7^Glucose^LN", "5.40", status="")], "OBX-11", "status is empty"),
        ([Result("NM", "2345-7^Glucose^LN", "5.40", flag="ZZ")], "OBX-8", "'ZZ' is not an abnormal flag"),
        ([Result("NM", "^Glucose^LN", "5.40")], "OBX-3", "has no code"),
        ([Result("ED", "2345-7^Glucose^LN", "x")], "OBX-2", "'ED' is not supported"),
        ([Result("NM", "2345-7^Glucose^LN", "5.40", observed_at="20241301")], "OBX-14", "is not a date"),
        ([Result("NM", "2345-7^Glucose^LN", "5.40", observed_at="202403051015")], None, ""),
    ],
)
def test_each_result_fault_names_its_field(results: list[Result], field: str | None, fragment: str) -> None:
    message = oru_message(results)
    if field is None:  # control: a time without offset takes MSH-7's offset
        observation = _only(ingest_hl7(message.encode("utf-8")), "Observation")
        assert observation["effectiveDateTime"] == "2024-03-05T10:15:00+01:00"
        return
    error = _error(message)
    assert error.field == field
    assert fragment in str(error)


def test_a_time_without_any_offset_is_refused() -> None:
    error = _error(oru_message(sent_at="20240305101500"))
    assert error.field == "OBR-7"
    assert "no UTC offset" in str(error)


def test_obx_without_obr_is_refused() -> None:
    # Prepare: move the first OBX before the OBR
    segments = oru_message().split("\r")
    obr_index = next(i for i, s in enumerate(segments) if s.startswith("OBR"))
    segments.insert(obr_index, segments.pop(obr_index + 1))

    # Execute
    error = _error("\r".join(segments))

    # Assert
    assert error.field == "OBX"
    assert "without a preceding OBR" in str(error)


def test_oru_without_obr_is_refused() -> None:
    message = "\r".join(s for s in oru_message().split("\r") if not s.startswith(("OBR", "OBX")))
    assert _error(message).field == "OBR"


def test_mapped_resources_are_validated_fhir() -> None:
    ingest = ingest_hl7(oru_message().encode("utf-8"))
    assert all(isinstance(resource, FhirResource) and resource.model is not None for resource in ingest.resources)


def test_refuses_non_message_input() -> None:
    with pytest.raises(Hl7Error):
        ingest_hl7(123)  # type: ignore[arg-type]
