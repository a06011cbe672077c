"""State transitions of the access contract.

A member asks for a record for a purpose; the contract evaluates the patient's consents at
block time and records a decision either way. Emergency treatment (ETREAT, "break-glass")
needs a written justification, is always permitted for hospital clinicians, and is flagged
for review and shown to the patient. A vault delivers a record only under a permit that is
still valid at its latest block, and records each delivery here.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from medledger.contracts.audit.trail import AuditAction, AuditOutcome, append_audit
from medledger.contracts.consent.contract import patient_consents
from medledger.contracts.consent.policy import ACTIONS, PURPOSES, AccessQuery, evaluate_consents, iso_time
from medledger.contracts.framework import Args, Contract, ContractError
from medledger.contracts.records.contract import RETIRED, record_key
from medledger.core.hashing import tagged_hash
from medledger.core.identity import OrgKind, Role
from medledger.ledger.execution import TxContext
from medledger.ledger.state import TxState

ACCESS = Contract("access")

DECISION_ID_TAG = "medledger/access-decision/v1"
PERMIT_TTL_MS = 24 * 3600 * 1000
"""A permit is used within a day of its decision, or asked for again."""
BREAK_GLASS_TTL_MS = 4 * 3600 * 1000
"""A break-glass permit lasts four hours."""
MIN_JUSTIFICATION = 20
BREAK_GLASS = "ETREAT"

RecordId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
DecisionId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
Hash32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


def decision_key(decision_id: str) -> str:
    return f"access/decision/{decision_id}"


def notice_key(patient: str, decision_id: str) -> str:
    return f"access/notice/{patient}/{decision_id}"


def review_key(decision_id: str) -> str:
    return f"access/review/{decision_id}"


class RequestAccess(Args, frozen=True):
    record_id: RecordId
    purpose: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2,16}$")]
    """PurposeOfUse: TREAT, ETREAT (break-glass), HRESCH, HPAYMT, PUBHLTH, ..."""
    justification: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    """Why: mandatory for break-glass."""
    action: str = "read"


def _decide(state: TxState, ctx: TxContext, record: dict[str, Any], args: RequestAccess) -> tuple[bool, str, Any]:
    """(permitted, reason, consent id or None) for a request, at block time."""
    signer = ctx.signer
    if record["status"] == RETIRED:
        return False, f"record {record['record_id']} was retired by {record['source_org']}", None
    if args.purpose == BREAK_GLASS:
        if signer.role == Role.CLINICIAN.value and signer.org_kind == OrgKind.HOSPITAL.value:
            return True, f"break-glass by clinician of {signer.org_id}: {args.justification}", None
        return (
            False,
            f"break-glass is reserved for hospital clinicians; signer is a {signer.role} of {signer.org_id}",
            None,
        )
    query = AccessQuery(
        signer.org_id or "", signer.id, signer.role or "", args.purpose, args.action, record, ctx.block_timestamp_ms
    )
    decision = evaluate_consents(patient_consents(state, record["patient"]), query)
    return decision.permitted, decision.reason, decision.consent_id


@ACCESS.function("request", RequestAccess)
def request(state: TxState, ctx: TxContext, args: RequestAccess) -> None:
    record = state.get(record_key(args.record_id))
    if record is None:
        raise ContractError("UNKNOWN_RECORD", f"no record {args.record_id}")
    if args.purpose not in PURPOSES:
        raise ContractError("BAD_PURPOSE", f"unknown purpose of use {args.purpose}")
    if args.action not in ACTIONS:
        raise ContractError("BAD_ACTION", f"unknown action {args.action}")
    break_glass = args.purpose == BREAK_GLASS
    if break_glass and len((args.justification or "").strip()) < MIN_JUSTIFICATION:
        raise ContractError(
            "JUSTIFICATION_REQUIRED", f"break-glass needs a justification of at least {MIN_JUSTIFICATION} characters"
        )
    permitted, reason, consent_id = _decide(state, ctx, record, args)
    decision_id = tagged_hash(DECISION_ID_TAG, ctx.tx_id).hex()[:32]
    patient = record["patient"]
    flags = ["break-glass", "review"] if break_glass and permitted else []
    decision = {
        "decision_id": decision_id,
        "record_id": args.record_id,
        "patient": patient,
        "requester": ctx.signer.id,
        "requester_org": ctx.signer.org_id,
        "requester_role": ctx.signer.role,
        "purpose": args.purpose,
        "action": args.action,
        "justification": args.justification,
        "outcome": "permit" if permitted else "deny",
        "reason": reason,
        "consent_id": consent_id,
        "flags": flags,
        "decided_at": ctx.block_timestamp_ms,
        "tx_id": ctx.tx_id,
    }
    state.put(decision_key(decision_id), decision)
    entities = [f"record/{args.record_id}", f"decision/{decision_id}"]
    append_audit(
        state,
        ctx,
        patient,
        "access.request",
        AuditAction.EXECUTE,
        entities=entities,
        purpose=args.purpose,
        detail={"justification": args.justification} if args.justification else None,
    )
    outcome = AuditOutcome.SUCCESS if permitted else AuditOutcome.MINOR_FAILURE
    append_audit(
        state,
        ctx,
        patient,
        "access.decision",
        AuditAction.EXECUTE,
        entities=entities,
        outcome=outcome,
        outcome_desc=reason,
        purpose=args.purpose,
        flags=flags,
        detail={"decision": decision["outcome"], "consent_id": consent_id},
    )
    if flags:
        state.put(notice_key(patient, decision_id), {"decision_id": decision_id, "seen": False})
        state.put(review_key(decision_id), {"decision_id": decision_id, "requester_org": ctx.signer.org_id})
    ctx.emit(
        "access",
        "AccessDecided",
        decision_id=decision_id,
        record_id=args.record_id,
        outcome=decision["outcome"],
        break_glass=bool(flags),
    )


def permit_status(state: TxState, decision_id: str, requester: str, record_id: str, at_ms: int) -> tuple[bool, str]:
    """Whether a decision still permits `requester` to receive `record_id` at time `at_ms`, and why."""
    decision = state.get(decision_key(decision_id))
    if decision is None:
        return False, f"no access decision {decision_id}"
    if decision["outcome"] != "permit":
        return False, f"decision {decision_id} denied access: {decision['reason']}"
    if decision["requester"] != requester:
        return False, f"decision {decision_id} was made for another requester"
    if decision["record_id"] != record_id:
        return False, f"decision {decision_id} is for record {decision['record_id']}, not {record_id}"
    record = state.get(record_key(record_id))
    if record is None or record["status"] == RETIRED:
        return False, f"record {record_id} is no longer available"
    if "break-glass" in decision["flags"]:
        if at_ms >= decision["decided_at"] + BREAK_GLASS_TTL_MS:
            lapsed = iso_time(decision["decided_at"] + BREAK_GLASS_TTL_MS)
            return False, f"break-glass permit {decision_id} lapsed at {lapsed}"
        return True, "break-glass permit in force"
    if at_ms >= decision["decided_at"] + PERMIT_TTL_MS:
        return False, f"permit {decision_id} lapsed at {iso_time(decision['decided_at'] + PERMIT_TTL_MS)}; ask again"
    query = AccessQuery(
        decision["requester_org"],
        requester,
        decision["requester_role"],
        decision["purpose"],
        decision["action"],
        record,
        at_ms,
    )
    current = evaluate_consents(patient_consents(state, record["patient"]), query)
    if not current.permitted:
        return False, f"permit {decision_id} no longer holds: {current.reason}"
    return True, current.reason


class RecordDelivery(Args, frozen=True):
    decision_id: DecisionId
    record_id: RecordId
    request_hash: Hash32
    """Hash of the requester's signed delivery request (one delivery per request)."""
    ciphertext_hash: Hash32
    """Hash of the ciphertext the vault sent."""


@ACCESS.function("record_delivery", RecordDelivery, roles=[Role.VAULT])
def record_delivery(state: TxState, ctx: TxContext, args: RecordDelivery) -> None:
    record = state.get(record_key(args.record_id))
    if record is None:
        raise ContractError("UNKNOWN_RECORD", f"no record {args.record_id}")
    if record["source_org"] != ctx.signer.org_id:
        raise ContractError("WRONG_ORGANISATION", f"record {args.record_id} is held by {record['source_org']}")
    if record.get("ciphertext_hash") not in (None, args.ciphertext_hash):
        raise ContractError("CIPHERTEXT_MISMATCH", "the delivered ciphertext is not the one registered on the ledger")
    decision = state.get(decision_key(args.decision_id))
    if decision is None:
        raise ContractError("UNKNOWN_DECISION", f"no access decision {args.decision_id}")
    valid, reason = permit_status(
        state, args.decision_id, decision["requester"], args.record_id, ctx.block_timestamp_ms
    )
    if not valid:
        raise ContractError("PERMIT_NOT_VALID", reason)
    key = f"access/delivery/{args.decision_id}/{args.request_hash.hex()}"
    if state.exists(key):
        raise ContractError("DUPLICATE_REQUEST", "this delivery request was already served")
    state.put(
        key,
        {
            "delivered_at": ctx.block_timestamp_ms,
            "vault": ctx.signer.id,
            "requester": decision["requester"],
            "ciphertext_hash": args.ciphertext_hash,
        },
    )
    append_audit(
        state,
        ctx,
        record["patient"],
        "access.delivery",
        AuditAction.READ,
        entities=[f"record/{args.record_id}", f"decision/{args.decision_id}"],
        purpose=decision["purpose"],
        flags=decision["flags"],
        detail={"requester": decision["requester"], "requester_org": decision["requester_org"]},
    )
    ctx.emit(
        "access",
        "RecordDelivered",
        decision_id=args.decision_id,
        record_id=args.record_id,
        requester=decision["requester"],
    )


class ReviewBreakGlass(Args, frozen=True):
    decision_id: DecisionId
    verdict: Annotated[str, msgspec.Meta(pattern=r"^(justified|unjustified)$")]
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


@ACCESS.function("review", ReviewBreakGlass, roles=[Role.AUDITOR])
def review(state: TxState, ctx: TxContext, args: ReviewBreakGlass) -> None:
    if not state.exists(review_key(args.decision_id)):
        raise ContractError("NOTHING_TO_REVIEW", f"decision {args.decision_id} is not waiting for review")
    decision = state.get(decision_key(args.decision_id))
    assert decision is not None
    decision["review"] = {"verdict": args.verdict, "note": args.note, "by": ctx.signer.id, "at": ctx.block_timestamp_ms}
    state.put(decision_key(args.decision_id), decision)
    state.delete(review_key(args.decision_id))
    outcome = AuditOutcome.SUCCESS if args.verdict == "justified" else AuditOutcome.SERIOUS_FAILURE
    append_audit(
        state,
        ctx,
        decision["patient"],
        "access.review",
        AuditAction.EXECUTE,
        entities=[f"decision/{args.decision_id}"],
        outcome=outcome,
        outcome_desc=args.note,
    )
    ctx.emit("access", "BreakGlassReviewed", decision_id=args.decision_id, verdict=args.verdict)


# queries -------------------------------------------------------------------------------


class GetDecision(Args, frozen=True):
    decision_id: DecisionId


@ACCESS.query("decision", GetDecision)
def query_decision(state: TxState, args: GetDecision) -> Any:
    return state.get(decision_key(args.decision_id))


class PermitStatus(Args, frozen=True):
    decision_id: DecisionId
    requester: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    record_id: RecordId
    at_ms: int


@ACCESS.query("permit_status", PermitStatus)
def query_permit_status(state: TxState, args: PermitStatus) -> Any:
    valid, reason = permit_status(state, args.decision_id, args.requester, args.record_id, args.at_ms)
    return {"valid": valid, "reason": reason}


class PatientArg(Args, frozen=True):
    patient: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]


@ACCESS.query("notices", PatientArg)
def query_notices(state: TxState, args: PatientArg) -> Any:
    """Break-glass accesses to the patient's data, with their decisions."""
    prefix = f"access/notice/{args.patient}/"
    return [state.get(decision_key(key[len(prefix) :])) for key, _ in state.scan(prefix)]


class NoArgs(Args, frozen=True):
    pass


@ACCESS.query("pending_reviews", NoArgs)
def query_pending_reviews(state: TxState, args: NoArgs) -> Any:
    return [state.get(decision_key(entry["decision_id"])) for _, entry in state.scan("access/review/")]
