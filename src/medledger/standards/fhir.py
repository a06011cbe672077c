"""FHIR resources as medledger ingests them: validated by fhir.resources, checked, and kept byte-exact.

FHIR version. fhir.resources 8.x ships R5 (5.0.0) as its top-level package and R4B (4.3.0) and STU3 as
sub-packages; it no longer ships R4 (4.0.1). We validate with `fhir.resources.R4B`: R4B is the
R4-compatible release (it changed only the medication-definition, evidence and subscription resources),
so the resources medledger handles (Patient, Observation, DiagnosticReport, Condition, Procedure,
MedicationRequest, Encounter, ImagingStudy, Consent, AuditEvent, Provenance, Claim, Bundle) have the
same shape as in R4 and an R4 instance of them validates unchanged. R5 reshapes several of them
(Consent, Encounter, MedicationRequest, ...) and would reject R4 data.

Lossless rule. The canonical form is built from the ORIGINAL JSON, never from the model: pydantic
turns decimals into floats when it dumps (1.500 -> 1.5, 1e2 -> 100), rewrites date-times
(".000Z" -> "Z"), re-encodes base64 and drops empty arrays, and on input it silently coerces values of
the wrong JSON type ("true" -> true, "1.5" -> 1.5, 1.0 -> 1, an integer -> a date-time). So:
the original is parsed with `exact_json` (numbers kept as written), validated with the R4B model,
and then walked side by side with the model instance. A value the model holds under another JSON type
is refused (FhirStructureError); a value the model dropped, added or changed is recorded as a
`ModelDivergence` and the original is what the canonical bytes keep.

Checks medledger relies on (FhirValueError naming field and value): resourceType known to R4B;
Observation.status and DiagnosticReport.status in their value sets; Observation.code has a coding
with system and code; LOINC codings use exactly "http://loinc.org" and UCUM quantities exactly
"http://unitsofmeasure.org" with a code; gender in male/female/other/unknown; clinical dates and
Patient.birthDate well-formed; references of the form Type/id, absolute URL, #contained, urn:uuid
or urn:oid.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import copy
import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Literal

from fhir.resources import R4B
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

from medledger.core.hashing import Hash32, sha256
from medledger.standards import exact_json
from medledger.standards.errors import FhirStructureError, FhirValueError, show_value
from medledger.standards.exact_json import ExactDecimal, JsonObject, JsonValue

FHIR_VERSION: str = R4B.__fhir_version__
"""The FHIR version resources are validated against ("4.3.0", R4B; see the module docstring)."""

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"

_LOINC_ALIASES = frozenset(
    {"urn:oid:2.16.840.1.113883.6.1", "http://loinc.org/", "https://loinc.org", "https://loinc.org/", "loinc", "ln"}
)
_UCUM_ALIASES = frozenset(
    {"urn:oid:2.16.840.1.113883.6.8", "http://unitsofmeasure.org/", "https://unitsofmeasure.org", "ucum"}
)

OBSERVATION_STATUSES = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
)
"""http://hl7.org/fhir/ValueSet/observation-status (required binding)."""

DIAGNOSTIC_REPORT_STATUSES = frozenset(
    {
        "registered",
        "partial",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "appended",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
"""http://hl7.org/fhir/ValueSet/diagnostic-report-status (required binding)."""

ADMINISTRATIVE_GENDERS = frozenset({"male", "female", "other", "unknown"})
"""http://hl7.org/fhir/ValueSet/administrative-gender (required binding)."""

BUNDLE_TYPES = frozenset(
    {
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
    }
)
INGESTIBLE_BUNDLE_TYPES = frozenset({"collection", "transaction", "batch", "document", "message"})
"""Bundle types whose entries `parse_bundle` ingests; responses, history and search sets are not records."""

_GENDERED_TYPES = frozenset({"Patient", "Practitioner", "RelatedPerson", "Person"})
_ABSTRACT_TYPES = frozenset({"Resource", "DomainResource"})

DateKind = Literal["date", "dateTime", "instant"]

CLINICAL_DATE_ELEMENTS: Mapping[str, tuple[tuple[str, DateKind], ...]] = {
    "Observation": (
        ("effectiveDateTime", "dateTime"),
        ("effectivePeriod.start", "dateTime"),
        ("effectiveInstant", "instant"),
        ("issued", "instant"),
    ),
    "DiagnosticReport": (
        ("effectiveDateTime", "dateTime"),
        ("effectivePeriod.start", "dateTime"),
        ("issued", "instant"),
    ),
    "Condition": (("onsetDateTime", "dateTime"), ("onsetPeriod.start", "dateTime"), ("recordedDate", "dateTime")),
    "Procedure": (("performedDateTime", "dateTime"), ("performedPeriod.start", "dateTime")),
    "MedicationRequest": (("authoredOn", "dateTime"),),
    "ImagingStudy": (("started", "dateTime"),),
    "Encounter": (("period.start", "dateTime"),),
    "Immunization": (("occurrenceDateTime", "dateTime"), ("recorded", "dateTime")),
    "Consent": (("dateTime", "dateTime"),),
    "Claim": (("created", "dateTime"),),
    "AuditEvent": (("recorded", "instant"),),
    "Provenance": (("recorded", "instant"),),
}
"""Where each resource type keeps its clinically relevant date, first present element wins."""


@dataclass(frozen=True, slots=True)
class ModelDivergence:
    """A place where the fhir.resources model does not hold what the original JSON said.

    The canonical bytes always keep the original; divergences are reported, not applied.
    """

    path: str
    """FHIR path of the element, e.g. "Patient.photo[0].data"."""
    kind: Literal["dropped", "added", "changed"]
    """dropped: in the original, not in the model; added: only in the model; changed: both, different."""
    original: str
    """The original value, shortened for display."""
    model: str
    """The model's value, shortened for display."""


@dataclass(frozen=True, slots=True)
class FhirResource:
    """A validated FHIR resource and its canonical bytes, which are what medledger hashes and stores."""

    resource_type: str
    """The resourceType, e.g. "Observation"."""
    canonical: bytes
    """Canonical JSON of the original resource (see `canonical_json`): the authoritative content."""
    model: FHIRAbstractModel = field(compare=False, repr=False)
    """The fhir.resources R4B model, for typed reading only; it may round values (see divergences)."""
    divergences: tuple[ModelDivergence, ...] = field(default=(), compare=False, repr=False)
    """Where the model differs from the original; empty for nearly all resources."""

    @property
    def id(self) -> str | None:
        """The resource's logical id, if it has one."""
        value = getattr(self.model, "id", None)
        return value if isinstance(value, str) else None

    @property
    def sha256(self) -> Hash32:
        """SHA-256 of the canonical bytes."""
        return sha256(self.canonical)

    def content(self) -> JsonObject:
        """A fresh copy of the original JSON tree, decimals as ExactDecimal."""
        value = exact_json.loads(self.canonical)
        assert isinstance(value, dict)
        return value

    def __repr__(self) -> str:
        # Resources carry personal data: a repr shows only what identifies the record, never its content.
        return f"FhirResource(resource_type={self.resource_type!r}, id={self.id!r}, sha256={self.sha256.hex()[:16]}...)"


@dataclass(frozen=True, slots=True)
class ClinicalSummary:
    """The few facts about a resource that the ledger indexes next to its hash."""

    resource_type: str
    """The resourceType."""
    resource_id: str | None
    """The logical id, if any."""
    clinical_date: str | None
    """FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) of the clinical event; a dateTime is cut to its date as written."""
    category_codes: tuple[str, ...]
    """Codes of the resource's category codings in order, without repeats (e.g. ("laboratory",))."""
    subject: str | None
    """Reference to whom the resource is about ("Patient/123"); a Patient's is its own."""


# --- resource types -------------------------------------------------------------------------------


@cache
def resource_class(resource_type: str) -> type[Resource] | None:
    """The R4B model class of a concrete resource type, or None if R4B has no such resource."""
    if resource_type in _ABSTRACT_TYPES or not resource_type.isascii() or not resource_type.isalpha():
        return None
    try:
        klass = R4B.get_fhir_model_class(resource_type)
    except (ValueError, AttributeError, ImportError, TypeError):
        return None
    if not isinstance(klass, type) or not issubclass(klass, Resource) or klass.get_resource_type() != resource_type:
        return None
    return klass


def _require_resource_class(resource_type: object, path: str) -> type[Resource]:
    where = f"{path}.resourceType" if path else "resourceType"
    if not isinstance(resource_type, str):
        raise FhirStructureError(
            f"a resource needs a string resourceType, got {show_value(resource_type)}",
            field=where,
            value=show_value(resource_type),
        )
    klass = resource_class(resource_type)
    if klass is None:
        raise FhirValueError(
            f"{show_value(resource_type)} is not a FHIR {FHIR_VERSION} resource type", field=where, value=resource_type
        )
    return klass


# --- dates ----------------------------------------------------------------------------------------

_DATE_TIME_RE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<tz>Z|[+-](?P<tzh>\d{2}):(?P<tzm>\d{2})))?)?)?"
)


def date_problem(text: str, kind: DateKind) -> str | None:
    """Why `text` is not a valid FHIR `kind` ("date", "dateTime", "instant"), or None if it is."""
    match = _DATE_TIME_RE.fullmatch(text)
    if match is None:
        shapes = {
            "date": "YYYY, YYYY-MM or YYYY-MM-DD",
            "dateTime": "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.f]+zz:zz",
            "instant": "YYYY-MM-DDThh:mm:ss[.f]+zz:zz",
        }
        return f"is not a FHIR {kind} ({shapes[kind]})"
    if kind == "date" and match["hour"] is not None:
        return "is not a FHIR date: a date has no time"
    if kind == "instant" and match["hour"] is None:
        return "is not a FHIR instant: an instant has a time to the second and a time zone"
    year = int(match["year"])
    if year == 0:
        return "has year 0000, which FHIR does not allow"
    if match["month"] is not None and not 1 <= int(match["month"]) <= 12:
        return f"has month {match['month']}"
    if match["day"] is not None:
        last_day = calendar.monthrange(year, int(match["month"]))[1]
        if not 1 <= int(match["day"]) <= last_day:
            return f"has day {match['day']}, but {year}-{match['month']} has {last_day} days"
    if match["hour"] is not None:
        if int(match["hour"]) > 23 or int(match["minute"]) > 59 or int(match["second"]) > 60:
            return "has a time out of range (hh 00-23, mm 00-59, ss 00-60)"
        if match["tzh"] is not None and (int(match["tzh"]) > 14 or int(match["tzm"]) > 59):
            return "has a time zone offset out of range (-14:00 to +14:00)"
    return None


def _check_date(value: object, kind: DateKind, path: str) -> None:
    if not isinstance(value, str):
        raise FhirStructureError(f"a FHIR {kind} is a JSON string", field=path, value=show_value(value))
    problem = date_problem(value, kind)
    if problem is not None:
        raise FhirValueError(f"{show_value(value)} {problem}", field=path, value=value)


# --- rules checked on the original tree, before the model sees it ---------------------------------


def _element(node: Mapping[str, JsonValue], dotted: str) -> JsonValue:
    """The value at a dotted element path of a JSON object, or None."""
    value: JsonValue = dict(node)
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _check_code(value: JsonValue, allowed: frozenset[str], path: str, what: str) -> None:
    if value is None:
        raise FhirValueError(f"is missing; {what} is required (one of {', '.join(sorted(allowed))})", field=path)
    if not isinstance(value, str) or value not in allowed:
        raise FhirValueError(
            f"{show_value(value)} is not {what} (one of {', '.join(sorted(allowed))})",
            field=path,
            value=value if isinstance(value, str) else repr(value),
        )


def _check_observation_code(node: Mapping[str, JsonValue], path: str) -> None:
    code = node.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    if isinstance(codings, list):
        for coding in codings:
            if isinstance(coding, dict) and coding.get("system") and coding.get("code"):
                return
    raise FhirValueError(
        "needs at least one coding with both system and code (medledger indexes observations by coded concept)",
        field=f"{path}.code.coding",
        value=show_value(code),
    )


def _check_resource_rules(node: Mapping[str, JsonValue], path: str) -> None:
    """The medledger rules for one resource and, recursively, its contained resources and Bundle entries."""
    resource_type = node.get("resourceType")
    if resource_type == "Observation":
        _check_code(node.get("status"), OBSERVATION_STATUSES, f"{path}.status", "an observation status")
        _check_observation_code(node, path)
    elif resource_type == "DiagnosticReport":
        _check_code(node.get("status"), DIAGNOSTIC_REPORT_STATUSES, f"{path}.status", "a diagnostic report status")
    elif resource_type == "Bundle":
        _check_code(node.get("type"), BUNDLE_TYPES, f"{path}.type", "a bundle type")
    if resource_type in _GENDERED_TYPES and "gender" in node:
        _check_code(node["gender"], ADMINISTRATIVE_GENDERS, f"{path}.gender", "an administrative gender")
    if resource_type == "Patient" and "birthDate" in node:
        _check_date(node["birthDate"], "date", f"{path}.birthDate")
    if isinstance(resource_type, str):
        for dotted, kind in CLINICAL_DATE_ELEMENTS.get(resource_type, ()):
            value = _element(node, dotted)
            if value is not None:
                _check_date(value, kind, f"{path}.{dotted}")
    contained = node.get("contained")
    if isinstance(contained, list):
        for index, child in enumerate(contained):
            if isinstance(child, dict):
                _require_resource_class(child.get("resourceType"), f"{path}.contained[{index}]")
                _check_resource_rules(child, f"{path}.contained[{index}]")
    entries = node.get("entry") if resource_type == "Bundle" else None
    if isinstance(entries, list):
        for index, entry in enumerate(entries):
            child = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(child, dict):
                entry_path = f"{path}.entry[{index}].resource"
                _require_resource_class(child.get("resourceType"), entry_path)
                _check_resource_rules(child, entry_path)


# --- checks that need the model's types: Coding, Quantity, Reference ------------------------------

_ID = r"[A-Za-z0-9\-.]{1,64}"
_RELATIVE_REFERENCE_RE = re.compile(rf"(?P<type>[A-Za-z]+)/{_ID}(?:/_history/{_ID})?")
_ABSOLUTE_REFERENCE_RE = re.compile(rf"https?://[^\s/]+(?:/[^\s/]+)*?/(?P<type>[A-Za-z]+)/{_ID}(?:/_history/{_ID})?")
_UUID_URN_RE = re.compile(r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_OID_URN_RE = re.compile(r"urn:oid:[0-2](?:\.(?:0|[1-9][0-9]*))+")


def _check_coding(node: Mapping[str, JsonValue], path: str) -> None:
    system = node.get("system")
    if isinstance(system, str) and system != LOINC_SYSTEM and system.lower() in _LOINC_ALIASES:
        raise FhirValueError(
            f"LOINC codings must use the system {LOINC_SYSTEM!r}, not {system!r}", field=f"{path}.system", value=system
        )


def _check_quantity(node: Mapping[str, JsonValue], path: str) -> None:
    system = node.get("system")
    if not isinstance(system, str):
        return
    if system != UCUM_SYSTEM and system.lower() in _UCUM_ALIASES:
        raise FhirValueError(
            f"UCUM quantities must use the system {UCUM_SYSTEM!r}, not {system!r}", field=f"{path}.system", value=system
        )
    if system == UCUM_SYSTEM and not node.get("code"):
        raise FhirValueError(
            f"a quantity with system {UCUM_SYSTEM} needs its UCUM code (unit {show_value(node.get('unit'))})",
            field=f"{path}.code",
            value=show_value(node.get("unit")),
        )


def reference_problem(reference: str, contained_ids: frozenset[str]) -> str | None:
    """Why `reference` is not a well-formed FHIR literal reference, or None if it is."""
    if reference.startswith("#"):
        if reference == "#" or reference[1:] in contained_ids:
            return None
        return "points to no contained resource of this resource"
    if reference.startswith("urn:uuid:"):
        return None if _UUID_URN_RE.fullmatch(reference) else "is not urn:uuid: followed by a UUID"
    if reference.startswith("urn:oid:"):
        return None if _OID_URN_RE.fullmatch(reference) else "is not urn:oid: followed by an OID"
    match = _RELATIVE_REFERENCE_RE.fullmatch(reference) or _ABSOLUTE_REFERENCE_RE.fullmatch(reference)
    if match is None:
        return "is not Type/id, an absolute URL ending in Type/id, #contained-id, urn:uuid: or urn:oid:"
    if resource_class(match["type"]) is None:
        return f"names {match['type']!r}, which is not a FHIR {FHIR_VERSION} resource type"
    return None


def _check_reference(node: Mapping[str, JsonValue], path: str, contained_ids: frozenset[str]) -> None:
    reference = node.get("reference")
    if isinstance(reference, str):
        problem = reference_problem(reference, contained_ids)
        if problem is not None:
            raise FhirValueError(f"{show_value(reference)} {problem}", field=f"{path}.reference", value=reference)


# --- the original tree walked side by side with the model -----------------------------------------


@cache
def _elements_by_json_name(klass: type[FHIRAbstractModel]) -> dict[str, str]:
    return {(info.alias or name): name for name, info in klass.model_fields.items()}


def _json_type(value: JsonValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class _Walk:
    """Compare an original JSON tree with the model fhir.resources built from it."""

    def __init__(self) -> None:
        self.divergences: list[ModelDivergence] = []

    def diverged(
        self, path: str, kind: Literal["dropped", "added", "changed"], original: object, model: object
    ) -> None:
        self.divergences.append(ModelDivergence(path, kind, show_value(original), show_value(model)))

    def wrong_type(self, path: str, expected: str, original: JsonValue) -> FhirStructureError:
        return FhirStructureError(
            f"expected a JSON {expected}, got {_json_type(original)} {show_value(original)} "
            "(fhir.resources would coerce it; FHIR JSON does not)",
            field=path,
            value=show_value(original),
        )

    def node(self, original: JsonValue, model: object, path: str, contained_ids: frozenset[str]) -> None:
        if isinstance(model, FHIRAbstractModel):
            self.model_node(original, model, path, contained_ids)
        elif isinstance(model, list):
            if not isinstance(original, list):
                raise self.wrong_type(path, "array", original)
            for index, (item, model_item) in enumerate(zip(original, model, strict=False)):
                self.node(item, model_item, f"{path}[{index}]", contained_ids)
            for index in range(len(model), len(original)):
                self.diverged(f"{path}[{index}]", "dropped", original[index], None)
            for index in range(len(original), len(model)):
                self.diverged(f"{path}[{index}]", "added", None, model[index])
        elif model is None:
            if original is not None:
                self.diverged(path, "dropped", original, None)
        else:
            self.primitive(original, model, path)

    def model_node(
        self, original: JsonValue, model: FHIRAbstractModel, path: str, contained_ids: frozenset[str]
    ) -> None:
        if not isinstance(original, dict):
            raise self.wrong_type(path, "object", original)
        if isinstance(model, Resource):
            contained = original.get("contained")
            children = contained if isinstance(contained, list) else []
            contained_ids = frozenset(
                str(child["id"]) for child in children if isinstance(child, dict) and "id" in child
            )
        elif isinstance(model, Coding):
            _check_coding(original, path)
        elif isinstance(model, Quantity):
            _check_quantity(original, path)
        elif isinstance(model, Reference):
            _check_reference(original, path, contained_ids)
        names = _elements_by_json_name(type(model))
        for key, value in original.items():
            if key == "resourceType" and isinstance(model, Resource):
                if value != model.get_resource_type():
                    self.diverged(f"{path}.resourceType", "changed", value, model.get_resource_type())
                continue
            name = names.get(key)
            if name is None:
                self.diverged(f"{path}.{key}", "dropped", value, None)
                continue
            self.node(value, getattr(model, name), f"{path}.{key}", contained_ids)
        for key, name in names.items():
            model_value = getattr(model, name)
            if key not in original and model_value is not None and model_value != []:
                self.diverged(f"{path}.{key}", "added", None, model_value)

    def primitive(self, original: JsonValue, model: object, path: str) -> None:
        if isinstance(model, bool):
            if not isinstance(original, bool):
                raise self.wrong_type(path, "boolean", original)
            if original != model:
                self.diverged(path, "changed", original, model)
        elif isinstance(model, int):
            if isinstance(original, bool) or not isinstance(original, int):
                raise self.wrong_type(path, "integer", original)
            if original != model:
                self.diverged(path, "changed", original, model)
        elif isinstance(model, Decimal):
            if isinstance(original, bool) or not isinstance(original, (int, Decimal)):
                raise self.wrong_type(path, "number", original)
            if Decimal(original) != model:
                self.diverged(path, "changed", original, model)
        elif not isinstance(original, str):
            raise self.wrong_type(path, "string", original)
        elif not _same_primitive(original, model):
            self.diverged(path, "changed", original, model)


_FRACTION_RE = re.compile(r"\.([0-9]+)")


def _same_primitive(original: str, model: object) -> bool:
    """Whether the model's value of a JSON string element means the same as the string."""
    if isinstance(model, str):
        return original == model
    fraction = _FRACTION_RE.search(original)
    if isinstance(model, (dt.datetime, dt.time)) and fraction and fraction[1][6:].strip("0"):
        return False  # Python keeps microseconds: digits past the sixth were cut off
    try:
        if isinstance(model, dt.datetime):
            return dt.datetime.fromisoformat(original) == model
        if isinstance(model, dt.date):
            return dt.date.fromisoformat(original) == model
        if isinstance(model, dt.time):
            return dt.time.fromisoformat(original) == model
        if isinstance(model, bytes):
            return base64.b64decode(original) == model
    except (ValueError, binascii.Error):
        return False
    if isinstance(model, uuid.UUID):
        return original.lower() == f"urn:uuid:{model}"
    return original == str(model)


# --- parsing --------------------------------------------------------------------------------------


def _structure_error(exc: ValidationError, resource_type: str) -> FhirStructureError:
    errors = exc.errors()
    first = errors[0]
    path = resource_type
    for part in first["loc"]:
        if part == "resource_type":
            part = "resourceType"
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    message = " ".join(str(first["msg"]).split())
    if first["type"] == "extra_forbidden":
        message = f"is not an element of FHIR {FHIR_VERSION} {resource_type} here"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return FhirStructureError(
        f"{message} (got {show_value(first.get('input'))}){more}", field=path, value=show_value(first.get("input"))
    )


def _load_tree(data: bytes | bytearray | memoryview | str | Mapping[str, object]) -> JsonValue:
    if isinstance(data, Mapping):
        return exact_json.from_python(data)
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        return exact_json.loads(data)
    raise FhirStructureError(f"expected JSON bytes, text or a mapping, got {type(data).__name__}")


def parse_resource(data: bytes | str | Mapping[str, object]) -> FhirResource:
    """Parse, validate and check one FHIR resource; keep its original content as canonical bytes.

    `data` is JSON bytes (UTF-8), JSON text, or an already-parsed mapping (which must hold no float:
    parse it with `parse_float=decimal.Decimal`). Raises a FhirError subclass naming field and value.
    """
    tree = _load_tree(data)
    if not isinstance(tree, dict):
        raise FhirStructureError(f"a FHIR resource is a JSON object, got {_json_type(tree)}")
    klass = _require_resource_class(tree.get("resourceType"), "")
    resource_type = klass.get_resource_type()
    _check_resource_rules(tree, resource_type)
    try:
        model = klass.model_validate(copy.deepcopy(tree))
    except ValidationError as exc:
        raise _structure_error(exc, resource_type) from exc
    except (ValueError, TypeError) as exc:
        raise FhirStructureError(f"fhir.resources rejected the resource: {exc}", field=resource_type) from exc
    walk = _Walk()
    walk.node(tree, model, resource_type, frozenset())
    return FhirResource(
        resource_type=resource_type,
        canonical=exact_json.canonical_bytes(tree),
        model=model,
        divergences=tuple(walk.divergences),
    )


def parse_bundle(data: bytes | str | Mapping[str, object]) -> list[FhirResource]:
    """The entry resources of a Bundle of type collection, transaction, batch, document or message, in order.

    The Bundle itself is validated and checked as a whole first; entries without a resource (e.g. a
    transaction DELETE) are skipped.
    """
    bundle = parse_resource(data)
    if bundle.resource_type != "Bundle":
        raise FhirValueError(
            f"expected a Bundle, got {bundle.resource_type!r}", field="resourceType", value=bundle.resource_type
        )
    content = bundle.content()
    bundle_type = content.get("type")
    if bundle_type not in INGESTIBLE_BUNDLE_TYPES:
        raise FhirValueError(
            f"{show_value(bundle_type)} bundles hold no records to ingest "
            f"(one of {', '.join(sorted(INGESTIBLE_BUNDLE_TYPES))})",
            field="Bundle.type",
            value=str(bundle_type),
        )
    resources: list[FhirResource] = []
    entries = content.get("entry")
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            continue
        if not isinstance(resource, dict):
            raise FhirStructureError("an entry resource is a JSON object", field=f"Bundle.entry[{index}].resource")
        resources.append(parse_resource(resource))
    return resources


def canonical_json(resource: FhirResource | Mapping[str, object]) -> bytes:
    """The canonical bytes of a resource: sorted keys, no whitespace, UTF-8, decimals as received, no floats.

    For a FhirResource these are the bytes made from its original JSON at parse time. A mapping is
    encoded as it is (it must hold no float); it is not validated here.
    """
    if isinstance(resource, FhirResource):
        return resource.canonical
    return exact_json.canonical_bytes(exact_json.from_python(resource))


# --- summary --------------------------------------------------------------------------------------


def _date_part(value: JsonValue) -> str | None:
    if not isinstance(value, str):
        return None
    return value.split("T", 1)[0]


def _category_codes(category: JsonValue) -> tuple[str, ...]:
    concepts = category if isinstance(category, list) else [category]
    codes: list[str] = []
    for concept in concepts:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            code = coding.get("code") if isinstance(coding, dict) else None
            if isinstance(code, str) and code not in codes:
                codes.append(code)
    return tuple(codes)


def _subject(content: JsonObject) -> str | None:
    if content.get("resourceType") == "Patient":
        resource_id = content.get("id")
        return f"Patient/{resource_id}" if isinstance(resource_id, str) else None
    for key in ("subject", "patient"):
        reference = _element(content, f"{key}.reference")
        if isinstance(reference, str):
            return reference
    return None


def clinical_summary(resource: FhirResource) -> ClinicalSummary:
    """The ledger-indexed facts of a resource: type, id, clinical date, category codes, subject."""
    content = resource.content()
    clinical_date = None
    for dotted, _kind in CLINICAL_DATE_ELEMENTS.get(resource.resource_type, ()):
        clinical_date = _date_part(_element(content, dotted))
        if clinical_date is not None:
            break
    resource_id = content.get("id")
    return ClinicalSummary(
        resource_type=resource.resource_type,
        resource_id=resource_id if isinstance(resource_id, str) else None,
        clinical_date=clinical_date,
        category_codes=_category_codes(content.get("category")),
        subject=_subject(content),
    )


__all__ = [
    "ADMINISTRATIVE_GENDERS",
    "CLINICAL_DATE_ELEMENTS",
    "FHIR_VERSION",
    "LOINC_SYSTEM",
    "OBSERVATION_STATUSES",
    "UCUM_SYSTEM",
    "ClinicalSummary",
    "ExactDecimal",
    "FhirResource",
    "ModelDivergence",
    "canonical_json",
    "clinical_summary",
    "parse_bundle",
    "parse_resource",
    "resource_class",
]
