"""HL7 v2 ADT (A01, A04, A08) and ORU^R01 messages turned into FHIR resources, with nothing lost.

The `hl7` package splits the message into segments, fields, repetitions, components and
subcomponents; everything else is done here, because `hl7` does not do it the way ingestion needs:
its unescape reads \\X..\\ hex as one Latin-1 character per byte (so UTF-8 names come out garbled),
drops escape sequences it does not know without a word, and it only splits segments on CR. So this
module decodes the bytes with the character set MSH-18 declares (default ASCII, "8859/n" Latin,
"UNICODE UTF-8"), accepts CR, LF or CRLF between segments (and MLLP framing), and unescapes
\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh..\\ (hex bytes in the declared character set) and the formatting
sequences itself, refusing any it does not understand.

Mapping (HL7 v2-to-FHIR in spirit, only what medledger uses): ADT -> Patient (PID-3 identifiers with
assigning authority and type, PID-5 names, PID-7 birth date, PID-8 gender, PID-11 addresses,
PID-13/14 phones); ORU^R01 -> the Patient of each PID, one DiagnosticReport per OBR and one Observation
per OBX (code OBX-3, value by OBX-2, units OBX-6, range OBX-7, flags OBX-8, status OBX-11, time OBX-14
or OBR-7). NM values keep their digits exactly ("7.50" stays 7.50); only what JSON cannot write is
normalised (a leading "+", leading zeros, a trailing "."), never the precision.

Nothing is lost: `Hl7Ingest` carries the raw bytes exactly as received and their SHA-256, so every
field the mapping does not use (PV1, NTE, Z-segments, ...) stays with the record. Resource ids are
derived from that hash, so the same message always yields the same resources.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import hl7

from medledger.core.hashing import Hash32, sha256
from medledger.standards.errors import FhirError, Hl7Error, show_value
from medledger.standards.exact_json import ExactDecimal, JsonObject, JsonValue
from medledger.standards.fhir import LOINC_SYSTEM, UCUM_SYSTEM, FhirResource, date_problem, parse_resource

SUPPORTED_MESSAGE_TYPES = frozenset({"ADT^A01", "ADT^A04", "ADT^A08", "ORU^R01"})

CHARACTER_SETS: Mapping[str, str] = {
    "": "ascii",
    "ASCII": "ascii",
    "8859/1": "iso8859-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}
"""MSH-18 values (HL7 table 0211) this module decodes, and their Python codecs. Each keeps the
delimiters' bytes unambiguous; multi-byte sets whose trail bytes can look like '|' or '\\' are refused."""

CODING_SYSTEMS: Mapping[str, str] = {
    "LN": LOINC_SYSTEM,
    "SCT": "http://snomed.info/sct",
    "UCUM": UCUM_SYSTEM,
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
}
"""HL7 table 0396 coding-system names and their FHIR system URIs. "HL7nnnn" maps to the v2 table
http://terminology.hl7.org/CodeSystem/v2-nnnn; any other name is local to the sender and maps to
LOCAL_SYSTEM_PREFIX + <MSH-4 sending facility> + ":" + <name>."""

LOCAL_SYSTEM_PREFIX = "urn:medledger:hl7v2-local:"

ADMINISTRATIVE_SEX: Mapping[str, str] = {
    "M": "male",
    "F": "female",
    "O": "other",
    "U": "unknown",
    "A": "other",
    "N": "unknown",
}
"""HL7 table 0001 -> FHIR administrative-gender (A ambiguous -> other, N not applicable -> unknown)."""

OBSERVATION_RESULT_STATUS: Mapping[str, str] = {
    "F": "final",
    "C": "corrected",
    "P": "preliminary",
    "R": "preliminary",
    "A": "amended",
    "U": "final",
    "I": "registered",
    "D": "entered-in-error",
    "W": "entered-in-error",
    "X": "cancelled",
}
"""HL7 table 0085 (OBX-11) -> FHIR observation-status."""

REPORT_RESULT_STATUS: Mapping[str, str] = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "R": "preliminary",
    "C": "corrected",
    "F": "final",
    "X": "cancelled",
}
"""HL7 table 0123 (OBR-25) -> FHIR diagnostic-report-status; an empty OBR-25 maps to "unknown"."""

INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ABNORMAL_FLAGS = frozenset(
    {"L", "H", "LL", "HH", "LU", "HU", "<", ">", "N", "A", "AA", "U", "D", "B", "W", "S", "R", "I", "MS", "VS"}
    | {"NEG", "POS", "IND", "DET", "ND", "AC", "RR", "QCF", "TOX", "CAR", "EX", "HX", "LX", "NR", "E", "IE", "SDD"}
)
"""HL7 table 0078 (OBX-8) flags; each is also a code of the v3 ObservationInterpretation system."""

_NAME_USE: Mapping[str, str] = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "S": "anonymous"}
_ADDRESS_USE: Mapping[str, tuple[str, str]] = {
    "H": ("use", "home"),
    "B": ("use", "work"),
    "O": ("use", "work"),
    "C": ("use", "temp"),
    "BA": ("use", "old"),
    "M": ("type", "postal"),
}
_TELECOM_SYSTEM: Mapping[str, str] = {
    "PH": "phone",
    "CP": "phone",
    "FX": "fax",
    "BP": "pager",
    "INTERNET": "email",
    "X.400": "email",
    "MD": "other",
    "TDD": "other",
    "TTY": "other",
}
_SEGMENT_ID_RE = re.compile(r"[A-Z][A-Z0-9]{2}")
_NM_RE = re.compile(r"(?P<sign>[+-])?(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?")
_DTM_RE = re.compile(
    r"(?P<year>[0-9]{4})(?:(?P<month>[0-9]{2})(?:(?P<day>[0-9]{2})(?:(?P<hour>[0-9]{2})(?:(?P<minute>[0-9]{2})"
    r"(?:(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,4}))?)?)?)?)?)?(?P<tz>[+-][0-9]{4})?"
)
_RANGE_RE = re.compile(r"\s*(?P<low>-?[0-9]+(?:\.[0-9]+)?)\s*-\s*(?P<high>-?[0-9]+(?:\.[0-9]+)?)\s*")
_OID_RE = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")
_HL7_NULL = '""'


@dataclass(frozen=True, slots=True)
class Hl7Ingest:
    """One HL7 v2 message as ingested: the FHIR resources mapped from it and the message itself."""

    message_type: str
    """MSH-9 message code and trigger event, e.g. "ORU^R01"."""
    control_id: str
    """MSH-10 message control id."""
    version: str
    """MSH-12 version id, e.g. "2.5"."""
    character_set: str
    """MSH-18 as declared ("" when absent, meaning ASCII)."""
    raw: bytes = field(repr=False)
    """The message bytes exactly as received (MLLP framing included if it was there)."""
    raw_sha256: Hash32 = field(repr=False)
    """SHA-256 of `raw`."""
    resources: tuple[FhirResource, ...]
    """Patient(s), then for each OBR its DiagnosticReport followed by its Observations."""


@dataclass(frozen=True, slots=True)
class _Delimiters:
    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str


Subcomponents = tuple[str, ...]
Components = tuple[Subcomponents, ...]
Repetitions = tuple[Components, ...]


@dataclass(frozen=True, slots=True)
class _Reader:
    """What reading a value needs: the delimiters and the declared character set."""

    delimiters: _Delimiters
    codec: str
    character_set: str

    def unescape(self, text: str, where: str) -> str:
        """Resolve HL7 escape sequences; refuse unterminated or unknown ones (they would silently vanish)."""
        esc = self.delimiters.escape
        if esc not in text:
            return text
        out: list[str] = []
        index = 0
        while index < len(text):
            char = text[index]
            if char != esc:
                out.append(char)
                index += 1
                continue
            end = text.find(esc, index + 1)
            if end < 0:
                raise Hl7Error(
                    f"unterminated escape sequence {show_value(text[index : index + 16])}", field=where, value=text
                )
            out.append(self._escape_sequence(text[index + 1 : end], where))
            index = end + 1
        return "".join(out)

    def _escape_sequence(self, sequence: str, where: str) -> str:
        delimiters = self.delimiters
        simple = {
            "F": delimiters.field,
            "S": delimiters.component,
            "T": delimiters.subcomponent,
            "R": delimiters.repetition,
            "E": delimiters.escape,
        }
        if sequence in simple:
            return simple[sequence]
        if sequence.startswith("X") and len(sequence) > 1:
            return self._hex(sequence[1:], where)
        if sequence in ("H", "N") or sequence.startswith((".fi", ".nf", ".in", ".ti", ".sk", ".ce")):
            return ""  # highlighting and layout only; the raw message keeps them
        if sequence == ".br":
            return "\n"
        if sequence.startswith(".sp"):
            count = sequence[3:].strip().lstrip("+")
            return "\n" * min(int(count), 99) if count.isdigit() else "\n"
        shown = f"{delimiters.escape}{sequence}{delimiters.escape}"
        raise Hl7Error(
            f"escape sequence {shown!r} is not supported (F, S, T, R, E, Xhh.., H, N, .br, .sp)",
            field=where,
            value=shown,
        )

    def _hex(self, digits: str, where: str) -> str:
        try:
            data = bytes.fromhex(digits)
        except ValueError as exc:
            raise Hl7Error(f"hex escape \\X{digits}\\ is not an even number of hex digits", field=where) from exc
        try:
            return data.decode(self.codec)
        except UnicodeDecodeError as exc:
            raise Hl7Error(
                f"hex escape \\X{digits}\\ is not valid {self.character_set or 'ASCII'} text "
                "(the character set MSH-18 declares)",
                field=where,
                value=digits,
            ) from exc


@dataclass(frozen=True, slots=True)
class _Repetition:
    """One repetition of a field; `get` reads a component (1-based) unescaped, HL7 null as empty."""

    components: Components
    where: str
    reader: _Reader

    def get(self, component: int = 1, subcomponent: int = 1) -> str:
        if component > len(self.components):
            return ""
        subcomponents = self.components[component - 1]
        if subcomponent > len(subcomponents):
            return ""
        value = self.reader.unescape(subcomponents[subcomponent - 1], f"{self.where}.{component}")
        return "" if value == _HL7_NULL else value

    def text(self) -> str:
        """The whole repetition as text, with component and subcomponent delimiters put back."""
        delimiters = self.reader.delimiters
        return delimiters.component.join(
            delimiters.subcomponent.join(self.reader.unescape(part, self.where) for part in subs)
            for subs in self.components
        )

    def is_empty(self) -> bool:
        return all(part in ("", _HL7_NULL) for subs in self.components for part in subs)


@dataclass(frozen=True, slots=True)
class _Segment:
    name: str
    position: int
    """1-based position of the segment in the message."""
    fields: tuple[Repetitions, ...]
    """fields[n] is field n (fields[0] the segment id), still escaped."""
    reader: _Reader

    def label(self, number: int) -> str:
        return f"{self.name}-{number}"

    def error(self, number: int, message: str, value: str | None = None) -> Hl7Error:
        return Hl7Error(f"{message} (segment {self.position})", field=self.label(number), value=value)

    def repetitions(self, number: int) -> list[_Repetition]:
        if number >= len(self.fields):
            return []
        reps = self.fields[number]
        label = self.label(number)
        return [
            _Repetition(components, f"{label}[{index + 1}]" if len(reps) > 1 else label, self.reader)
            for index, components in enumerate(reps)
        ]

    def first(self, number: int) -> _Repetition:
        reps = self.repetitions(number)
        return reps[0] if reps else _Repetition((), self.label(number), self.reader)

    def value(self, number: int, component: int = 1) -> str:
        return self.first(number).get(component)


# --- reading the message ----------------------------------------------------------------------------


def _strip_framing(data: bytes) -> bytes:
    body = data.strip(b" \t\r\n")
    if body.startswith(b"\x0b"):
        body = body[1:]
    end = body.find(b"\x1c")
    if end >= 0:
        body = body[:end]
    return body.strip(b" \t\r\n")


def _delimiters(msh_line: str) -> _Delimiters:
    if len(msh_line) < 8:
        raise Hl7Error("MSH segment is too short to hold its delimiters", field="MSH-2", value=msh_line)
    field_separator = msh_line[3]
    end = msh_line.find(field_separator, 4)
    encoding = msh_line[4:end] if end >= 0 else msh_line[4:]
    chars = field_separator + encoding[:4]
    if len(encoding) not in (4, 5) or len(set(chars)) != 5 or any(c.isalnum() or c.isspace() for c in chars):
        raise Hl7Error(
            f"encoding characters {encoding!r} (after field separator {field_separator!r}) must be four distinct "
            "non-alphanumeric characters, e.g. '^~\\&'",
            field="MSH-2",
            value=encoding,
        )
    return _Delimiters(
        field=field_separator,
        component=encoding[0],
        repetition=encoding[1],
        escape=encoding[2],
        subcomponent=encoding[3],
    )


def _declared_character_set(msh_line: str, delimiters: _Delimiters) -> tuple[str, str]:
    parts = msh_line.split(delimiters.field)
    declared = parts[17].split(delimiters.repetition)[0].strip() if len(parts) > 17 else ""
    codec = CHARACTER_SETS.get(declared.upper())
    if codec is None:
        raise Hl7Error(
            f"character set {declared!r} is not supported (one of ASCII, 8859/1-9, 8859/15, UNICODE UTF-8)",
            field="MSH-18",
            value=declared,
        )
    return declared, codec


def _decode(body: bytes, codec: str, declared: str) -> str:
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        raise Hl7Error(
            f"byte 0x{body[exc.start]:02x} at offset {exc.start} is not {declared or 'ASCII'} "
            f"(the character set MSH-18 declares{'' if declared else ' by leaving it empty'}); "
            "declare the set the message is written in, e.g. 'UNICODE UTF-8' or '8859/1'",
            field="MSH-18",
            value=declared,
        ) from exc


def _field_tree(node: Any) -> Repetitions:
    """hl7's Field as repetitions of components of subcomponents (hl7 nests only where delimiters were)."""
    if isinstance(node, str):
        return (((node,),),)
    items = list(node)
    if all(isinstance(item, str) for item in items):
        return ((("".join(items),),),)
    return tuple(_repetition_tree(item) for item in items)


def _repetition_tree(node: Any) -> Components:
    if isinstance(node, str):
        return ((node,),)
    return tuple((part,) if isinstance(part, str) else tuple(str(sub) for sub in part) for part in node)


def _read_segments(text: str, reader: _Reader) -> list[_Segment]:
    lines = [line for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if line.strip()]
    separator = reader.delimiters.field
    for position, line in enumerate(lines, start=1):
        name = line[:3]
        if not _SEGMENT_ID_RE.fullmatch(name) or (len(line) > 3 and line[3] != separator):
            raise Hl7Error(
                f"{show_value(line[:20])} does not start with a segment id (three capitals/digits) and "
                f"the field separator {separator!r}",
                field=f"segment {position}",
                value=line[:20],
            )
        if name == "MSH" and position > 1:
            raise Hl7Error("a second MSH: pass one message at a time", field=f"segment {position}")
    try:
        message = hl7.parse("\r".join(lines))
    except Exception as exc:  # hl7 raises assorted exceptions for text it cannot split
        raise Hl7Error(f"hl7 could not split the message: {exc}") from exc
    segments: list[_Segment] = []
    for position, segment in enumerate(message, start=1):
        name = str(segment[0][0]) if isinstance(segment[0], list) else str(segment[0])
        if name == "MSH":
            fields: list[Repetitions] = [
                (((name,),),),
                (((reader.delimiters.field,),),),
                (((str(segment[2][0]) if len(segment) > 2 else "",),),),
            ]
            fields += [_field_tree(item) for item in list(segment)[3:]]
        else:
            fields = [(((name,),),)] + [_field_tree(item) for item in list(segment)[1:]]
        segments.append(_Segment(name, position, tuple(fields), reader))
    return segments


# --- values -----------------------------------------------------------------------------------------


def _decimal(text: str, segment: _Segment, number: int) -> ExactDecimal:
    """An NM value as a JSON number token with every digit kept."""
    stripped = text.strip()
    match = _NM_RE.fullmatch(stripped)
    if match is None or not (match["int"] or match["frac"]):
        raise segment.error(number, f"{stripped!r} is not a number (NM)", stripped)
    integer = match["int"].lstrip("0") or "0"
    fraction = f".{match['frac']}" if match["frac"] else ""
    return ExactDecimal(("-" if match["sign"] == "-" else "") + integer + fraction)


def _utc_offset(text: str | None) -> str | None:
    return None if text is None else f"{text[:3]}:{text[3:]}"


def _fhir_date(text: str, segment: _Segment, number: int, *, date_only: bool, default_offset: str | None) -> str:
    """HL7 DT/DTM -> FHIR date (date_only) or dateTime; a time without offset takes MSH-7's offset."""
    match = _DTM_RE.fullmatch(text.strip())
    if match is None:
        raise segment.error(number, f"{text!r} is not a date", text)
    date = match["year"] + "".join(f"-{match[part]}" for part in ("month", "day") if match[part] is not None)
    result = date
    if match["hour"] is not None and not date_only:
        offset = _utc_offset(match["tz"]) or default_offset
        if offset is None:
            raise segment.error(
                number,
                f"{text!r} has a time but no UTC offset and MSH-7 gives none; FHIR needs one (add e.g. +0100)",
                text,
            )
        fraction = f".{match['fraction']}" if match["fraction"] else ""
        seconds = f"{match['second'] or '00'}{fraction}"
        result = f"{date}T{match['hour']}:{match['minute'] or '00'}:{seconds}{offset}"
    problem = date_problem(result, "date" if "T" not in result else "dateTime")
    if problem is not None:
        raise segment.error(number, f"{text!r} is not a date ({problem.removeprefix('is not a FHIR dateTime ')})", text)
    return result


# --- mapping ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Mapping:
    """State while mapping one message: ids, the sender's facility and default UTC offset."""

    id_prefix: str
    facility: str
    default_offset: str | None
    resources: list[tuple[JsonObject, str]] = field(default_factory=list)
    """(resource, where it came from) in output order."""

    def coding_system(self, name: str) -> str:
        upper = name.upper()
        if upper in CODING_SYSTEMS:
            return CODING_SYSTEMS[upper]
        if upper.startswith("HL7") and upper[3:].isdigit():
            return f"http://terminology.hl7.org/CodeSystem/v2-{upper[3:]}"
        return f"{LOCAL_SYSTEM_PREFIX}{quote(self.facility or 'unknown', safe='')}:{quote(name or 'L', safe='')}"

    def concept(self, rep: _Repetition) -> JsonObject:
        """CE/CWE -> CodeableConcept: both triples become codings, CWE.9 (or the first display) the text."""
        codings: list[JsonValue] = []
        for offset in (0, 3):
            code, display, system = rep.get(1 + offset), rep.get(2 + offset), rep.get(3 + offset)
            if code:
                coding: JsonObject = {"system": self.coding_system(system), "code": code}
                if display:
                    coding["display"] = display
                codings.append(coding)
        concept: JsonObject = {}
        if codings:
            concept["coding"] = codings
        text = rep.get(9) or rep.get(2)
        if text:
            concept["text"] = text
        return concept

    def patient(self, pid: _Segment, number: int) -> str:
        patient_id = f"{self.id_prefix}-pid{number}"
        resource: JsonObject = {"resourceType": "Patient", "id": patient_id}
        identifiers = [self.identifier(pid, rep) for rep in pid.repetitions(3) if not rep.is_empty()]
        if not identifiers:
            raise pid.error(3, "the patient identifier list is empty")
        resource["identifier"] = identifiers  # type: ignore[assignment]
        names = [name for rep in pid.repetitions(5) if (name := self.human_name(rep))]
        if names:
            resource["name"] = names  # type: ignore[assignment]
        birth = pid.value(7)
        if birth:
            resource["birthDate"] = _fhir_date(birth, pid, 7, date_only=True, default_offset=None)
        sex = pid.value(8)
        if sex:
            if sex.upper() not in ADMINISTRATIVE_SEX:
                raise pid.error(8, f"{sex!r} is not an administrative sex (M, F, O, U, A, N)", sex)
            resource["gender"] = ADMINISTRATIVE_SEX[sex.upper()]
        addresses = [address for rep in pid.repetitions(11) if (address := self.address(rep))]
        if addresses:
            resource["address"] = addresses  # type: ignore[assignment]
        telecom = [point for rep in pid.repetitions(13) if (point := self.contact_point(rep, "home"))]
        telecom += [point for rep in pid.repetitions(14) if (point := self.contact_point(rep, "work"))]
        if telecom:
            resource["telecom"] = telecom  # type: ignore[assignment]
        self.resources.append((resource, f"PID (segment {pid.position})"))
        return f"Patient/{patient_id}"

    def identifier(self, pid: _Segment, rep: _Repetition) -> JsonObject:
        value = rep.get(1)
        if not value:
            raise Hl7Error(f"identifier has no ID number (CX.1) (segment {pid.position})", field=f"{rep.where}.1")
        identifier: JsonObject = {"value": value}
        namespace, universal, universal_type = rep.get(4, 1), rep.get(4, 2), rep.get(4, 3).upper()
        if universal and universal_type == "ISO" and _OID_RE.fullmatch(universal):
            identifier["system"] = f"urn:oid:{universal}"
        elif universal and universal_type in ("URI", "URL"):
            identifier["system"] = universal
        type_code = rep.get(5)
        if type_code:
            identifier["type"] = {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": type_code}]
            }
        if namespace:
            identifier["assigner"] = {"display": namespace}
        return identifier

    def human_name(self, rep: _Repetition) -> JsonObject:
        name: JsonObject = {}
        use = _NAME_USE.get(rep.get(7).upper())
        if use:
            name["use"] = use
        if rep.get(1):
            name["family"] = rep.get(1)
        given = [part for part in (rep.get(2), rep.get(3)) if part]
        if given:
            name["given"] = given  # type: ignore[assignment]
        if rep.get(5):
            name["prefix"] = [rep.get(5)]
        if rep.get(4):
            name["suffix"] = [rep.get(4)]
        return name if set(name) - {"use"} else {}

    def address(self, rep: _Repetition) -> JsonObject:
        address: JsonObject = {}
        lines = [line for line in (rep.get(1), rep.get(2)) if line]
        if lines:
            address["line"] = lines  # type: ignore[assignment]
        for component, key in ((3, "city"), (4, "state"), (5, "postalCode"), (6, "country")):
            if rep.get(component):
                address[key] = rep.get(component)
        if not address:
            return {}
        use = _ADDRESS_USE.get(rep.get(7).upper())
        if use:
            address[use[0]] = use[1]
        return address

    def contact_point(self, rep: _Repetition, use: str) -> JsonObject:
        equipment = rep.get(3).upper()
        system = _TELECOM_SYSTEM.get(equipment, "phone" if not rep.get(4) else "email")
        if system == "email":
            value = rep.get(4)
        else:
            value = rep.get(12) or rep.get(1)
            if not value:
                parts = [f"+{rep.get(5)}" if rep.get(5) else "", f"({rep.get(6)})" if rep.get(6) else "", rep.get(7)]
                value = " ".join(part for part in parts if part)
                if value and rep.get(8):
                    value += f" x{rep.get(8)}"
        if not value:
            return {}
        return {"system": system, "value": value, "use": "mobile" if equipment == "CP" else use}

    def quantity(self, value: ExactDecimal, units: _Repetition) -> JsonObject:
        quantity: JsonObject = {"value": value}
        code, text, system = units.get(1), units.get(2), units.get(3)
        if text or code:
            quantity["unit"] = text or code
        if code and system:
            quantity["system"] = self.coding_system(system)
            quantity["code"] = code
        return quantity

    def observation_value(self, obx: _Segment, units: _Repetition) -> JsonObject:
        value_type = obx.value(2).upper()
        reps = [rep for rep in obx.repetitions(5) if not rep.is_empty()]
        if not reps:
            return {}
        if not value_type:
            raise obx.error(2, "value type is empty but OBX-5 holds a value")
        if value_type in ("ST", "TX", "FT"):
            return {"valueString": "\n".join(rep.text() for rep in reps)}
        if len(reps) > 1:
            raise obx.error(5, f"a {value_type} value does not repeat; got {len(reps)} repetitions")
        rep = reps[0]
        if value_type == "NM":
            if len(rep.components) > 1:
                raise obx.error(5, f"{rep.text()!r} is not a number (NM)", rep.text())
            return {"valueQuantity": self.quantity(_decimal(rep.get(1), obx, 5), units)}
        if value_type == "SN":
            return self.structured_numeric(obx, rep, units)
        if value_type in ("CE", "CWE", "CNE"):
            return {"valueCodeableConcept": self.concept(rep)}
        if value_type in ("DT", "DTM", "TS"):
            date_only = value_type == "DT"
            when = _fhir_date(rep.get(1), obx, 5, date_only=date_only, default_offset=self.default_offset)
            return {"valueDateTime": when}
        raise obx.error(
            2, f"value type {value_type!r} is not supported (NM, SN, ST, TX, FT, CE, CWE, CNE, DT, DTM, TS)"
        )

    def structured_numeric(self, obx: _Segment, rep: _Repetition, units: _Repetition) -> JsonObject:
        comparator, first, separator, second = rep.get(1), rep.get(2), rep.get(3), rep.get(4)
        if not separator and not second:
            quantity = self.quantity(_decimal(first, obx, 5), units)
            if comparator in ("<", "<=", ">", ">="):
                quantity["comparator"] = comparator
            elif comparator not in ("", "="):
                raise obx.error(5, f"{comparator!r} is not an SN comparator (<, <=, >, >=, =)", comparator)
            return {"valueQuantity": quantity}
        if separator == "-" and not comparator:
            low, high = _decimal(first, obx, 5), _decimal(second, obx, 5)
            return {"valueRange": {"low": self.quantity(low, units), "high": self.quantity(high, units)}}
        if separator in (":", "/") and not comparator:
            numerator, denominator = _decimal(first, obx, 5), _decimal(second, obx, 5)
            return {"valueRatio": {"numerator": {"value": numerator}, "denominator": {"value": denominator}}}
        raise obx.error(5, f"structured numeric {rep.text()!r} is not supported", rep.text())

    def reference_range(self, text: str, units: _Repetition) -> JsonObject:
        reference_range: JsonObject = {"text": text}
        match = _RANGE_RE.fullmatch(text)
        if match:
            for key in ("low", "high"):
                quantity = self.quantity(ExactDecimal(match[key]), units)
                reference_range[key] = quantity
        return reference_range

    def observation(
        self, obx: _Segment, obr: _Segment, report_id: str, number: int, subject: str | None
    ) -> tuple[str, JsonObject]:
        observation_id = f"{report_id}-obx{number}"
        status_code = obx.value(11).upper()
        if not status_code:
            raise obx.error(11, "observation result status is empty (F, C, P, ...)")
        if status_code not in OBSERVATION_RESULT_STATUS:
            shown = ", ".join(sorted(OBSERVATION_RESULT_STATUS))
            raise obx.error(11, f"{status_code!r} is not an observation result status ({shown})", status_code)
        code = obx.first(3)
        if not code.get(1):
            raise obx.error(3, "observation identifier has no code", code.text())
        resource: JsonObject = {
            "resourceType": "Observation",
            "id": observation_id,
            "status": OBSERVATION_RESULT_STATUS[status_code],
            "code": self.concept(code),
        }
        category = obr.first(24)
        if category.get(1):
            resource["category"] = [self.diagnostic_section(category)]
        if subject:
            resource["subject"] = {"reference": subject}
        when = obx.value(14)
        if when:
            resource["effectiveDateTime"] = _fhir_date(
                when, obx, 14, date_only=False, default_offset=self.default_offset
            )
        elif obr.value(7):
            resource["effectiveDateTime"] = _fhir_date(
                obr.value(7), obr, 7, date_only=False, default_offset=self.default_offset
            )
        units = obx.first(6)
        resource.update(self.observation_value(obx, units))
        interpretation: list[JsonValue] = []
        for rep in obx.repetitions(8):
            flag = rep.get(1)
            if not flag:
                continue
            if flag not in ABNORMAL_FLAGS:
                raise obx.error(8, f"{flag!r} is not an abnormal flag (HL7 table 0078)", flag)
            interpretation.append({"coding": [{"system": INTERPRETATION_SYSTEM, "code": flag}]})
        if interpretation:
            resource["interpretation"] = interpretation
        range_text = obx.first(7).text()
        if range_text:
            resource["referenceRange"] = [self.reference_range(range_text, units)]
        return observation_id, resource

    def diagnostic_section(self, rep: _Repetition) -> JsonObject:
        return {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": rep.get(1)}]}

    def report(self, obr: _Segment, obxs: list[_Segment], number: int, subject: str | None) -> None:
        report_id = f"{self.id_prefix}-obr{number}"
        code = obr.first(4)
        if not code.get(1):
            raise obr.error(4, "universal service identifier has no code", code.text())
        status_code = obr.value(25).upper()
        if status_code and status_code not in REPORT_RESULT_STATUS:
            shown = ", ".join(sorted(REPORT_RESULT_STATUS))
            raise obr.error(25, f"{status_code!r} is not a result status ({shown})", status_code)
        resource: JsonObject = {
            "resourceType": "DiagnosticReport",
            "id": report_id,
            "status": REPORT_RESULT_STATUS.get(status_code, "unknown"),
            "code": self.concept(code),
        }
        identifiers: list[JsonValue] = []
        for field_number, type_code in ((2, "PLAC"), (3, "FILL")):
            value = obr.value(field_number)
            if value:
                identifiers.append(
                    {
                        "type": {
                            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": type_code}]
                        },
                        "value": value,
                    }
                )
        if identifiers:
            resource["identifier"] = identifiers
        category = obr.first(24)
        if category.get(1):
            resource["category"] = [self.diagnostic_section(category)]
        if subject:
            resource["subject"] = {"reference": subject}
        if obr.value(7):
            resource["effectiveDateTime"] = _fhir_date(
                obr.value(7), obr, 7, date_only=False, default_offset=self.default_offset
            )
        observations = [self.observation(obx, obr, report_id, index, subject) for index, obx in enumerate(obxs, 1)]
        if observations:
            resource["result"] = [{"reference": f"Observation/{obs_id}"} for obs_id, _ in observations]
        self.resources.append((resource, f"OBR (segment {obr.position})"))
        for (_, observation), obx in zip(observations, obxs, strict=True):
            self.resources.append((observation, f"OBX (segment {obx.position})"))


def _map_adt(segments: list[_Segment], mapping: _Mapping) -> None:
    pids = [segment for segment in segments if segment.name == "PID"]
    if not pids:
        raise Hl7Error("an ADT message needs a PID segment", field="PID")
    mapping.patient(pids[0], 1)


def _map_oru(segments: list[_Segment], mapping: _Mapping) -> None:
    subject: str | None = None
    patients = 0
    orders: list[tuple[_Segment, list[_Segment], str | None]] = []
    for segment in segments:
        if segment.name == "PID":
            patients += 1
            subject = mapping.patient(segment, patients)
        elif segment.name == "OBR":
            orders.append((segment, [], subject))
        elif segment.name == "OBX":
            if not orders:
                raise Hl7Error(
                    f"OBX without a preceding OBR (segment {segment.position}): every result belongs to an order",
                    field="OBX",
                )
            orders[-1][1].append(segment)
    if not orders:
        raise Hl7Error("an ORU^R01 message needs at least one OBR segment", field="OBR")
    for number, (obr, obxs, order_subject) in enumerate(orders, start=1):
        mapping.report(obr, obxs, number, order_subject)


def ingest_hl7(message: bytes | str) -> Hl7Ingest:
    """Parse one HL7 v2 ADT^A01/A04/A08 or ORU^R01 message into FHIR resources plus the raw message.

    `message` is the bytes as received (or text, which is encoded in the character set MSH-18 declares).
    Raises Hl7Error naming the segment and field at fault.
    """
    if isinstance(message, str):
        text_start = message.lstrip(" \t\r\n\x0b")
        msh_text = re.split(r"[\r\n]", text_start, maxsplit=1)[0]
        if not msh_text.startswith("MSH"):
            raise Hl7Error(f"not an HL7 v2 message: it must begin with an MSH segment, found {msh_text[:12]!r}")
        declared, codec = _declared_character_set(msh_text, _delimiters(msh_text))
        try:
            raw = message.encode(codec)
        except UnicodeEncodeError as exc:
            raise Hl7Error(
                f"text holds {message[exc.start]!r}, which {declared or 'ASCII'} cannot carry",
                field="MSH-18",
                value=declared,
            ) from exc
    elif isinstance(message, (bytes, bytearray, memoryview)):
        raw = bytes(message)
    else:
        raise Hl7Error(f"expected message bytes or text, got {type(message).__name__}")
    body = _strip_framing(raw)
    if body[:3] in (b"FHS", b"BHS"):
        raise Hl7Error("HL7 batch and file envelopes (FHS/BHS) are not supported: pass one message at a time")
    if not body.startswith(b"MSH"):
        raise Hl7Error(f"not an HL7 v2 message: it must begin with an MSH segment, found {body[:12]!r}")
    msh_line = re.split(rb"[\r\n]", body, maxsplit=1)[0].decode("latin-1")
    delimiters = _delimiters(msh_line)
    declared, codec = _declared_character_set(msh_line, delimiters)
    reader = _Reader(delimiters, codec, declared)
    segments = _read_segments(_decode(body, codec, declared), reader)
    msh = segments[0]
    message_type = f"{msh.value(9, 1)}^{msh.value(9, 2)}".upper()
    if message_type not in SUPPORTED_MESSAGE_TYPES:
        shown = ", ".join(sorted(SUPPORTED_MESSAGE_TYPES))
        raise Hl7Error(f"message type {message_type!r} is not supported ({shown})", field="MSH-9", value=message_type)
    control_id = msh.value(10)
    if not control_id:
        raise Hl7Error("message control id is empty", field="MSH-10")
    sent_at = msh.value(7)
    sent_match = _DTM_RE.fullmatch(sent_at.strip()) if sent_at else None
    if sent_at and sent_match is None:
        raise msh.error(7, f"{sent_at!r} is not a date/time", sent_at)
    digest = sha256(raw)
    mapping = _Mapping(
        id_prefix=digest.hex()[:16],
        facility=msh.value(4) or msh.value(3),
        default_offset=_utc_offset(sent_match["tz"]) if sent_match else None,
    )
    if message_type.startswith("ADT"):
        _map_adt(segments, mapping)
    else:
        _map_oru(segments, mapping)
    resources: list[FhirResource] = []
    for resource, source in mapping.resources:
        try:
            resources.append(parse_resource(resource))
        except FhirError as exc:
            raise Hl7Error(f"{source} maps to FHIR that does not validate: {exc}", field=source.split()[0]) from exc
    return Hl7Ingest(
        message_type=message_type,
        control_id=control_id,
        version=msh.value(12),
        character_set=declared,
        raw=raw,
        raw_sha256=digest,
        resources=tuple(resources),
    )


__all__ = [
    "ABNORMAL_FLAGS",
    "ADMINISTRATIVE_SEX",
    "CHARACTER_SETS",
    "CODING_SYSTEMS",
    "SUPPORTED_MESSAGE_TYPES",
    "Hl7Ingest",
    "ingest_hl7",
]
