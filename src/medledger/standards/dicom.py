"""DICOM Part 10 files: separate hashes of pixel data and header, a PHI-free summary, de-identification.

Hashes (plain SHA-256):
- `pixel_data_hash` is taken over the value of the pixel data element exactly as stored: Pixel Data
  (7FE0,0010), or Float / Double Float Pixel Data (7FE0,0008 / 0009). For native data these are the
  pixel bytes in the file's transfer syntax; for encapsulated (compressed) data the item-encoded Basic
  Offset Table and fragments, without the closing sequence delimiter. None when there is no pixel data.
- `header_hash` is taken over the canonical header: the data set without File Meta (group 0002), pixel
  data, group lengths (gggg,0000) and Data Set Trailing Padding (FFFC,FFFC), every element decoded by
  pydicom and written again as Explicit VR Little Endian in ascending tag order, every sequence and
  item with a defined length, no preamble. It does not depend on the transfer syntax the file was sent
  in (the same header read as implicit, explicit or big endian hashes the same) and covers every
  other attribute, private ones included, so a vault copy can be checked against the ledger.

De-identification follows a subset of the DICOM PS3.15 Annex E Basic Application Confidentiality
Profile, listed in PHI_ATTRIBUTES, applied in nested sequences too, with the Retain Longitudinal
Temporal Information with Full Dates Option (study, series and acquisition dates are kept: the ledger
indexes records by clinical date; birth date is not kept). Besides the listed attributes, every
private attribute, every person name (VR PN), curve data (50xx) and overlay data and comments
(60xx,3000 / 60xx,4000) are removed. Instance UIDs are replaced consistently by `deidentify`: each
becomes 2.25.<a 128-bit integer from HMAC-SHA-256(uid_secret, uid)>, so the same UID maps to the same
new UID in every file de-identified with the same secret, and study / series / frame-of-reference links
survive. The ledger summary (`DicomIngest.header`) leaves UIDs other than SOP Class out altogether.
"""

from __future__ import annotations

import copy
import enum
import hmac
import io
import re
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from hashlib import sha256 as _sha256
from typing import Any, TypeAlias

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.pixels.utils import get_expected_length
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from medledger.core.hashing import Hash32, sha256
from medledger.standards.errors import DicomError
from medledger.standards.fhir import date_problem


class DeidAction(enum.Enum):
    """What de-identification does with an attribute (PS3.15 Table E.1-1 action codes)."""

    REMOVE = "X"
    """Remove the attribute."""
    EMPTY = "Z"
    """Keep the attribute with an empty value (Type 2 attributes must stay present)."""
    REPLACE_UID = "U"
    """Replace the UID by a consistent pseudonymous UID."""


PHI_ATTRIBUTES: Mapping[str, DeidAction] = {
    # Patient identification and demographics
    "PatientName": DeidAction.EMPTY,
    "PatientID": DeidAction.EMPTY,
    "PatientBirthDate": DeidAction.EMPTY,
    "PatientSex": DeidAction.EMPTY,
    "PatientBirthTime": DeidAction.REMOVE,
    "PatientAddress": DeidAction.REMOVE,
    "PatientTelephoneNumbers": DeidAction.REMOVE,
    "PatientTelecomInformation": DeidAction.REMOVE,
    "OtherPatientIDs": DeidAction.REMOVE,
    "OtherPatientIDsSequence": DeidAction.REMOVE,
    "OtherPatientNames": DeidAction.REMOVE,
    "PatientBirthName": DeidAction.REMOVE,
    "PatientMotherBirthName": DeidAction.REMOVE,
    "IssuerOfPatientID": DeidAction.REMOVE,
    "PatientAge": DeidAction.REMOVE,
    "PatientSize": DeidAction.REMOVE,
    "PatientWeight": DeidAction.REMOVE,
    "MedicalRecordLocator": DeidAction.REMOVE,
    "EthnicGroup": DeidAction.REMOVE,
    "Occupation": DeidAction.REMOVE,
    "MilitaryRank": DeidAction.REMOVE,
    "BranchOfService": DeidAction.REMOVE,
    "CountryOfResidence": DeidAction.REMOVE,
    "RegionOfResidence": DeidAction.REMOVE,
    "PatientReligiousPreference": DeidAction.REMOVE,
    "PatientInsurancePlanCodeSequence": DeidAction.REMOVE,
    "AdditionalPatientHistory": DeidAction.REMOVE,
    "PatientComments": DeidAction.REMOVE,
    "ReferencedPatientSequence": DeidAction.REMOVE,
    "ResponsiblePerson": DeidAction.REMOVE,
    "ResponsibleOrganization": DeidAction.REMOVE,
    # Visit, order and study identification
    "AccessionNumber": DeidAction.EMPTY,
    "StudyID": DeidAction.EMPTY,
    "AdmissionID": DeidAction.REMOVE,
    "RequestAttributesSequence": DeidAction.REMOVE,
    "StudyDescription": DeidAction.REMOVE,
    "SeriesDescription": DeidAction.REMOVE,
    "RequestedProcedureDescription": DeidAction.REMOVE,
    "PerformedProcedureStepDescription": DeidAction.REMOVE,
    "ImageComments": DeidAction.REMOVE,
    "DerivationDescription": DeidAction.REMOVE,
    # Staff and institution
    "ReferringPhysicianName": DeidAction.EMPTY,
    "ReferringPhysicianAddress": DeidAction.REMOVE,
    "ReferringPhysicianTelephoneNumbers": DeidAction.REMOVE,
    "PhysiciansOfRecord": DeidAction.REMOVE,
    "PerformingPhysicianName": DeidAction.REMOVE,
    "NameOfPhysiciansReadingStudy": DeidAction.REMOVE,
    "OperatorsName": DeidAction.REMOVE,
    "RequestingPhysician": DeidAction.REMOVE,
    "ScheduledPerformingPhysicianName": DeidAction.REMOVE,
    "ContentCreatorName": DeidAction.EMPTY,
    "InstitutionName": DeidAction.REMOVE,
    "InstitutionAddress": DeidAction.REMOVE,
    "InstitutionalDepartmentName": DeidAction.REMOVE,
    "InstitutionCodeSequence": DeidAction.REMOVE,
    "StationName": DeidAction.REMOVE,
    "DeviceSerialNumber": DeidAction.REMOVE,
    "SourceApplicationEntityTitle": DeidAction.REMOVE,
    # Instance UIDs
    "StudyInstanceUID": DeidAction.REPLACE_UID,
    "SeriesInstanceUID": DeidAction.REPLACE_UID,
    "SOPInstanceUID": DeidAction.REPLACE_UID,
    "MediaStorageSOPInstanceUID": DeidAction.REPLACE_UID,
    "ReferencedSOPInstanceUID": DeidAction.REPLACE_UID,
    "FrameOfReferenceUID": DeidAction.REPLACE_UID,
    "ReferencedFrameOfReferenceUID": DeidAction.REPLACE_UID,
    "RelatedFrameOfReferenceUID": DeidAction.REPLACE_UID,
    "SynchronizationFrameOfReferenceUID": DeidAction.REPLACE_UID,
    "IrradiationEventUID": DeidAction.REPLACE_UID,
    "ConcatenationUID": DeidAction.REPLACE_UID,
    "DimensionOrganizationUID": DeidAction.REPLACE_UID,
    "StorageMediaFileSetUID": DeidAction.REPLACE_UID,
    "TransactionUID": DeidAction.REPLACE_UID,
    "FiducialUID": DeidAction.REPLACE_UID,
    "InstanceCreatorUID": DeidAction.REPLACE_UID,
    "DeviceUID": DeidAction.REPLACE_UID,
    "UID": DeidAction.REPLACE_UID,
}
"""The PS3.15 Annex E Basic Profile subset medledger applies, by attribute keyword."""

PIXEL_DATA_TAGS = (Tag(0x7FE0, 0x0010), Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009))
"""Pixel Data, Float Pixel Data, Double Float Pixel Data."""

_TRAILING_PADDING = Tag(0xFFFC, 0xFFFC)
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_LONG_HEADER_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
"""VRs whose explicit-VR element header has a 4-byte length (12 bytes in all) instead of 2 (8 bytes)."""
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM_TAG = 0xFFFEE000
_SEQUENCE_DELIMITER_TAG = 0xFFFEE0DD
_UID_DOMAIN = b"medledger/dicom-uid/v1\x00"
_UID_RE = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_MIN_SECRET_BYTES = 16

DicomJson: TypeAlias = "int | str | list[DicomJson] | dict[str, DicomJson] | None"
"""JSON-safe and float-free (medledger's canonical encoding refuses floats): FL/FD become repr strings."""


@dataclass(frozen=True, slots=True)
class DicomIngest:
    """What the ledger records about a DICOM object: hashes and a PHI-free summary."""

    sop_class_uid: str
    """SOP Class UID (0008,0016): what kind of object this is (CT Image Storage, ...)."""
    modality: str | None
    """Modality (0008,0060), e.g. "CT"."""
    study_date: str | None
    """Study Date (0008,0020) as a FHIR date YYYY-MM-DD."""
    number_of_frames: int
    """Number of Frames, 1 for a single-frame image, 0 without pixel data."""
    transfer_syntax_uid: str
    """The file's transfer syntax: the pixel data hash is over bytes in this encoding."""
    pixel_data_hash: Hash32 | None
    """SHA-256 of the stored pixel data value (see the module docstring), None without pixel data."""
    header_hash: Hash32
    """SHA-256 of the canonical header (see the module docstring)."""
    header: Mapping[str, DicomJson] = field(hash=False)
    """De-identified header by keyword: no PHI attribute, person name, private or binary value, no instance UID."""


# --- reading ----------------------------------------------------------------------------------------


def _where(tag: BaseTag) -> str:
    keyword = pydicom.datadict.keyword_for_tag(tag)
    return f"{keyword} {tag}" if keyword else str(tag)


def _check_lengths(dataset: Dataset, depth: int = 0) -> None:
    """Refuse an element shorter than its declared length: pydicom reads a cut-off value without a word."""
    for tag in list(dataset.keys()):
        raw = dataset.get_item(tag)
        if (
            isinstance(raw, RawDataElement)
            and raw.length != _UNDEFINED_LENGTH
            and raw.value is not None
            and len(raw.value) < raw.length
        ):
            raise DicomError(
                f"value is {len(raw.value)} of its declared {raw.length} bytes: the file is truncated",
                field=_where(tag),
            )
    if depth > 16:
        return
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                _check_lengths(item, depth + 1)


def _check_consumed(dataset: Dataset, size: int) -> None:
    """Refuse a file that does not end exactly after its last element.

    pydicom stops without a word at an element header cut short, and takes a cut sequence delimiter
    for the end of the data. The end of the data set is the end of its last raw element, plus the
    header of each empty element after it (pydicom hands those over already decoded, without position).
    """
    implicit = bool(dataset.original_encoding[0])
    end: int | None = None
    last: BaseTag | None = None
    for tag in sorted(dataset.keys()):
        item = dataset.get_item(tag)
        last = tag
        if isinstance(item, RawDataElement) and item.value is not None:
            end = item.value_tell + len(item.value) + (8 if item.length == _UNDEFINED_LENGTH else 0)
        elif isinstance(item, RawDataElement) and item.length == 0:
            end = item.value_tell
        elif end is not None and isinstance(item, DataElement) and item.is_empty:
            end += 8 if implicit or item.VR not in _LONG_HEADER_VRS else 12
        else:
            end = None
    if end is None or last is None:
        return
    if end > size:
        raise DicomError(f"the file ends {end - size} byte(s) before the end of {_where(last)}: truncated")
    if end < size:
        raise DicomError(
            f"{size - end} byte(s) after the last complete element {_where(last)}: "
            "the file is truncated inside an element header, or has trailing garbage"
        )


def _check_encapsulated(value: bytes, where: str) -> None:
    """Walk the items of encapsulated pixel data; each must be complete."""
    offset = 0
    fragments = 0
    while offset < len(value):
        if offset + 8 > len(value):
            raise DicomError("encapsulated pixel data ends inside an item header: truncated", field=where)
        group, element, length = struct.unpack_from("<HHL", value, offset)
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER_TAG:
            return
        if tag != _ITEM_TAG:
            raise DicomError(f"encapsulated pixel data has tag {tag:08X} where an item was expected", field=where)
        if length == _UNDEFINED_LENGTH or offset + 8 + length > len(value):
            raise DicomError("an encapsulated pixel data item runs past the end: truncated", field=where)
        offset += 8 + length
        fragments += 1
    if fragments < 2:
        raise DicomError("encapsulated pixel data holds no fragment after its offset table", field=where)


def _pixel_element(dataset: Dataset) -> DataElement | None:
    for tag in PIXEL_DATA_TAGS:
        if tag in dataset:
            return dataset[tag]
    return None


def _check_pixel_data(dataset: Dataset, transfer_syntax: UID) -> None:
    element = _pixel_element(dataset)
    if element is None:
        if "Rows" in dataset and "Columns" in dataset and "BitsAllocated" in dataset:
            raise DicomError(
                "the header describes an image (Rows, Columns, BitsAllocated) but there is no pixel data: truncated?",
                field="PixelData (7FE0,0010)",
            )
        return
    value = element.value
    if not isinstance(value, bytes):
        raise DicomError("pixel data is not a byte value", field=_where(element.tag))
    if transfer_syntax.is_encapsulated and element.tag == PIXEL_DATA_TAGS[0]:
        _check_encapsulated(value, _where(element.tag))
        return
    if element.tag != PIXEL_DATA_TAGS[0]:
        return
    missing = [kw for kw in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated") if kw not in dataset]
    if missing:
        raise DicomError(f"pixel data without {', '.join(missing)}", field=_where(element.tag))
    try:
        expected = get_expected_length(dataset)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise DicomError(f"cannot tell the expected pixel data length: {exc}", field=_where(element.tag)) from exc
    if len(value) < expected:
        raise DicomError(
            f"holds {len(value)} bytes but Rows x Columns x Samples x Frames x Bits needs {expected}: truncated",
            field=_where(element.tag),
        )


def _read(data: bytes) -> FileDataset:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DicomError(f"expected the file's bytes, got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) < 132 or raw[128:132] != b"DICM":
        raise DicomError(
            "not a DICOM Part 10 file: no 128-byte preamble followed by 'DICM' "
            f"({len(raw)} bytes{', starting ' + repr(raw[:8]) if raw else ''})"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = pydicom.dcmread(io.BytesIO(raw))
            _check_consumed(dataset, len(raw))
            _check_lengths(dataset)
            for _element in dataset.iterall():
                pass  # decode every element now, so a broken value fails here and not later
        except DicomError:
            raise
        except Exception as exc:  # pydicom raises many types for malformed input; all mean "broken file"
            raise DicomError(f"pydicom cannot read the file: {type(exc).__name__}: {exc}") from exc
    for warning in caught:
        text = str(warning.message)
        if "end of file" in text.lower() or "truncat" in text.lower():
            raise DicomError(f"the file is truncated ({text})")
    if not isinstance(dataset, FileDataset) or len(dataset) == 0:
        raise DicomError("the file holds no data elements after its File Meta Information")
    transfer_syntax_text = str(dataset.file_meta.get("TransferSyntaxUID") or "")
    if not transfer_syntax_text:
        raise DicomError("File Meta Information has no Transfer Syntax UID", field="TransferSyntaxUID (0002,0010)")
    if not _UID_RE.fullmatch(transfer_syntax_text) or not UID(transfer_syntax_text).is_transfer_syntax:
        raise DicomError(
            f"{transfer_syntax_text!r} is not a transfer syntax pydicom knows",
            field="TransferSyntaxUID (0002,0010)",
            value=transfer_syntax_text,
        )
    sop_class = str(dataset.get("SOPClassUID") or "")
    if not sop_class:
        raise DicomError("missing: not a composite DICOM object, or truncated", field="SOPClassUID (0008,0016)")
    if not _UID_RE.fullmatch(sop_class):
        raise DicomError(f"{sop_class!r} is not a UID", field="SOPClassUID (0008,0016)", value=sop_class)
    _check_pixel_data(dataset, UID(transfer_syntax_text))
    return dataset


# --- hashing ----------------------------------------------------------------------------------------


def _canonical_copy(dataset: Dataset) -> Dataset:
    """The header as it is hashed: no pixel data, group lengths or padding; all lengths defined."""
    header = copy.deepcopy(dataset)
    _strip_for_hash(header, top_level=True)
    return header


def _strip_for_hash(dataset: Dataset, *, top_level: bool) -> None:
    for tag in list(dataset.keys()):
        if (top_level and tag in PIXEL_DATA_TAGS) or tag.element == 0 or tag == _TRAILING_PADDING:
            del dataset[tag]
    for element in dataset:
        if element.VR == "SQ":
            element.is_undefined_length = False
            for item in element.value:
                item.is_undefined_length_sequence_item = False
                _strip_for_hash(item, top_level=False)


def canonical_header(dataset: Dataset) -> bytes:
    """The canonical header bytes (see the module docstring) of a decoded data set."""
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's notes on source values (e.g. over-long LO) are not ours to fix
        write_dataset(buffer, _canonical_copy(dataset))
    return buffer.getvalue()


# --- the ledger summary -----------------------------------------------------------------------------


def _is_identifying(element: DataElement) -> bool:
    tag = element.tag
    group = tag.group
    return (
        tag.is_private
        or element.keyword in PHI_ATTRIBUTES
        or element.VR == "PN"
        or 0x5000 <= group <= 0x50FF
        or (0x6000 <= group <= 0x60FF and tag.element in (0x3000, 0x4000))
    )


def _json_value(element: DataElement) -> DicomJson:
    value: Any = element.value
    if element.VR == "SQ":
        return [_ledger_dict(item) for item in value]
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    converted: list[DicomJson] = []
    for item in values:
        if element.VR in ("FL", "FD"):
            converted.append(repr(float(item)))
        elif element.VR == "AT":
            converted.append(f"{int(item):08X}")
        elif isinstance(item, int) and element.VR not in ("IS",):
            converted.append(int(item))
        else:
            converted.append(str(item))
    return converted[0] if len(converted) == 1 and element.VM <= 1 else converted


def _ledger_dict(dataset: Dataset) -> dict[str, DicomJson]:
    result: dict[str, DicomJson] = {}
    for element in dataset:
        tag = element.tag
        if (
            not element.keyword
            or _is_identifying(element)
            or tag in PIXEL_DATA_TAGS
            or tag.element == 0
            or tag == _TRAILING_PADDING
            or element.VR in _BINARY_VRS
        ):
            continue
        result[element.keyword] = _json_value(element)
    return result


def _study_date(dataset: Dataset) -> str | None:
    value = str(dataset.get("StudyDate") or "").strip()
    if not value:
        return None
    digits = value.replace(".", "") if len(value) == 10 and value[4] == "." and value[7] == "." else value
    date = f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}" if len(digits) == 8 and digits.isdigit() else ""
    if not date or date_problem(date, "date") is not None:
        raise DicomError(f"{value!r} is not a DICOM date (YYYYMMDD)", field="StudyDate (0008,0020)", value=value)
    return date


def _number_of_frames(dataset: Dataset, has_pixels: bool) -> int:
    if not has_pixels:
        return 0
    value = dataset.get("NumberOfFrames")
    if value in (None, ""):
        return 1
    try:
        frames = int(value)
    except (TypeError, ValueError) as exc:
        raise DicomError(f"{value!r} is not a number", field="NumberOfFrames (0028,0008)") from exc
    if frames < 1:
        raise DicomError(f"{frames} is not a frame count", field="NumberOfFrames (0028,0008)")
    return frames


def ingest_dicom(data: bytes) -> DicomIngest:
    """Read a DICOM Part 10 file; return its pixel and header hashes and a de-identified summary.

    Raises DicomError for anything that is not a complete DICOM file (no preamble, truncated values or
    pixel data, missing SOP Class UID).
    """
    dataset = _read(data)
    pixels = _pixel_element(dataset)
    modality = dataset.get("Modality")
    return DicomIngest(
        sop_class_uid=str(dataset.SOPClassUID),
        modality=str(modality) if modality else None,
        study_date=_study_date(dataset),
        number_of_frames=_number_of_frames(dataset, pixels is not None),
        transfer_syntax_uid=str(dataset.file_meta.TransferSyntaxUID),
        pixel_data_hash=sha256(pixels.value) if pixels is not None else None,
        header_hash=sha256(canonical_header(dataset)),
        header=_ledger_dict(dataset),
    )


# --- de-identification ------------------------------------------------------------------------------


def pseudonymous_uid(uid: str, uid_secret: bytes) -> str:
    """The UID that `uid` becomes under `uid_secret`: 2.25.<UUIDv8-shaped integer from HMAC-SHA-256>."""
    digest = bytearray(hmac.new(uid_secret, _UID_DOMAIN + uid.strip().encode("ascii"), _sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # UUID version 8 (custom)
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 9562 variant
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _deidentify_dataset(dataset: Dataset, uid_secret: bytes) -> None:
    for tag in list(dataset.keys()):
        element = dataset[tag]
        action = PHI_ATTRIBUTES.get(element.keyword)
        if action is DeidAction.REPLACE_UID:
            if element.value:
                values = list(element.value) if element.VM > 1 else [element.value]
                replaced = [pseudonymous_uid(str(value), uid_secret) for value in values]
                element.value = replaced if element.VM > 1 else replaced[0]
        elif action is DeidAction.EMPTY:
            element.value = Sequence() if element.VR == "SQ" else None
        elif action is DeidAction.REMOVE or (_is_identifying(element) and element.VR != "PN"):
            del dataset[tag]
        elif element.VR == "PN":
            element.value = None  # a person name outside the list: keep the attribute, drop the name
        elif element.VR == "SQ":
            for item in element.value:
                _deidentify_dataset(item, uid_secret)


def deidentify(data: bytes, *, uid_secret: bytes) -> bytes:
    """A de-identified copy of a DICOM file (PHI_ATTRIBUTES applied, UIDs replaced consistently).

    Pixel data is copied unchanged, so a file whose Burned In Annotation is YES is refused: its pixels
    show identifying text. `uid_secret` (at least 16 bytes, kept by the institution) keys the UID
    replacement; see the module docstring.
    """
    if len(uid_secret) < _MIN_SECRET_BYTES:
        raise ValueError(f"uid_secret must be at least {_MIN_SECRET_BYTES} bytes")
    dataset = _read(data)
    if str(dataset.get("BurnedInAnnotation", "")).upper() == "YES":
        raise DicomError(
            "is YES: the pixels show identifying text, which this de-identification does not remove",
            field="BurnedInAnnotation (0028,0301)",
            value="YES",
        )
    _deidentify_dataset(dataset, uid_secret)
    _deidentify_dataset(dataset.file_meta, uid_secret)
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = "medledger PS3.15 E.1 subset; full dates kept; UIDs keyed"
    methods = []
    for code, meaning in (
        ("113100", "Basic Application Confidentiality Profile"),
        ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    ):
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        methods.append(item)
    dataset.DeidentificationMethodCodeSequence = Sequence(methods)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as in canonical_header
            dataset.save_as(buffer, enforce_file_format=True)
    except Exception as exc:  # pydicom's writer raises assorted types for values it cannot encode
        raise DicomError(f"pydicom cannot write the de-identified file: {type(exc).__name__}: {exc}") from exc
    return buffer.getvalue()


__all__ = [
    "PHI_ATTRIBUTES",
    "PIXEL_DATA_TAGS",
    "DeidAction",
    "DicomIngest",
    "DicomJson",
    "canonical_header",
    "deidentify",
    "ingest_dicom",
    "pseudonymous_uid",
]
