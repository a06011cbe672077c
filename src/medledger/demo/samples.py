"""Synthetic clinical samples for the demo: a FHIR Bundle of laboratory results, an HL7 v2 ORU
message, and a DICOM image from pydicom's bundled test files. No real person is in them."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pydicom.data

LAB_CATEGORY = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]
}


def days_before(today: datetime.date, days: int) -> str:
    return (today - datetime.timedelta(days=days)).isoformat()


def lab_bundle(today: datetime.date) -> tuple[bytes, str, str]:
    """A FHIR collection Bundle of two HbA1c results, one ~2 months old and one ~14 months old.

    Values are written with trailing zeros (6.50, 7.10), which must survive to the vault unchanged.
    Returns (bundle bytes, recent date, old date).
    """
    recent, old = days_before(today, 60), days_before(today, 420)

    def observation(ident: str, date: str) -> dict[str, object]:
        return {
            "fullUrl": f"urn:uuid:{ident}",
            "resource": {
                "resourceType": "Observation",
                "id": ident,
                "status": "final",
                "category": [LAB_CATEGORY],
                "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
                "effectiveDateTime": f"{date}T08:30:00Z",
                "valueQuantity": {
                    "value": f"@{ident}@",
                    "unit": "%",
                    "system": "http://unitsofmeasure.org",
                    "code": "%",
                },
            },
        }

    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [observation("hba1c-recent", recent), observation("hba1c-old", old)],
    }
    text = json.dumps(bundle).replace('"@hba1c-recent@"', "6.50").replace('"@hba1c-old@"', "7.10")
    return text.encode(), recent, old


def oru_message(today: datetime.date) -> bytes:
    """An HL7 v2.5 ORU^R01 with a metabolic panel of three results, about a month old, in UTF-8."""
    when = (today - datetime.timedelta(days=30)).strftime("%Y%m%d")
    segments = [
        f"MSH|^~\\&|LAB|ST-MARY|LEDGER|ST-MARY|{when}083000+0000||ORU^R01^ORU_R01|DEMO0001|P|2.5||||||UNICODE UTF-8",
        "PID|1||MRN-0042^^^ST-MARY^MR~NHS-943 476 5919^^^NHS^NH||Ångström^Zoë||19800214|F",
        f"OBR|1||LAB-7781|24323-8^Comprehensive metabolic panel^LN|||{when}080000+0000",
        "OBX|1|NM|2345-7^Glucose^LN||5.40|mmol/L|3.9-5.5|N|||F",
        "OBX|2|NM|2160-0^Creatinine^LN||88.0|umol/L|45-90|N|||F",
        "OBX|3|ST|8251-1^Service comment^LN||fasting sample \\T\\ repeat in 3 months||||||F",
    ]
    return "\r".join(segments).encode("utf-8")


def ct_image() -> bytes:
    """A small CT image from pydicom's bundled test files."""
    return Path(str(pydicom.data.get_testdata_file("CT_small.dcm"))).read_bytes()
