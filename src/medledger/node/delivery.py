"""Record delivery, the vault's side: serve a record only against a signed request naming a permit
valid at the vault's latest committed block, record the delivery on the ledger, and seal the
data key to the requester's certified key (the requester's side is medledger.sdk.records).
"""

from __future__ import annotations

from collections.abc import Callable

from medledger.core.errors import MedledgerError
from medledger.core.signing import Domain, signature_is_valid, x25519_public_key
from medledger.ledger.errors import TransactionRejected
from medledger.ledger.execution import SignerKind
from medledger.node.peer import Peer
from medledger.sdk.client import LedgerClient, TransactionFailed
from medledger.sdk.records import SignedDeliveryRequest
from medledger.vault import SealedDelivery, Vault, VaultIntegrityError

MAX_REQUEST_AGE_MS = 5 * 60 * 1000


class DeliveryRefused(MedledgerError):
    """A vault refused to deliver; `code` names the rule (NO_PERMIT, REPLAYED, ...)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


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
        latest = self.peer.store.last_header()
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
