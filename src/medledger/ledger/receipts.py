"""Receipts: the outcome of each transaction in a block, valid or rejected with a named reason."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError
from medledger.ledger.transactions import TxId


class RejectionCode(enum.StrEnum):
    """Why the ledger itself refused a transaction. Contracts add their own codes."""

    MALFORMED = "MALFORMED"
    WRONG_CHANNEL = "WRONG_CHANNEL"
    UNKNOWN_SIGNER = "UNKNOWN_SIGNER"
    CERT_INVALID = "CERT_INVALID"
    CERT_EXPIRED = "CERT_EXPIRED"
    CERT_REVOKED = "CERT_REVOKED"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    DUPLICATE_TX = "DUPLICATE_TX"
    STALE_TX = "STALE_TX"
    FUTURE_TX = "FUTURE_TX"
    UNKNOWN_CONTRACT = "UNKNOWN_CONTRACT"
    UNKNOWN_FUNCTION = "UNKNOWN_FUNCTION"
    BAD_ARGUMENTS = "BAD_ARGUMENTS"
    ROLE_NOT_PERMITTED = "ROLE_NOT_PERMITTED"


VALID = "VALID"
"""The code of a receipt whose transaction was applied."""

#: Rejections that happen before the signature is known good: the transaction id stays free,
#: so nobody can block a genuine transaction by submitting a broken copy of it first.
ID_NOT_CONSUMED = frozenset(
    {
        RejectionCode.MALFORMED,
        RejectionCode.WRONG_CHANNEL,
        RejectionCode.UNKNOWN_SIGNER,
        RejectionCode.CERT_INVALID,
        RejectionCode.CERT_EXPIRED,
        RejectionCode.CERT_REVOKED,
        RejectionCode.BAD_SIGNATURE,
        RejectionCode.DUPLICATE_TX,
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    """A fact a contract announces when a transaction is applied (e.g. RecordRegistered)."""

    contract: str
    """The emitting contract."""
    name: str
    """Event name, CamelCase."""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    """Canonical-encodable attributes."""

    def to_dict(self) -> dict[str, Any]:
        return {"contract": self.contract, "name": self.name, "attributes": dict(self.attributes)}


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of one transaction."""

    tx_id: TxId
    """Id of the transaction (for undecodable bytes, the raw-bytes id)."""
    code: str
    """``VALID`` or a rejection code."""
    reason: str
    """Empty when valid; otherwise a sentence naming what was wrong."""
    events: tuple[Event, ...]
    """Events emitted; empty when rejected."""
    reads: int
    """State reads performed."""
    writes: int
    """State writes performed (zero when rejected)."""

    @property
    def is_valid(self) -> bool:
        return self.code == VALID

    @property
    def consumes_id(self) -> bool:
        """True when the transaction's id may never be used again."""
        return self.code not in ID_NOT_CONSUMED

    def to_dict(self) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id,
            "code": self.code,
            "reason": self.reason,
            "events": [e.to_dict() for e in self.events],
            "reads": self.reads,
            "writes": self.writes,
        }

    def encode(self) -> bytes:
        return encode(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes) -> Receipt:
        value = decode(raw)
        try:
            receipt = cls(
                tx_id=value["tx_id"],
                code=value["code"],
                reason=value["reason"],
                events=tuple(Event(e["contract"], e["name"], e["attributes"]) for e in value["events"]),
                reads=value["reads"],
                writes=value["writes"],
            )
        except (KeyError, TypeError) as exc:
            raise EncodingError(f"receipt is missing or mistypes a field: {exc}") from exc
        _require_types(
            "receipt",
            [
                ("tx_id", receipt.tx_id, bytes),
                ("code", receipt.code, str),
                ("reason", receipt.reason, str),
                ("reads", receipt.reads, int),
                ("writes", receipt.writes, int),
            ],
        )
        for event in receipt.events:
            _require_types(
                "receipt event",
                [("contract", event.contract, str), ("name", event.name, str), ("attributes", event.attributes, dict)],
            )
        return receipt


def _require_types(what: str, fields: list[tuple[str, object, type]]) -> None:
    """EncodingError naming the first field whose value is not of its type (bool is not an int here)."""
    for name, value, expected in fields:
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise EncodingError(f"{what} field {name!r} must be {expected.__name__}, got {type(value).__name__}")
