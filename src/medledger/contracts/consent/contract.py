"""State transitions of the consent contract: a patient grants and revokes consents."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from medledger.contracts.audit.trail import AuditAction, append_audit
from medledger.contracts.consent.policy import ACTIONS, PURPOSES, AccessQuery, evaluate_consents
from medledger.contracts.framework import Args, Contract, ContractError
from medledger.contracts.identity.contract import member_key, org_key
from medledger.contracts.records.contract import ClinicalDate, check_clinical_date, record_key
from medledger.core.hashing import tagged_hash
from medledger.core.identity import Role
from medledger.ledger.execution import TxContext
from medledger.ledger.state import TxState

CONSENT = Contract("consent")

CONSENT_ID_TAG = "medledger/consent-id/v1"
MAX_VALIDITY_MS = 10 * 366 * 86_400_000

ConsentId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
Pseudonym = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
Code = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
RecordIdList = Annotated[list[Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]], msgspec.Meta(max_length=1000)]
CodeList = Annotated[list[Code], msgspec.Meta(max_length=64)]


def consent_key(consent_id: str) -> str:
    return f"consent/entry/{consent_id}"


def patient_index_key(patient: str, consent_id: str) -> str:
    return f"consent/by-patient/{patient}/{consent_id}"


def patient_consents(state: TxState, patient: str) -> list[dict[str, Any]]:
    """Every consent the patient ever gave, active or not."""
    prefix = f"consent/by-patient/{patient}/"
    found = []
    for key, _ in state.scan(prefix):
        consent = state.get(consent_key(key[len(prefix) :]))
        if consent is not None:
            found.append(consent)
    return found


class Grantee(Args, frozen=True):
    """Who a provision is about: every field set must match (an organisation, a member, a role)."""

    org: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")] | None = None
    member: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")] | None = None
    role: str | None = None


class Scope(Args, frozen=True):
    """Which data: record ids, FHIR resource types, categories and a clinical-date window (empty: all)."""

    record_ids: RecordIdList = msgspec.field(default_factory=list)
    resource_types: CodeList = msgspec.field(default_factory=list)
    categories: CodeList = msgspec.field(default_factory=list)
    date_from: ClinicalDate | None = None
    date_to: ClinicalDate | None = None


class Provision(Args, frozen=True):
    """A nested exception of a consent: it reverses the consent's type where it matches."""

    grantee: Grantee | None = None
    purposes: CodeList = msgspec.field(default_factory=list)
    actions: CodeList = msgspec.field(default_factory=list)
    scope: Scope = msgspec.field(default_factory=Scope)


class GrantConsent(Args, frozen=True):
    provision: Annotated[str, msgspec.Meta(pattern=r"^(permit|deny)$")]
    """``permit`` grants access; ``deny`` refuses it and overrides every permit."""
    grantee: Grantee
    purposes: CodeList
    """PurposeOfUse codes (TREAT, ETREAT, HRESCH, HPAYMT, PUBHLTH, ...); empty on a deny means all."""
    valid_from: int
    valid_until: int
    actions: CodeList = msgspec.field(default_factory=lambda: ["read"])
    scope: Scope = msgspec.field(default_factory=Scope)
    exceptions: Annotated[list[Provision], msgspec.Meta(max_length=32)] = msgspec.field(default_factory=list)


def _check_codes(purposes: list[str], actions: list[str], where: str) -> None:
    unknown = sorted(set(purposes) - PURPOSES)
    if unknown:
        raise ContractError("BAD_PURPOSE", f"{where}: unknown purpose of use {', '.join(unknown)}")
    unknown = sorted(set(actions) - ACTIONS)
    if unknown:
        raise ContractError("BAD_ACTION", f"{where}: unknown action {', '.join(unknown)}")


def _check_scope(scope: Scope, where: str) -> None:
    for date in (scope.date_from, scope.date_to):
        if date is not None:
            check_clinical_date(date)
    if scope.date_from and scope.date_to and scope.date_from > scope.date_to:
        raise ContractError("BAD_SCOPE", f"{where}: date_from {scope.date_from} is after date_to {scope.date_to}")


def _check_grantee(state: TxState, grantee: Grantee) -> None:
    if grantee.role is not None and grantee.role not in {r.value for r in Role}:
        raise ContractError("BAD_GRANTEE", f"unknown role {grantee.role!r}")
    if grantee.org is not None and not state.exists(org_key(grantee.org)):
        raise ContractError("BAD_GRANTEE", f"no organisation {grantee.org!r} in the network")
    if grantee.member is not None and not state.exists(member_key(grantee.member)):
        raise ContractError("BAD_GRANTEE", f"no member with certificate {grantee.member}")


@CONSENT.function("grant", GrantConsent, roles=[], patients=True)
def grant(state: TxState, ctx: TxContext, args: GrantConsent) -> None:
    patient = ctx.signer.id
    _check_grantee(state, args.grantee)
    if args.provision == "permit":
        if args.grantee == Grantee():
            raise ContractError("BAD_GRANTEE", "a permit must name an organisation, a member or a role")
        if not args.purposes:
            raise ContractError("BAD_PURPOSE", "a permit must name at least one purpose of use")
    _check_codes(args.purposes, args.actions, "consent")
    _check_scope(args.scope, "consent")
    for index, exception in enumerate(args.exceptions):
        _check_codes(exception.purposes, exception.actions, f"exception {index}")
        _check_scope(exception.scope, f"exception {index}")
        if exception.grantee is not None:
            _check_grantee(state, exception.grantee)
    if not args.valid_from < args.valid_until:
        raise ContractError("BAD_PERIOD", f"valid_from {args.valid_from} is not before valid_until {args.valid_until}")
    if args.valid_until - args.valid_from > MAX_VALIDITY_MS:
        raise ContractError("BAD_PERIOD", "a consent may last at most ten years; grant a new one after")
    if args.valid_until <= ctx.block_timestamp_ms:
        raise ContractError(
            "BAD_PERIOD", f"the consent would already have expired at block time {ctx.block_timestamp_ms}"
        )
    consent_id = tagged_hash(CONSENT_ID_TAG, ctx.tx_id).hex()[:32]
    consent = {
        "consent_id": consent_id,
        "patient": patient,
        "status": "active",
        "provision": args.provision,
        "grantee": msgspec.to_builtins(args.grantee),
        "purposes": sorted(args.purposes),
        "actions": sorted(args.actions),
        "scope": msgspec.to_builtins(args.scope),
        "exceptions": [msgspec.to_builtins(e) for e in args.exceptions],
        "valid_from": args.valid_from,
        "valid_until": args.valid_until,
        "granted_at": ctx.block_timestamp_ms,
        "tx_id": ctx.tx_id,
    }
    state.put(consent_key(consent_id), consent)
    state.put(patient_index_key(patient, consent_id), {"provision": args.provision})
    append_audit(
        state,
        ctx,
        patient,
        "consent.grant",
        AuditAction.CREATE,
        entities=[f"consent/{consent_id}"],
        purpose=",".join(consent["purposes"]) or None,
        detail={"provision": args.provision, "grantee": consent["grantee"], "valid_until": args.valid_until},
    )
    ctx.emit("consent", "ConsentGranted", consent_id=consent_id, patient=patient, provision=args.provision)


class RevokeConsent(Args, frozen=True):
    consent_id: ConsentId


@CONSENT.function("revoke", RevokeConsent, roles=[], patients=True)
def revoke(state: TxState, ctx: TxContext, args: RevokeConsent) -> None:
    consent = state.get(consent_key(args.consent_id))
    if consent is None:
        raise ContractError("UNKNOWN_CONSENT", f"no consent {args.consent_id}")
    if consent["patient"] != ctx.signer.id:
        raise ContractError("NOT_YOUR_CONSENT", f"consent {args.consent_id} was given by another patient")
    if consent["status"] != "active":
        raise ContractError("ALREADY_REVOKED", f"consent {args.consent_id} is {consent['status']}")
    consent.update(status="revoked", revoked_at=ctx.block_timestamp_ms)
    state.put(consent_key(args.consent_id), consent)
    append_audit(
        state, ctx, consent["patient"], "consent.revoke", AuditAction.UPDATE, entities=[f"consent/{args.consent_id}"]
    )
    ctx.emit("consent", "ConsentRevoked", consent_id=args.consent_id, patient=consent["patient"])


# queries -------------------------------------------------------------------------------


class ListConsents(Args, frozen=True):
    patient: Pseudonym
    active_at: int | None = None
    """Only consents active at this time (ms); None: all."""


@CONSENT.query("list", ListConsents)
def query_list(state: TxState, args: ListConsents) -> Any:
    consents = patient_consents(state, args.patient)
    if args.active_at is not None:
        at = args.active_at
        consents = [c for c in consents if c["status"] == "active" and c["valid_from"] <= at < c["valid_until"]]
    return consents


class CheckAccess(Args, frozen=True):
    record_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
    org_id: str
    member_id: str
    role: str
    purpose: Code
    at_ms: int
    action: str = "read"


@CONSENT.query("check", CheckAccess)
def query_check(state: TxState, args: CheckAccess) -> Any:
    """Is this access permitted at time `at_ms`? (The same function the access contract uses.)"""
    record = state.get(record_key(args.record_id))
    if record is None:
        raise ContractError("UNKNOWN_RECORD", f"no record {args.record_id}")
    query = AccessQuery(args.org_id, args.member_id, args.role, args.purpose, args.action, record, args.at_ms)
    decision = evaluate_consents(patient_consents(state, record["patient"]), query)
    return {"permitted": decision.permitted, "reason": decision.reason, "consent_id": decision.consent_id}
