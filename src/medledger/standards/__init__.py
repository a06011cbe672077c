"""Ingestion adapters: clinical data in (FHIR JSON, HL7 v2, DICOM), canonical bytes and hashes out.

Raw records stay in the hospital's vault; what these adapters produce is what the ledger may see or
hash: FHIR resources with a lossless canonical byte form (`fhir`), FHIR resources mapped from HL7 v2
ADT and ORU messages together with the untouched message (`hl7v2`), and DICOM pixel and header hashes
with a de-identified summary (`dicom`).

Errors, each naming the field and the value at fault:

    MedledgerError                      (medledger.core.errors)
    └── StandardsError
        ├── FhirError
        │   ├── FhirSyntaxError         not FHIR JSON: bad UTF-8, duplicate key, NaN, float, lone surrogate
        │   ├── FhirStructureError      rejected by fhir.resources (R4B), or a value of the wrong JSON type
        │   └── FhirValueError          a coded value, date or reference medledger relies on is wrong
        ├── Hl7Error                    an HL7 v2 message ("PID-7: '19801340' is not a date ...")
        └── DicomError                  a DICOM file that is not DICOM, truncated, or unsafe to de-identify
"""

from medledger.standards.dicom import PHI_ATTRIBUTES, DeidAction, DicomIngest, deidentify, ingest_dicom
from medledger.standards.errors import (
    DicomError,
    FhirError,
    FhirStructureError,
    FhirSyntaxError,
    FhirValueError,
    Hl7Error,
    StandardsError,
)
from medledger.standards.exact_json import ExactDecimal
from medledger.standards.fhir import (
    FHIR_VERSION,
    ClinicalSummary,
    FhirResource,
    ModelDivergence,
    canonical_json,
    clinical_summary,
    parse_bundle,
    parse_resource,
)
from medledger.standards.hl7v2 import Hl7Ingest, ingest_hl7

__all__ = [
    "FHIR_VERSION",
    "PHI_ATTRIBUTES",
    "ClinicalSummary",
    "DeidAction",
    "DicomError",
    "DicomIngest",
    "ExactDecimal",
    "FhirError",
    "FhirResource",
    "FhirStructureError",
    "FhirSyntaxError",
    "FhirValueError",
    "Hl7Error",
    "Hl7Ingest",
    "ModelDivergence",
    "StandardsError",
    "canonical_json",
    "clinical_summary",
    "deidentify",
    "ingest_dicom",
    "ingest_hl7",
    "parse_bundle",
    "parse_resource",
]
