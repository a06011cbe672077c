"""DICOM ingestion: separate pixel and header hashes, a summary with no PHI, de-identification, broken files.

Uses only the test files pydicom ships in its wheel (no download), and one PHI-laden file made from
CT_small.dcm with distinctive values so that a leak of any of them is detectable by substring search.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medledger.core.encoding import encode
from medledger.standards import PHI_ATTRIBUTES, DeidAction, DicomError, deidentify, ingest_dicom
from medledger.standards.dicom import canonical_header, pseudonymous_uid

SECRET = b"hospital-secret-0123456789abcdef"


def _file(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not bundled with pydicom"
    return Path(str(path)).read_bytes()


def _write(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


PHI_VALUES = {
    "PatientName": "Angstrom^Zoe^Secret",
    "PatientID": "PHI-ID-12345",
    "PatientBirthDate": "19800214",
    "PatientAddress": "1 Secret Lane Springfield",
    "OtherPatientIDs": "OTHER-ID-99",
    "ReferringPhysicianName": "Whodoc^Referring",
    "InstitutionName": "Secret General Hospital",
    "AccessionNumber": "ACC-777-PHI",
    "PatientTelephoneNumbers": "555-0199-PHI",
    "OperatorsName": "Operator^Olga",
    "StudyID": "STUDY-PHI-5",
}


@pytest.fixture(scope="module")
def phi_file() -> bytes:
    """CT_small with distinctive PHI, a nested person name, a private tag and a nested UID."""
    dataset = pydicom.dcmread(io.BytesIO(_file("CT_small.dcm")))
    for keyword, value in PHI_VALUES.items():
        setattr(dataset, keyword, value)
    item = Dataset()
    item.PatientName = "Nested^Person^PHI"
    item.ReferencedSOPInstanceUID = "1.2.840.99999.4.4.4"
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    dataset.ReferencedImageSequence = Sequence([item])
    block = dataset.private_block(0x0011, "MEDLEDGER TEST", create=True)
    block.add_new(0x01, "LO", "PRIVATE-PHI-VALUE")
    return _write(dataset)


def _phi_strings(data: bytes) -> list[str]:
    dataset = pydicom.dcmread(io.BytesIO(data))
    return [
        *PHI_VALUES.values(),
        "Nested^Person^PHI",
        "PRIVATE-PHI-VALUE",
        "1.2.840.99999.4.4.4",
        str(dataset.StudyInstanceUID),
        str(dataset.SeriesInstanceUID),
        str(dataset.SOPInstanceUID),
    ]


# --- hashes and summary --------------------------------------------------------------------------------


def test_ct_small_summary() -> None:
    # Prepare
    data = _file("CT_small.dcm")
    dataset = pydicom.dcmread(io.BytesIO(data))

    # Execute
    ingest = ingest_dicom(data)

    # Assert
    assert ingest.modality == "CT"
    assert ingest.study_date == "2004-01-19"
    assert ingest.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert ingest.number_of_frames == 1
    assert ingest.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert ingest.pixel_data_hash == hashlib.sha256(dataset.PixelData).digest()
    assert ingest.header_hash == hashlib.sha256(canonical_header(dataset)).digest()
    assert ingest.header["Rows"] == 128
    assert ingest.header["PixelSpacing"] == ["0.661468", "0.661468"]


def test_header_hash_does_not_depend_on_transfer_syntax() -> None:
    # Execute
    ingests = {
        name: ingest_dicom(_file(name))
        for name in ("MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm")
    }

    # Assert: one header; pixel hashes follow the stored bytes
    assert len({ingest.header_hash for ingest in ingests.values()}) == 1
    assert ingests["MR_small.dcm"].pixel_data_hash == ingests["MR_small_implicit.dcm"].pixel_data_hash
    assert ingests["MR_small.dcm"].pixel_data_hash != ingests["MR_small_RLE.dcm"].pixel_data_hash


def test_header_and_pixel_hashes_are_independent() -> None:
    # Prepare
    original = _file("CT_small.dcm")
    header_changed = pydicom.dcmread(io.BytesIO(original))
    header_changed.SeriesNumber = 99
    pixels_changed = pydicom.dcmread(io.BytesIO(original))
    pixels_changed.PixelData = bytes(reversed(pixels_changed.PixelData))

    # Execute
    base, header, pixels = (ingest_dicom(x) for x in (original, _write(header_changed), _write(pixels_changed)))

    # Assert
    assert header.header_hash != base.header_hash and header.pixel_data_hash == base.pixel_data_hash
    assert pixels.pixel_data_hash != base.pixel_data_hash and pixels.header_hash == base.header_hash


def test_object_without_pixel_data() -> None:
    ingest = ingest_dicom(_file("rtplan.dcm"))
    assert ingest.pixel_data_hash is None
    assert ingest.number_of_frames == 0
    assert ingest.modality == "RTPLAN"


def test_multi_frame_and_encapsulated() -> None:
    ingest = ingest_dicom(_file("SC_rgb_rle_2frame.dcm"))
    assert ingest.number_of_frames == 2
    assert ingest.transfer_syntax_uid == "1.2.840.10008.1.2.5"


def test_legacy_dotted_study_date() -> None:
    assert ingest_dicom(_file("ExplVR_BigEnd.dcm")).study_date == "1997-04-24"


def test_summary_holds_no_phi(phi_file: bytes) -> None:
    # Execute
    ingest = ingest_dicom(phi_file)
    text = json.dumps(ingest.header, ensure_ascii=False) + repr(ingest)

    # Assert
    for value in _phi_strings(phi_file):
        assert value not in text, value
    for keyword in PHI_ATTRIBUTES:
        assert keyword not in ingest.header
    assert ingest.header["ReferencedImageSequence"] == [{"ReferencedSOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}]


def test_summary_is_json_safe_and_canonically_encodable(phi_file: bytes) -> None:
    header = ingest_dicom(phi_file).header
    assert json.loads(json.dumps(header)) == header
    assert encode(dict(header))  # medledger's CBOR refuses floats: there are none


# --- de-identification ---------------------------------------------------------------------------------


def test_deidentified_file_has_no_phi(phi_file: bytes) -> None:
    # Execute
    output = deidentify(phi_file, uid_secret=SECRET)

    # Assert
    for value in _phi_strings(phi_file):
        assert value.encode() not in output, value
    dataset = pydicom.dcmread(io.BytesIO(output))
    assert dataset.PatientName == "" and dataset.PatientID == ""  # Type 2: kept, emptied
    assert "PatientAddress" not in dataset and "InstitutionName" not in dataset
    assert dataset.ReferencedImageSequence[0].PatientName == ""
    assert not any(element.tag.is_private for element in dataset.iterall())
    assert dataset.PatientIdentityRemoved == "YES"
    assert dataset.StudyDate == "20040119"  # full dates kept (documented option)


def test_deidentified_pixels_are_unchanged(phi_file: bytes) -> None:
    before, after = ingest_dicom(phi_file), ingest_dicom(deidentify(phi_file, uid_secret=SECRET))
    assert after.pixel_data_hash == before.pixel_data_hash


def test_uids_are_replaced_consistently(phi_file: bytes) -> None:
    # Prepare
    original = pydicom.dcmread(io.BytesIO(phi_file))

    # Execute
    first = pydicom.dcmread(io.BytesIO(deidentify(phi_file, uid_secret=SECRET)))
    again = pydicom.dcmread(io.BytesIO(deidentify(phi_file, uid_secret=SECRET)))
    other = pydicom.dcmread(io.BytesIO(deidentify(phi_file, uid_secret=b"another-secret-0123456789")))

    # Assert
    assert first.StudyInstanceUID == pseudonymous_uid(str(original.StudyInstanceUID), SECRET)
    assert first.StudyInstanceUID == again.StudyInstanceUID
    assert first.StudyInstanceUID != other.StudyInstanceUID
    assert first.SOPInstanceUID == first.file_meta.MediaStorageSOPInstanceUID
    assert first.ReferencedImageSequence[0].ReferencedSOPInstanceUID == pseudonymous_uid("1.2.840.99999.4.4.4", SECRET)
    assert first.SOPClassUID == original.SOPClassUID
    assert str(first.StudyInstanceUID).startswith("2.25.") and len(str(first.StudyInstanceUID)) <= 64


def test_burned_in_annotation_is_refused() -> None:
    dataset = pydicom.dcmread(io.BytesIO(_file("CT_small.dcm")))
    dataset.BurnedInAnnotation = "YES"
    with pytest.raises(DicomError) as info:
        deidentify(_write(dataset), uid_secret=SECRET)
    assert info.value.field == "BurnedInAnnotation (0028,0301)"


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        deidentify(_file("CT_small.dcm"), uid_secret=b"short")


def test_phi_table_actions() -> None:
    assert PHI_ATTRIBUTES["PatientName"] is DeidAction.EMPTY
    assert PHI_ATTRIBUTES["PatientAddress"] is DeidAction.REMOVE
    assert PHI_ATTRIBUTES["StudyInstanceUID"] is DeidAction.REPLACE_UID
    assert all(pydicom.datadict.tag_for_keyword(keyword) is not None for keyword in PHI_ATTRIBUTES)


# --- broken files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not a DICOM Part 10 file"),
        (b"hello, not dicom at all", "not a DICOM Part 10 file"),
        (b"\x00" * 128 + b"DICM", "no data elements"),
    ],
)
def test_not_dicom(data: bytes, fragment: str) -> None:
    with pytest.raises(DicomError, match=fragment):
        ingest_dicom(data)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("MR_truncated.dcm", "PixelData (7FE0,0010): value is 8130 of its declared 8192 bytes"),
        ("rtplan_truncated.dcm", "BeamSequence (300A,00B0): value is 711 of its declared 976 bytes"),
        ("no_meta.dcm", "not a DICOM Part 10 file"),
    ],
)
def test_broken_bundled_files(name: str, fragment: str) -> None:
    with pytest.raises(DicomError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        ingest_dicom(_file(name))


@pytest.mark.parametrize("cut", [140, 300, 475, 1000, 1500, 5000, 20000, -130, -100, -1])
def test_truncated_ct_is_refused(cut: int) -> None:
    data = _file("CT_small.dcm")
    with pytest.raises(DicomError):
        ingest_dicom(data[:cut])


@pytest.mark.parametrize("cut", [-1, -5, -50, -500])
def test_truncated_encapsulated_pixel_data_is_refused(cut: int) -> None:
    with pytest.raises(DicomError, match=r"truncated|No tag"):
        ingest_dicom(_file("JPEG2000.dcm")[:cut])


def test_trailing_garbage_is_refused() -> None:
    with pytest.raises(DicomError, match="after the last complete element"):
        ingest_dicom(_file("CT_small.dcm") + b"\x01\x02\x03")
