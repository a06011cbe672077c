"""The requester's side of record delivery: sign a request to a vault, then open what it sends
and check it against the ledger (content and ciphertext hashes, inclusion proof of the registration).

The request is signed in its own domain (VAULT_REQUEST) with the requester's member key; the
vault records the request's hash with the delivery, so a replayed request is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError, MedledgerError
from medledger.core.hashing import Hash32, tagged_hash
from medledger.core.signing import Domain, SigningKey
from medledger.ledger.transactions import new_nonce
from medledger.sdk.client import LedgerClient
from medledger.vault import SealedDelivery, open_delivery

REQUEST_HASH_TAG = "medledger/vault-request-hash/v1"


class RecordVerificationError(MedledgerError):
    """A delivered record does not match what the ledger says about it."""


@dataclass(frozen=True, slots=True)
class DeliveryRequest:
    """What a requester signs to ask a vault for one record under one access decision."""

    decision_id: str
    """The on-chain access decision (a permit) this request relies on."""
    record_id: str
    """The record asked for."""
    requester: str
    """The requester's certificate id."""
    nonce: bytes
    """16 random bytes: two requests are never the same."""
    timestamp_ms: int
    """When the requester signed; the vault refuses requests older than five minutes."""

    def payload(self) -> bytes:
        return encode([self.decision_id, self.record_id, self.requester, self.nonce, self.timestamp_ms])


@dataclass(frozen=True, slots=True)
class SignedDeliveryRequest:
    """A delivery request with its signature."""

    request: DeliveryRequest
    """The signed content."""
    signature: bytes
    """Ed25519 in the VAULT_REQUEST domain, by the requester's member key."""

    @property
    def request_hash(self) -> Hash32:
        return tagged_hash(REQUEST_HASH_TAG, self.request.payload())

    def encode(self) -> bytes:
        return encode({"request": self.request.payload(), "signature": self.signature})

    @classmethod
    def decode(cls, raw: bytes) -> SignedDeliveryRequest:
        value = decode(raw)
        try:
            decision_id, record_id, requester, nonce, timestamp_ms = decode(value["request"])
            request = DeliveryRequest(decision_id, record_id, requester, nonce, timestamp_ms)
            signature = value["signature"]
        except (KeyError, TypeError, ValueError) as exc:
            raise EncodingError(f"not a delivery request: {exc}") from exc
        if not all(isinstance(v, str) for v in (decision_id, record_id, requester)):
            raise EncodingError("delivery request ids must be strings")
        if not isinstance(nonce, bytes) or not isinstance(timestamp_ms, int) or not isinstance(signature, bytes):
            raise EncodingError("delivery request nonce, timestamp or signature has the wrong type")
        return cls(request, signature)


def sign_delivery_request(
    decision_id: str, record_id: str, requester: str, key: SigningKey, now_ms: int
) -> SignedDeliveryRequest:
    request = DeliveryRequest(decision_id, record_id, requester, new_nonce(), now_ms)
    return SignedDeliveryRequest(request, key.sign(Domain.VAULT_REQUEST, request.payload()))


@dataclass(frozen=True, slots=True)
class VerifiedRecord:
    """A record as received and checked against the ledger."""

    record: dict[str, Any]
    """The ledger's index entry."""
    plaintext: bytes
    """The record's canonical plaintext."""
    block_number: int
    """Block that holds the record's registration."""


def open_verified_record(
    client: LedgerClient, key: SigningKey, delivery: SealedDelivery, record_id: str
) -> VerifiedRecord:
    """Decrypt a delivery with the member key it was sealed to, and check it against the ledger."""
    record = client.query("records", "get", record_id=record_id)
    if record is None:
        raise RecordVerificationError(f"the ledger holds no record {record_id}")
    plaintext = open_delivery(
        delivery,
        key.x25519_private_key(),
        expected_content_hash=record["content_hash"],
        expected_ciphertext_hash=record["ciphertext_hash"],
    )
    proven = client.proof(record["tx_id"])
    registered = {e.attributes.get("record_id") for e in proven.receipt.events if e.contract == "records"}
    if not proven.receipt.is_valid or record_id not in registered:
        raise RecordVerificationError(f"the proven transaction does not register record {record_id}")
    return VerifiedRecord(record, plaintext, proven.block_number)
