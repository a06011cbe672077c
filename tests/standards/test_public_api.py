"""The public surface of medledger.standards and its error tree."""

from __future__ import annotations

import medledger.standards as standards
from medledger.core.errors import MedledgerError
from medledger.standards import (
    DicomError,
    FhirError,
    FhirStructureError,
    FhirSyntaxError,
    FhirValueError,
    Hl7Error,
    StandardsError,
)


def test_all_is_the_public_api() -> None:
    assert sorted(standards.__all__) == [
        "ClinicalSummary",
        "DeidAction",
        "DicomError",
        "DicomIngest",
        "ExactDecimal",
        "FHIR_VERSION",
        "FhirError",
        "FhirResource",
        "FhirStructureError",
        "FhirSyntaxError",
        "FhirValueError",
        "Hl7Error",
        "Hl7Ingest",
        "ModelDivergence",
        "PHI_ATTRIBUTES",
        "StandardsError",
        "canonical_json",
        "clinical_summary",
        "deidentify",
        "ingest_dicom",
        "ingest_hl7",
        "parse_bundle",
        "parse_resource",
    ]
    assert all(hasattr(standards, name) for name in standards.__all__)


def test_error_tree() -> None:
    assert issubclass(StandardsError, MedledgerError)
    for error in (FhirError, Hl7Error, DicomError):
        assert issubclass(error, StandardsError)
    for error in (FhirSyntaxError, FhirStructureError, FhirValueError):
        assert issubclass(error, FhirError)


def test_errors_carry_field_and_value() -> None:
    error = Hl7Error("'19801340' is not a date", field="PID-7", value="19801340")
    assert str(error) == "PID-7: '19801340' is not a date"
    assert (error.field, error.value) == ("PID-7", "19801340")
    assert str(DicomError("not DICOM")) == "not DICOM"


def test_fhir_version_is_r4b() -> None:
    assert standards.FHIR_VERSION == "4.3.0"
