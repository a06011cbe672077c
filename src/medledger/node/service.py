"""What a node offers its clients, whatever the face (REST, CLI): authenticated calls and the
rules on who may read what. Handlers decode, call one method here, and encode.

Reads are authenticated by a signed request: the caller signs (method, path, body hash,
timestamp) in the API domain with the key registered for its signer reference. Who may run
which query is one table, `QUERY_RULES`, so the rule is visible in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from medledger.core.errors import EncodingError, MedledgerError
from medledger.core.identity import Role
from medledger.core.signing import Domain, api_request_payload, signature_is_valid
from medledger.ledger.blocks import Block
from medledger.ledger.errors import TransactionRejected
from medledger.ledger.execution import Signer, SignerKind
from medledger.ledger.proofs import TransactionProof
from medledger.ledger.receipts import Receipt
from medledger.ledger.transactions import TxId, decode_transaction
from medledger.node.delivery import DeliveryRefused, VaultService
from medledger.node.ingestion import VaultIntake
from medledger.node.peer import Peer, PeerStatus
from medledger.ordering.orderer import OrderedBatch, Orderer
from medledger.sdk.records import SignedDeliveryRequest
from medledger.standards import StandardsError
from medledger.vault import SealedDelivery, VaultIntegrityError

MAX_REQUEST_SKEW_MS = 5 * 60 * 1000


class ServiceError(MedledgerError):
    """A client call that cannot be served; `status` is the HTTP status a face should use."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthenticationError(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class IntegrityConflict(ServiceError):
    """Stored data failed its integrity check; nothing was served."""

    status = 409


Rule = Callable[[Signer, Mapping[str, Any], Any], bool]


def _any_caller(signer: Signer, args: Mapping[str, Any], result: Any) -> bool:
    return True


def _member(signer: Signer, args: Mapping[str, Any], result: Any) -> bool:
    return signer.kind is SignerKind.MEMBER


def _auditor(signer: Signer, args: Mapping[str, Any], result: Any) -> bool:
    return signer.kind is SignerKind.MEMBER and signer.role == Role.AUDITOR.value


def _patient_self(signer: Signer, args: Mapping[str, Any], result: Any) -> bool:
    return signer.kind is SignerKind.PATIENT and signer.id == args.get("patient")


def _owner(signer: Signer, args: Mapping[str, Any], result: Any) -> bool:
    """The patient the returned entry is about (or every entry of a returned list)."""
    if signer.kind is not SignerKind.PATIENT or result is None:
        return False
    entries = result if isinstance(result, list) else [result]
    return all(isinstance(e, dict) and e.get("patient") == signer.id for e in entries)


def _requester(signer: Signer, args: Mapping[str, Any], result: Any) -> bool:
    return isinstance(result, dict) and result.get("requester") == signer.id


def _either(*rules: Rule) -> Rule:
    return lambda signer, args, result: any(rule(signer, args, result) for rule in rules)


QUERY_RULES: dict[tuple[str, str], Rule] = {
    ("identity", "org"): _any_caller,
    ("identity", "orgs"): _any_caller,
    ("identity", "member"): _any_caller,
    ("identity", "patient"): _either(_member, _patient_self, _owner),
    ("records", "get"): _either(_member, _owner),
    ("records", "history"): _either(_member, _owner),
    ("records", "by_patient"): _either(_member, _patient_self),
    ("consent", "list"): _either(_patient_self, _auditor),
    ("consent", "check"): _member,
    ("access", "decision"): _either(_requester, _owner, _auditor),
    ("access", "permit_status"): _member,
    ("access", "notices"): _either(_patient_self, _auditor),
    ("access", "pending_reviews"): _auditor,
    ("audit", "trail"): _either(_patient_self, _auditor),
    ("audit", "accesses"): _either(_patient_self, _auditor),
}


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The authentication parts of one API request."""

    method: str
    path: str
    body: bytes
    signer_ref: str
    timestamp_ms: int
    signature: bytes


WRITER_ROLES = frozenset({Role.REGISTRAR.value, Role.CLINICIAN.value, Role.NURSE.value})


class LedgerService:
    """One organisation's node as its clients see it (with its vault, when it is a hospital's)."""

    def __init__(
        self, peer: Peer, orderer: Orderer, clock: Callable[[], int], vault: VaultService | None = None
    ) -> None:
        self.peer = peer
        self.orderer = orderer
        self.clock = clock
        self.vault = vault
        self.intake = None if vault is None else VaultIntake(vault.vault, clock)

    # authentication -------------------------------------------------------------------------
    def authenticate(self, request: SignedRequest) -> Signer:
        """The signer of a request, or AuthenticationError naming what failed."""
        now = self.clock()
        if abs(now - request.timestamp_ms) > MAX_REQUEST_SKEW_MS:
            raise AuthenticationError(f"request timestamp {request.timestamp_ms} is more than 5 minutes from {now}")
        try:
            signer = self.peer.resolver.resolve(self.peer.store, request.signer_ref, now)
        except TransactionRejected as exc:
            raise AuthenticationError(f"{exc.code}: {exc.reason}") from exc
        payload = api_request_payload(request.method, request.path, request.body, request.timestamp_ms)
        if not signature_is_valid(Domain.API_REQUEST, signer.public_key, payload, request.signature):
            raise AuthenticationError(f"request signature does not verify under the key of {request.signer_ref}")
        return signer

    # transactions ---------------------------------------------------------------------------------
    def submit(self, tx_bytes: bytes, wait_seconds: float) -> tuple[TxId, Receipt | None]:
        """Check the bytes decode as a transaction, order them, and wait up to `wait_seconds` for the receipt."""
        try:
            tx = decode_transaction(tx_bytes)
        except EncodingError as exc:
            raise ServiceError(f"not a medledger transaction: {exc}") from exc
        future = self.peer.receipt_future(tx.tx_id)
        if not future.done():
            self.orderer.submit(tx_bytes)
        if wait_seconds <= 0:
            return tx.tx_id, None
        try:
            return tx.tx_id, future.result(timeout=wait_seconds)
        except FutureTimeout:
            return tx.tx_id, None

    def receipt(self, tx_id: TxId) -> Receipt:
        receipt = self.peer.receipt(tx_id)
        if receipt is None:
            raise NotFound(f"transaction {tx_id.hex()} is not committed on this peer")
        return receipt

    def proof(self, tx_id: TxId) -> TransactionProof:
        if self.peer.receipt(tx_id) is None:
            raise NotFound(f"transaction {tx_id.hex()} is not committed on this peer")
        return self.peer.transaction_proof(tx_id)

    def block(self, number: int) -> Block:
        block = self.peer.store.block(number)
        if block is None:
            raise NotFound(f"no block {number}; height is {self.peer.store.height()}")
        return block

    def status(self) -> PeerStatus:
        return self.peer.status()

    def batch(self, caller: Signer, number: int) -> OrderedBatch:
        """The ordered batch behind committed block `number`, for a member's peer catching up."""
        if caller.kind is not SignerKind.MEMBER:
            raise Forbidden("only members' peers fetch blocks")
        batch = self.peer.committed_batch(number)
        if batch is None:
            raise NotFound(f"no committed block {number} (height {self.peer.store.height()})")
        return batch

    def attestations(self, number: int) -> list[bytes]:
        """The signed attestations this peer holds for block `number` (anyone may check them)."""
        return [a.encode() for a in self.peer.store.attestations(number)]

    # queries ----------------------------------------------------------------------------------------
    def query(self, caller: Signer, contract: str, name: str, args: Mapping[str, Any]) -> Any:
        """Run a query if the table allows `caller` to see its result."""
        rule = QUERY_RULES.get((contract, name))
        if rule is None:
            raise NotFound(f"no query {contract}.{name}")
        try:
            result = self.peer.query(contract, name, args)
        except TransactionRejected as exc:
            raise ServiceError(f"{exc.code}: {exc.reason}") from exc
        if not rule(caller, args, result):
            raise Forbidden(f"{caller.ref} may not read {contract}.{name} for these arguments")
        return result

    # the hospital's vault ------------------------------------------------------------------------
    def ingest(self, caller: Signer, patient: str, kind: str, data: bytes) -> list[dict[str, Any]]:
        """Store a record in this hospital's vault; return the records.register arguments to sign."""
        if self.intake is None:
            raise NotFound(f"{self.peer.org_id} keeps no vault")
        if caller.kind is not SignerKind.MEMBER or caller.org_id != self.peer.org_id:
            raise Forbidden(f"only members of {self.peer.org_id} put records into its vault")
        if caller.role not in WRITER_ROLES:
            raise Forbidden(f"role {caller.role} cannot register records; registrars, clinicians and nurses can")
        if self.peer.query("identity", "patient", {"id": patient}) is None:
            raise NotFound(f"no enrolled patient {patient}")
        try:
            return self.intake.prepare(patient, kind, data)
        except StandardsError as exc:
            raise ServiceError(str(exc)) from exc

    def deliver(self, request: bytes) -> SealedDelivery:
        """Serve a signed delivery request (see medledger.node.delivery)."""
        if self.vault is None:
            raise NotFound(f"{self.peer.org_id} keeps no vault")
        try:
            return self.vault.deliver(SignedDeliveryRequest.decode(request))
        except EncodingError as exc:
            raise ServiceError(f"not a delivery request: {exc}") from exc
        except DeliveryRefused as exc:
            raise Forbidden(str(exc)) from exc
        except VaultIntegrityError as exc:
            raise IntegrityConflict(str(exc)) from exc
