"""The errors of the standards layer: every rejection names the field it is about and the bad value.

MedledgerError                      (medledger.core.errors)
└── StandardsError                  incoming clinical data that cannot be ingested
    ├── FhirError                   a FHIR resource or Bundle
    │   ├── FhirSyntaxError         not FHIR JSON: bad UTF-8, duplicate key, NaN, float, lone surrogate
    │   ├── FhirStructureError      fhir.resources (R4B) rejected it, or coerced a value of the wrong JSON type
    │   └── FhirValueError          a coded or formatted value medledger relies on is wrong
    ├── Hl7Error                    an HL7 v2 message (names segment and field, e.g. "PID-7")
    └── DicomError                  a DICOM Part 10 file (names the attribute keyword and tag)
"""

from __future__ import annotations

from medledger.core.errors import MedledgerError

_MAX_SHOWN_VALUE = 80


def show_value(value: object) -> str:
    """A short, quoted rendering of a bad value for an error message."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _MAX_SHOWN_VALUE:
        text = text[: _MAX_SHOWN_VALUE - 3] + "..."
    return repr(text) if isinstance(value, str) else text


class StandardsError(MedledgerError):
    """Incoming clinical data (FHIR, HL7 v2, DICOM) that cannot be ingested as it is.

    `field` names where the fault is ("Observation.status", "PID-7", "PatientName (0010,0010)")
    or is None when the whole input is at fault; `value` is the offending value as text, or None.
    """

    def __init__(self, message: str, *, field: str | None = None, value: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.value = value


class FhirError(StandardsError):
    """A FHIR resource or Bundle that medledger cannot accept."""


class FhirSyntaxError(FhirError):
    """Input that is not FHIR JSON at all (encoding, JSON grammar, duplicate keys, floats)."""


class FhirStructureError(FhirError):
    """A resource fhir.resources rejects, or one whose values it had to coerce from another JSON type."""


class FhirValueError(FhirError):
    """A coded value, date or reference that is outside what FHIR (and medledger) allows."""


class Hl7Error(StandardsError):
    """An HL7 v2 message that cannot be parsed or mapped to FHIR."""


class DicomError(StandardsError):
    """A DICOM file that is not DICOM, is truncated, or cannot be de-identified safely."""
