"""Appending audit entries (used by the records, consent and access contracts) and reading them."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec

from medledger.contracts.framework import Args, Contract
from medledger.ledger.execution import SignerKind, TxContext
from medledger.ledger.state import TxState

AUDIT = Contract("audit")


class AuditAction(enum.StrEnum):
    """FHIR AuditEvent.action codes."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class AuditOutcome(enum.StrEnum):
    """FHIR AuditEvent.outcome codes (R4)."""

    SUCCESS = "0"
    MINOR_FAILURE = "4"
    SERIOUS_FAILURE = "8"


def audit_prefix(patient: str) -> str:
    return f"audit/patient/{patient}/"


def append_audit(
    state: TxState,
    ctx: TxContext,
    patient: str,
    event: str,
    action: AuditAction,
    *,
    entities: Sequence[str],
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    outcome_desc: str = "",
    purpose: str | None = None,
    flags: Sequence[str] = (),
    detail: dict[str, Any] | None = None,
) -> str:
    """Write one audit entry for `patient` about the running transaction; return its key."""
    stem = f"{audit_prefix(patient)}{ctx.block_number:012d}.{ctx.tx_index:05d}."
    position = sum(1 for key in state.writes if key.startswith(stem))
    key = f"{stem}{position:02d}"
    signer = ctx.signer
    state.put(
        key,
        {
            "event": event,
            "action": action.value,
            "recorded_ms": ctx.block_timestamp_ms,
            "outcome": outcome.value,
            "outcome_desc": outcome_desc,
            "agent": {
                "who": signer.ref,
                "org": signer.org_id,
                "role": signer.role if signer.kind is SignerKind.MEMBER else "patient",
            },
            "entities": list(entities),
            "purpose": purpose,
            "patient": patient,
            "flags": list(flags),
            "detail": detail or {},
            "tx_id": ctx.tx_id,
            "block": ctx.block_number,
        },
    )
    return key


class Trail(Args, frozen=True):
    patient: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
    events: list[str] | None = None
    """Only these event kinds (e.g. access.delivery); None: all."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 10_000


@AUDIT.query("trail", Trail)
def query_trail(state: TxState, args: Trail) -> Any:
    """A patient's audit entries in the order they happened."""
    wanted = None if args.events is None else set(args.events)
    out = []
    for key, entry in state.scan(audit_prefix(args.patient)):
        if wanted is None or entry["event"] in wanted:
            out.append({"key": key, **entry})
            if len(out) >= args.limit:
                break
    return out


ACCESS_EVENTS = ("access.decision", "access.delivery")


@AUDIT.query("accesses", Trail)
def query_accesses(state: TxState, args: Trail) -> Any:
    """Who accessed (or asked for) this patient's data: decisions and deliveries, oldest first."""
    return query_trail(state, Trail(args.patient, list(ACCESS_EVENTS), args.limit))
