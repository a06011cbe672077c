"""State transitions of the records contract: register, amend (a linked new version), retire."""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any

import msgspec

from medledger.contracts.audit.trail import AuditAction, append_audit
from medledger.contracts.framework import Args, Contract, ContractError
from medledger.contracts.identity.contract import patient_key
from medledger.core.hashing import tagged_hash
from medledger.core.identity import OrgKind, Role
from medledger.ledger.execution import TxContext
from medledger.ledger.state import TxState
from medledger.ledger.transactions import TxId

RECORDS = Contract("records")

RECORD_ID_TAG = "medledger/record-id/v1"
WRITER_ROLES = [Role.REGISTRAR, Role.CLINICIAN, Role.NURSE]

RecordId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
Pseudonym = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
ResourceType = Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Za-z]{1,63}$")]
ClinicalDate = Annotated[str, msgspec.Meta(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$")]
Hash32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Locator = Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=r"^[a-z][a-z0-9+.-]*://\S+$")]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Category = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9-]{0,63}$")]
PartName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]

CURRENT = "current"
SUPERSEDED = "superseded"
RETIRED = "retired"

_DATE_PARTS = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def record_key(record_id: str) -> str:
    return f"records/entry/{record_id}"


def patient_index_key(pseudonym: str, record_id: str) -> str:
    return f"records/by-patient/{pseudonym}/{record_id}"


def record_id_for(tx_id: TxId) -> str:
    """The id of the record a transaction registers: derived from the transaction id."""
    return tagged_hash(RECORD_ID_TAG, tx_id).hex()[:32]


def check_clinical_date(value: str) -> None:
    """A FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) that exists on the calendar."""
    match = _DATE_PARTS.match(value)
    if match is None:
        raise ContractError("BAD_DATE", f"clinical date {value!r} is not YYYY, YYYY-MM or YYYY-MM-DD")
    year, month, day = (int(part) if part else 1 for part in match.groups())
    try:
        datetime.date(year, month, day)
    except ValueError as exc:
        raise ContractError("BAD_DATE", f"clinical date {value!r} does not exist: {exc}") from exc


def _require_hospital(ctx: TxContext) -> None:
    if ctx.signer.org_kind != OrgKind.HOSPITAL.value:
        raise ContractError(
            "WRONG_ORGANISATION", f"only hospitals hold records; {ctx.signer.org_id} is a {ctx.signer.org_kind}"
        )


class RegisterRecord(Args, frozen=True):
    patient: Pseudonym
    """Pseudonym of the patient the record is about."""
    resource_type: ResourceType
    """FHIR resource type of the record (Observation, DiagnosticReport, ImagingStudy, ...)."""
    clinical_date: ClinicalDate
    """When the clinical fact happened (FHIR date)."""
    content_hash: Hash32
    """SHA-256 of the record's canonical plaintext."""
    locator: Locator
    """Where the source organisation's vault holds it, e.g. vault://st-mary/<id>."""
    ciphertext_hash: Hash32 | None = None
    """SHA-256 of the encrypted form held in the vault, when it is stored encrypted."""
    category: Category | None = None
    """A coarse category consents can name (e.g. laboratory, imaging, vital-signs)."""
    parts: Annotated[dict[PartName, Hash32], msgspec.Meta(max_length=8)] | None = None
    """Hashes of named parts kept apart, e.g. a DICOM object's pixel_data and header."""


def _entry(ctx: TxContext, record_id: str, args: RegisterRecord, version: int, previous: str | None) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "patient": args.patient,
        "resource_type": args.resource_type,
        "clinical_date": args.clinical_date,
        "content_hash": args.content_hash,
        "ciphertext_hash": args.ciphertext_hash,
        "category": args.category,
        "parts": args.parts,
        "locator": args.locator,
        "source_org": ctx.signer.org_id,
        "registered_by": ctx.signer.id,
        "registered_at": ctx.block_timestamp_ms,
        "tx_id": ctx.tx_id,
        "version": version,
        "previous": previous,
        "status": CURRENT,
    }


def _index(state: TxState, entry: dict[str, Any]) -> None:
    state.put(
        patient_index_key(entry["patient"], entry["record_id"]),
        {
            "resource_type": entry["resource_type"],
            "category": entry["category"],
            "clinical_date": entry["clinical_date"],
            "status": entry["status"],
        },
    )


@RECORDS.function("register", RegisterRecord, roles=WRITER_ROLES)
def register(state: TxState, ctx: TxContext, args: RegisterRecord) -> None:
    _require_hospital(ctx)
    check_clinical_date(args.clinical_date)
    if not state.exists(patient_key(args.patient)):
        raise ContractError("UNKNOWN_PATIENT", f"no enrolled patient {args.patient}")
    record_id = record_id_for(ctx.tx_id)
    entry = _entry(ctx, record_id, args, version=1, previous=None)
    state.put(record_key(record_id), entry)
    _index(state, entry)
    append_audit(
        state,
        ctx,
        args.patient,
        "record.register",
        AuditAction.CREATE,
        entities=[f"record/{record_id}"],
        detail={"resource_type": args.resource_type, "source_org": ctx.signer.org_id},
    )
    ctx.emit(
        "records",
        "RecordRegistered",
        record_id=record_id,
        patient=args.patient,
        resource_type=args.resource_type,
        source_org=ctx.signer.org_id,
    )


def provenance(ctx: TxContext, target: str, previous: str, reason: str) -> dict[str, Any]:
    """The amendment in the shape of a FHIR Provenance resource (target, entity revision, agent, reason)."""
    return {
        "resourceType": "Provenance",
        "target": [{"reference": f"record/{target}"}],
        "recorded_ms": ctx.block_timestamp_ms,
        "activity": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE"}]
        },
        "agent": [{"who": ctx.signer.ref, "onBehalfOf": ctx.signer.org_id}],
        "entity": [{"role": "revision", "what": {"reference": f"record/{previous}"}}],
        "reason": reason,
    }


class AmendRecord(Args, frozen=True):
    previous: RecordId
    """The version being amended; it becomes superseded."""
    clinical_date: ClinicalDate
    content_hash: Hash32
    locator: Locator
    reason: Reason
    """Why the record changed (kept as the Provenance reason)."""
    ciphertext_hash: Hash32 | None = None
    parts: Annotated[dict[PartName, Hash32], msgspec.Meta(max_length=8)] | None = None


def _current_entry(state: TxState, ctx: TxContext, record_id: str) -> dict[str, Any]:
    entry = state.get(record_key(record_id))
    if entry is None:
        raise ContractError("UNKNOWN_RECORD", f"no record {record_id}")
    if entry["status"] != CURRENT:
        raise ContractError("RECORD_NOT_CURRENT", f"record {record_id} is {entry['status']}; amend its latest version")
    if entry["source_org"] != ctx.signer.org_id:
        raise ContractError("WRONG_ORGANISATION", f"record {record_id} belongs to {entry['source_org']}")
    return dict(entry)


@RECORDS.function("amend", AmendRecord, roles=WRITER_ROLES)
def amend(state: TxState, ctx: TxContext, args: AmendRecord) -> None:
    check_clinical_date(args.clinical_date)
    old = _current_entry(state, ctx, args.previous)
    record_id = record_id_for(ctx.tx_id)
    fields = RegisterRecord(
        old["patient"],
        old["resource_type"],
        args.clinical_date,
        args.content_hash,
        args.locator,
        args.ciphertext_hash,
        old["category"],
        args.parts,
    )
    entry = {
        **_entry(ctx, record_id, fields, old["version"] + 1, args.previous),
        "amend_reason": args.reason,
        "provenance": provenance(ctx, record_id, args.previous, args.reason),
    }
    old.update(status=SUPERSEDED, superseded_by=record_id)
    state.put(record_key(args.previous), old)
    _index(state, old)
    state.put(record_key(record_id), entry)
    _index(state, entry)
    append_audit(
        state,
        ctx,
        old["patient"],
        "record.amend",
        AuditAction.UPDATE,
        entities=[f"record/{record_id}", f"record/{args.previous}"],
        detail={"reason": args.reason},
    )
    ctx.emit(
        "records",
        "RecordAmended",
        record_id=record_id,
        previous=args.previous,
        patient=old["patient"],
        reason=args.reason,
    )


class RetireRecord(Args, frozen=True):
    record_id: RecordId
    reason: Reason


@RECORDS.function("retire", RetireRecord, roles=WRITER_ROLES)
def retire(state: TxState, ctx: TxContext, args: RetireRecord) -> None:
    entry = _current_entry(state, ctx, args.record_id)
    entry.update(status=RETIRED, retired_at=ctx.block_timestamp_ms, retire_reason=args.reason)
    state.put(record_key(args.record_id), entry)
    _index(state, entry)
    ctx.emit("records", "RecordRetired", record_id=args.record_id, patient=entry["patient"], reason=args.reason)


# queries -------------------------------------------------------------------------------


class GetRecord(Args, frozen=True):
    record_id: RecordId


@RECORDS.query("get", GetRecord)
def query_get(state: TxState, args: GetRecord) -> Any:
    return state.get(record_key(args.record_id))


class ListPatientRecords(Args, frozen=True):
    patient: Pseudonym
    resource_type: ResourceType | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000


@RECORDS.query("by_patient", ListPatientRecords)
def query_by_patient(state: TxState, args: ListPatientRecords) -> Any:
    prefix = f"records/by-patient/{args.patient}/"
    out = []
    for key, summary in state.scan(prefix):
        if args.resource_type is None or summary["resource_type"] == args.resource_type:
            out.append({"record_id": key[len(prefix) :], **summary})
            if len(out) >= args.limit:
                break
    return out


class RecordHistory(Args, frozen=True):
    record_id: RecordId


@RECORDS.query("history", RecordHistory)
def query_history(state: TxState, args: RecordHistory) -> Any:
    """Every version of a record, newest first, following the `previous` links."""
    versions: list[Any] = []
    record_id: str | None = args.record_id
    while record_id is not None and len(versions) < 10_000:
        entry = state.get(record_key(record_id))
        if entry is None:
            break
        versions.append(entry)
        record_id = entry["previous"]
    return versions
