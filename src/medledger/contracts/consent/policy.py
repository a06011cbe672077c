"""The consent policy: a pure function from a patient's consents and one access to a decision.

A permit consent allows an access when its grantee, purpose, action, data scope and validity
period all match and none of its nested deny exceptions matches. A deny consent that matches
overrides every permit. When nothing permits, the reason names the closest consent and the
condition that failed, so a patient or auditor can see exactly why.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PURPOSES = frozenset({"TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "CLINTRL", "PUBHLTH", "PATRQT"})
"""HL7 v3 PurposeOfUse codes medledger understands."""
ACTIONS = frozenset({"read"})
"""What a consent can allow."""


@dataclass(frozen=True, slots=True)
class AccessQuery:
    """One access to decide."""

    org_id: str
    """The requester's organisation."""
    member_id: str
    """The requester's certificate id."""
    role: str
    """The requester's role."""
    purpose: str
    """PurposeOfUse code."""
    action: str
    """What is asked for (``read``)."""
    record: Mapping[str, Any]
    """The records-contract entry being accessed."""
    at_ms: int
    """Block time of the decision."""


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    """The outcome of the policy."""

    permitted: bool
    """Whether the access is allowed."""
    reason: str
    """A sentence naming why."""
    consent_id: str | None = None
    """The consent that permits (or the deny consent that refuses)."""


def _date_floor(date: str) -> str:
    """A FHIR date padded to its first day: a partial date starts when its period starts."""
    return date + "-01-01"[len(date) - 4 :] if len(date) < 10 else date


def _date_ceiling(date: str) -> str:
    """A FHIR date padded past its last day: a partial upper bound includes its whole period."""
    return date + "-12-31"[len(date) - 4 :] if len(date) < 10 else date


def grantee_matches(grantee: Mapping[str, Any], query: AccessQuery) -> bool:
    """Every field the grantee sets must match; an empty grantee (deny only) matches everyone."""
    return (
        grantee.get("org") in (None, query.org_id)
        and grantee.get("member") in (None, query.member_id)
        and grantee.get("role") in (None, query.role)
    )


def scope_mismatch(scope: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    """Why `record` is outside `scope`, or None when it is inside."""
    if scope.get("record_ids") and record["record_id"] not in scope["record_ids"]:
        return f"covers records {', '.join(scope['record_ids'])}, not {record['record_id']}"
    if scope.get("resource_types") and record["resource_type"] not in scope["resource_types"]:
        return f"covers {', '.join(scope['resource_types'])}, not {record['resource_type']}"
    if scope.get("categories") and record.get("category") not in scope["categories"]:
        return f"covers categories {', '.join(scope['categories'])}, not {record.get('category') or 'uncategorised'}"
    date = _date_floor(record["clinical_date"])
    if scope.get("date_from") and date < _date_floor(scope["date_from"]):
        return f"covers clinical dates from {scope['date_from']}; the record is dated {record['clinical_date']}"
    if scope.get("date_to") and date > _date_ceiling(scope["date_to"]):
        return f"covers clinical dates up to {scope['date_to']}; the record is dated {record['clinical_date']}"
    return None


def _provision_mismatch(provision: Mapping[str, Any], query: AccessQuery) -> str | None:
    """Why a provision does not apply to the query (grantee aside), or None when it applies."""
    purposes = provision.get("purposes") or []
    if purposes and query.purpose not in purposes:
        return f"allows purposes {', '.join(purposes)}, not {query.purpose}"
    actions = provision.get("actions") or []
    if actions and query.action not in actions:
        return f"allows {', '.join(actions)}, not {query.action}"
    return scope_mismatch(provision.get("scope") or {}, query.record)


def iso_time(ms: int | None) -> str:
    """A block time as an ISO 8601 UTC instant, for reasons people read."""
    if ms is None:
        return "an unknown time"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _period_mismatch(consent: Mapping[str, Any], at_ms: int) -> str | None:
    if consent["status"] != "active":
        return f"was {consent['status']} at {iso_time(consent.get('revoked_at'))}"
    if at_ms < consent["valid_from"]:
        return f"is valid only from {iso_time(consent['valid_from'])}"
    if at_ms >= consent["valid_until"]:
        return f"expired at {iso_time(consent['valid_until'])}"
    return None


def evaluate_consents(consents: Iterable[Mapping[str, Any]], query: AccessQuery) -> ConsentDecision:
    """Decide one access from the patient's consents (deny overrides permit)."""
    permit: ConsentDecision | None = None
    closest: str | None = None
    # newest first, so a refusal explains itself by the patient's latest consent for this grantee
    for consent in sorted(consents, key=lambda c: (-c.get("granted_at", 0), c["consent_id"])):
        if not grantee_matches(consent["grantee"], query):
            continue
        failed = _period_mismatch(consent, query.at_ms) or _provision_mismatch(consent, query)
        if consent["provision"] == "deny":
            if failed is None:
                return ConsentDecision(
                    False, f"consent {consent['consent_id']} denies this access", consent["consent_id"]
                )
            continue
        if failed is not None:
            closest = closest or f"consent {consent['consent_id']} {failed}"
            continue
        excepted = next(
            (
                e
                for e in consent.get("exceptions", [])
                if grantee_matches(e.get("grantee") or {}, query) and _provision_mismatch(e, query) is None
            ),
            None,
        )
        if excepted is not None:
            closest = closest or f"consent {consent['consent_id']} excludes this access in one of its exceptions"
            continue
        permit = permit or ConsentDecision(True, f"permitted by consent {consent['consent_id']}", consent["consent_id"])
    if permit is not None:
        return permit
    if closest is not None:
        return ConsentDecision(False, closest)
    who = f"{query.role} {query.member_id[:12]}… of {query.org_id}"
    return ConsentDecision(False, f"the patient has given no consent that covers {who}")
