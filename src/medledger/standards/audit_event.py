"""The audit trail as FHIR R4B AuditEvent resources, for patients, regulators and their tools.

Each ledger audit entry (see `medledger.contracts.audit`) becomes one AuditEvent: the DICOM
"Patient Record" event type with a medledger subtype naming what happened (record.register,
consent.grant, access.decision, access.delivery, ...), the agent who signed, the organisation
that observed it, the record or consent it concerns, the patient (by pseudonym), the purpose
of use, and the outcome with its reason. Every resource is validated with fhir.resources
before it is returned.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent
from pydantic import ValidationError

from medledger.standards.errors import FhirStructureError

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
EVENT_SYSTEM = "urn:medledger:audit-event"
SIGNER_SYSTEM = "urn:medledger:signer"
PATIENT_SYSTEM = "urn:medledger:patient-pseudonym"
ENTITY_SYSTEM = "urn:medledger:entity"
TX_SYSTEM = "urn:medledger:transaction"


def _instant(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _identifier(system: str, value: str) -> dict[str, Any]:
    return {"identifier": {"system": system, "value": value}}


def audit_event_json(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One ledger audit entry as a FHIR AuditEvent (JSON object), validated."""
    agent = entry["agent"]
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"{entry['block']}-{entry['tx_id'].hex()[:16]}-{entry.get('key', '').rsplit('.', 1)[-1] or '00'}",
        "type": {"system": DCM, "code": "110110", "display": "Patient Record"},
        "subtype": [{"system": EVENT_SYSTEM, "code": entry["event"]}],
        "action": entry["action"],
        "recorded": _instant(entry["recorded_ms"]),
        "outcome": entry["outcome"],
        "agent": [
            {
                "who": _identifier(SIGNER_SYSTEM, agent["who"]),
                "requestor": True,
                "role": [{"text": agent["role"]}],
                **({"name": agent["org"]} if agent.get("org") else {}),
            }
        ],
        "source": {
            "site": "medledger",
            "observer": _identifier(SIGNER_SYSTEM, f"org:{agent['org']}" if agent.get("org") else "patient-wallet"),
        },
        "entity": [
            *({"what": _identifier(ENTITY_SYSTEM, what)} for what in entry["entities"]),
            {
                "what": _identifier(PATIENT_SYSTEM, entry["patient"]),
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            },
            {"what": _identifier(TX_SYSTEM, entry["tx_id"].hex()), "description": f"block {entry['block']}"},
        ],
    }
    if entry.get("outcome_desc"):
        resource["outcomeDesc"] = entry["outcome_desc"]
    if entry.get("purpose"):
        codes = [code for code in str(entry["purpose"]).split(",") if code]
        resource["purposeOfEvent"] = [{"coding": [{"system": ACT_REASON, "code": code}]} for code in codes]
    try:
        AuditEvent.model_validate(resource)
    except ValidationError as exc:
        raise FhirStructureError(f"AuditEvent for {entry['event']} does not validate: {exc}") from exc
    return resource


def audit_bundle_json(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A FHIR collection Bundle of AuditEvents, in trail order."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": audit_event_json(entry)} for entry in entries],
    }
