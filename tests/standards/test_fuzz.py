"""Hypothesis fuzzing: whatever the input, the parsers raise only the package's own errors.

Random bytes and text, text shaped like an HL7 message or a FHIR resource, and byte mutations of
real messages and files. A crash with any other exception type is a bug in the adapter.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from medledger.standards import DicomError, FhirError, Hl7Error, ingest_dicom, ingest_hl7, parse_resource
from medledger.standards.exact_json import canonical_bytes, loads
from tests.standards.hl7_messages import adt_message, oru_message

ORU = oru_message().encode("utf-8")
ADT = adt_message().encode("utf-8")
MR_SMALL = Path(str(get_testdata_file("MR_small.dcm"))).read_bytes()
HL7_ALPHABET = st.sampled_from(list("MSHPIDOBXR|^~\\&\r\n0123456789.+-ABCFNSTXZ éü王\x00"))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _accepts_or_refuses_hl7(data: bytes | str) -> None:
    with contextlib.suppress(Hl7Error):
        ingest_hl7(data)


def _accepts_or_refuses_fhir(data: bytes | str | dict[str, Any]) -> None:
    try:
        resource = parse_resource(data)
    except FhirError:
        return
    assert parse_resource(resource.canonical).canonical == resource.canonical


@FUZZ
@given(st.binary(max_size=400))
def test_hl7_random_bytes(data: bytes) -> None:
    _accepts_or_refuses_hl7(data)


@FUZZ
@given(st.text(HL7_ALPHABET, max_size=300))
def test_hl7_text_shaped_like_a_message(tail: str) -> None:
    _accepts_or_refuses_hl7("MSH|^~\\&|" + tail)


@FUZZ
@given(st.integers(0, len(ORU) - 1), st.integers(0, 255), st.integers(0, len(ORU)))
def test_hl7_mutated_oru(position: int, byte: int, cut: int) -> None:
    mutated = bytearray(ORU)
    mutated[position] = byte
    _accepts_or_refuses_hl7(bytes(mutated[:cut]) if cut > 20 else bytes(mutated))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(ADT) - 1), st.sampled_from(list(b"|^~\\&\r\nXx0 ")))), st.booleans())
def test_hl7_mutated_adt_delimiters(edits: list[tuple[int, int]], as_text: bool) -> None:
    mutated = bytearray(ADT)
    for position, byte in edits:
        mutated[position] = byte
    data = bytes(mutated)
    _accepts_or_refuses_hl7(data.decode("utf-8", "replace") if as_text else data)


@FUZZ
@given(st.binary(max_size=300))
def test_fhir_random_bytes(data: bytes) -> None:
    _accepts_or_refuses_fhir(data)


@FUZZ
@given(st.text(max_size=200))
def test_fhir_random_text(data: str) -> None:
    _accepts_or_refuses_fhir(data)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.decimals(allow_nan=False, places=3)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
)
FHIR_KEYS = st.sampled_from(
    [
        "id",
        "status",
        "code",
        "subject",
        "valueQuantity",
        "effectiveDateTime",
        "gender",
        "birthDate",
        "name",
        "identifier",
        "reference",
        "coding",
        "system",
        "value",
        "contained",
        "category",
        "issued",
        "text",
    ]
)


@FUZZ
@given(
    st.sampled_from(["Observation", "Patient", "Bundle", "DiagnosticReport", "Nope", ""]),
    st.dictionaries(FHIR_KEYS, JSON_VALUES, max_size=6),
)
def test_fhir_random_resources(resource_type: str, body: dict[str, Any]) -> None:
    resource = {"resourceType": resource_type, **body}
    _accepts_or_refuses_fhir(resource)
    _accepts_or_refuses_fhir(json.dumps(resource, default=str))


@FUZZ
@given(JSON_VALUES)
def test_exact_json_round_trip(value: Any) -> None:
    try:
        encoded = canonical_bytes(value)
    except FhirError:
        return
    assert canonical_bytes(loads(encoded)) == encoded


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2000), st.integers(0, 255), st.booleans())
def test_dicom_mutated_header(position: int, byte: int, truncate: bool) -> None:
    data = bytearray(MR_SMALL)
    data[position % len(data)] = byte
    with contextlib.suppress(DicomError):
        ingest_dicom(bytes(data[: position + 200]) if truncate else bytes(data))
