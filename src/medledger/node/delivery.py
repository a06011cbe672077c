"""Record delivery: a vault serves a record only against a signed request naming a permit that is
valid at the vault's latest committed block, records the delivery on the ledger, and seals the
data key to the requester's certified key. The requester then checks what it received against
the ledger: the content and ciphertext hashes and the inclusion proof of the registration.

The request is signed in its own domain (VAULT_REQUEST) with the requester's member key; its
hash is recorded with the delivery, so a replayed request is refused by the ledger itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError, MedledgerError
from medledger.core.hashing import Hash32, tagged_hash
from medledger.core.signing import Domain, SigningKey, signature_is_valid, x25519_public_key
from medledger.ledger.errors import TransactionRejected
from medledger.ledger.execution import SignerKind
from medledger.ledger.transactions import new_nonce
from medledger.node.peer import Peer
from medledger.sdk.client import LedgerClient, TransactionFailed
from medledger.vault import SealedDelivery, Vault, VaultIntegrityError, open_delivery

MAX_REQUEST_AGE_MS = 5 * 60 * 1000
REQUEST_HASH_TAG = "medledger/vault-request-hash/v1"


class DeliveryRefused(MedledgerError):
    """A vault refused to deliver; `code` names the rule (NO_PERMIT, REPLAYED, ...)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


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


class VaultService:
    """One organisation's vault endpoint: checks, records on the ledger, then seals and sends."""

    def __init__(self, org_id: str, vault: Vault, peer: Peer, recorder: LedgerClient, clock: Callable[[], int]):
        self.org_id = org_id
        self.vault = vault
        self.peer = peer
        self.recorder = recorder
        """Signs access.record_delivery as this organisation's vault member."""
        self.clock = clock

    def deliver(self, signed: SignedDeliveryRequest) -> SealedDelivery:
        request = signed.request
        latest = self.peer.store.last_block()
        assert latest is not None
        height, block_time = latest.number, latest.header.timestamp_ms
        now = self.clock()
        if abs(now - request.timestamp_ms) > MAX_REQUEST_AGE_MS:
            raise DeliveryRefused("STALE_REQUEST", f"request signed at {request.timestamp_ms}, vault time is {now}")
        try:
            requester = self.peer.resolver.resolve(self.peer.store, f"member:{request.requester}", block_time)
        except TransactionRejected as exc:
            raise DeliveryRefused(exc.code, exc.reason) from exc
        if requester.kind is not SignerKind.MEMBER:
            raise DeliveryRefused("UNKNOWN_SIGNER", "only members can receive records")
        if not signature_is_valid(Domain.VAULT_REQUEST, requester.public_key, request.payload(), signed.signature):
            raise DeliveryRefused("BAD_SIGNATURE", f"request is not signed by the key of {request.requester}")
        record = self.peer.query("records", "get", {"record_id": request.record_id})
        if record is None:
            raise DeliveryRefused("UNKNOWN_RECORD", f"no record {request.record_id} at block {height}")
        if record["source_org"] != self.org_id:
            raise DeliveryRefused("WRONG_VAULT", f"record {request.record_id} is held by {record['source_org']}")
        decision = self.peer.query("access", "decision", {"decision_id": request.decision_id})
        if decision is None:
            raise DeliveryRefused(
                "UNKNOWN_PERMIT",
                f"no access decision {request.decision_id} at this vault's block {height}: "
                "it may not have reached this vault yet; retry after it commits",
            )
        delivered_key = f"access/delivery/{request.decision_id}/{signed.request_hash.hex()}"
        if self.peer.store.get_state(delivered_key) is not None:
            raise DeliveryRefused("REPLAYED", "this signed request was served already")
        status = self.peer.query(
            "access",
            "permit_status",
            {
                "decision_id": request.decision_id,
                "requester": request.requester,
                "record_id": request.record_id,
                "at_ms": block_time,
            },
        )
        if not status["valid"]:
            raise DeliveryRefused("NO_PERMIT", f"{status['reason']} (checked at block {height})")
        object_id = self.vault.object_id_for(record["locator"])
        delivery = self.vault.deliver(object_id, x25519_public_key(requester.public_key))
        if record["ciphertext_hash"] is not None and delivery.ciphertext_hash != record["ciphertext_hash"]:
            raise VaultIntegrityError(object_id, "ciphertext does not match the hash registered on the ledger")
        try:
            self.recorder.submit(
                "access",
                "record_delivery",
                {
                    "decision_id": request.decision_id,
                    "record_id": request.record_id,
                    "request_hash": signed.request_hash,
                    "ciphertext_hash": delivery.ciphertext_hash,
                },
            )
        except TransactionFailed as exc:
            code = "REPLAYED" if exc.receipt.code == "DUPLICATE_REQUEST" else "NO_PERMIT"
            raise DeliveryRefused(code, exc.receipt.reason) from exc
        return delivery


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
