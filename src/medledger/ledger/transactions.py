"""Transactions: what a member or patient signs and the orderer sequences.

A transaction is stored as `encode({"body": body_bytes, "signature": sig})`. The body is
itself canonical CBOR; the signature covers the body bytes in the transaction domain, and
the transaction id is a tagged hash of the same bytes, so the id does not depend on the
signature and a replay with a re-made signature keeps the same id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError
from medledger.core.hashing import Hash32, tagged_hash
from medledger.core.signing import Domain, SigningKey

TxId = Hash32
"""Tagged SHA-256 of a transaction's body bytes."""

TX_ID_TAG = "medledger/txid/v1"
RAW_TX_ID_TAG = "medledger/raw-tx/v1"
NONCE_SIZE = 16
MAX_TX_BYTES = 256 * 1024

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SIGNER = re.compile(r"^(member|patient):[0-9a-f]{16,64}$")


@dataclass(frozen=True, slots=True)
class TransactionBody:
    """The signed part of a transaction."""

    channel: str
    """The ledger (consortium channel) this transaction is meant for."""
    contract: str
    """Name of the contract to call, e.g. ``records``."""
    function: str
    """Name of the contract function, e.g. ``register``."""
    args: Mapping[str, Any]
    """Arguments, checked against the function's schema before execution."""
    signer: str
    """``member:<certificate id>`` or ``patient:<pseudonym>``."""
    nonce: bytes
    """16 random bytes, so that two identical calls have two ids."""
    timestamp_ms: int
    """The client's clock when signing, in ms since the epoch; bounded against the block time."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "contract": self.contract,
            "function": self.function,
            "args": dict(self.args),
            "signer": self.signer,
            "nonce": self.nonce,
            "timestamp_ms": self.timestamp_ms,
        }

    @classmethod
    def from_dict(cls, value: Any) -> TransactionBody:
        if not isinstance(value, dict):
            raise EncodingError("transaction body is not a map")
        expected = {"channel", "contract", "function", "args", "signer", "nonce", "timestamp_ms"}
        if set(value) != expected:
            missing, extra = expected - set(value), set(value) - expected
            raise EncodingError(f"transaction body fields wrong: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for name in ("channel", "contract", "function", "signer"):
            if not isinstance(value[name], str):
                raise EncodingError(f"transaction field {name!r} must be a string")
        if not _NAME.match(value["contract"]) or not _NAME.match(value["function"]):
            raise EncodingError("contract and function names must match [a-z][a-z0-9_]*")
        if not _SIGNER.match(value["signer"]):
            raise EncodingError("signer must be 'member:<hex id>' or 'patient:<hex pseudonym>'")
        if not isinstance(value["args"], dict):
            raise EncodingError("transaction field 'args' must be a map")
        if not isinstance(value["nonce"], bytes) or len(value["nonce"]) != NONCE_SIZE:
            raise EncodingError(f"transaction nonce must be {NONCE_SIZE} bytes")
        ts = value["timestamp_ms"]
        if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
            raise EncodingError("transaction timestamp_ms must be a non-negative integer")
        return cls(
            channel=value["channel"],
            contract=value["contract"],
            function=value["function"],
            args=value["args"],
            signer=value["signer"],
            nonce=value["nonce"],
            timestamp_ms=ts,
        )


@dataclass(frozen=True, slots=True)
class Transaction:
    """A decoded transaction together with the exact bytes it was decoded from."""

    body: TransactionBody
    """The decoded signed part."""
    body_bytes: bytes
    """Canonical bytes of the body: what is signed and hashed."""
    signature: bytes
    """Ed25519 signature over `body_bytes` in the transaction domain."""
    tx_id: TxId
    """Tagged hash of `body_bytes`."""
    encoded: bytes
    """The stored form: canonical CBOR of {"body", "signature"}."""


def transaction_id(body_bytes: bytes) -> TxId:
    return tagged_hash(TX_ID_TAG, body_bytes)


def raw_transaction_id(raw: bytes) -> TxId:
    """Identifier for bytes that do not decode as a transaction (used only in its rejection receipt)."""
    return tagged_hash(RAW_TX_ID_TAG, raw)


def sign_transaction(body: TransactionBody, key: SigningKey) -> Transaction:
    """Encode `body`, sign it in the transaction domain and return the complete transaction."""
    body_bytes = encode(body.to_dict())
    signature = key.sign(Domain.TRANSACTION, body_bytes)
    encoded = encode({"body": body_bytes, "signature": signature})
    return Transaction(body, body_bytes, signature, transaction_id(body_bytes), encoded)


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def decode_transaction(raw: bytes) -> Transaction:
    """Decode stored transaction bytes; raise EncodingError naming the fault."""
    if len(raw) > MAX_TX_BYTES:
        raise EncodingError(f"transaction is {len(raw)} bytes, over the {MAX_TX_BYTES}-byte limit")
    outer = decode(raw)
    if not isinstance(outer, dict) or set(outer) != {"body", "signature"}:
        raise EncodingError("transaction must be a map with exactly 'body' and 'signature'")
    body_bytes, signature = outer["body"], outer["signature"]
    if not isinstance(body_bytes, bytes) or not isinstance(signature, bytes):
        raise EncodingError("transaction 'body' and 'signature' must be byte strings")
    body = TransactionBody.from_dict(decode(body_bytes))
    return Transaction(body, body_bytes, signature, transaction_id(body_bytes), raw)
