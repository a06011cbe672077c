"""What a node offers its clients, whatever the face (REST, CLI): authenticated calls and the
rules on who may read what. Handlers decode, call one method here, and encode.

Reads are authenticated by a signed request: the caller signs (node, method, path, body hash,
timestamp, nonce) in the API domain with the key registered for its signer reference. A node
serves only requests addressed to it, each (signer, nonce) once inside the accepted time window
(`SeenRequests`). Who may run which query is one table, `QUERY_RULES`, so the rule is visible in
one place.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from medledger.core.errors import EncodingError, MedledgerError
from medledger.core.identity import Role
from medledger.core.signing import API_NONCE_SIZE, Domain, api_request_payload, signature_is_valid
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
"""How far a request's timestamp may be from the node's clock, either way."""
MAX_REMEMBERED_REQUESTS = 100_000
"""How many served requests a node remembers at most; see SeenRequests."""


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
    """``member:<cert id>`` or ``patient:<pseudonym>``."""
    node: str
    """The organisation id of the node the caller addressed."""
    timestamp_ms: int
    nonce: bytes
    """Drawn afresh by the caller for each request."""
    signature: bytes


class SeenRequests:
    """The (signer, nonce) pairs of the requests a node served inside the accepted time window.

    A request stamped more than the window away from the node's clock is refused anyway, so a
    pair is forgotten once its timestamp leaves the window: memory is bounded by the request rate.
    Should `max_entries` still be reached, the oldest pairs are forgotten and requests stamped no
    later than the newest forgotten one are refused from then on, so no request is served twice.
    The memory does not outlive the process, so requests stamped before `started_ms` (what an
    earlier run of the node may have served) are refused the same way.
    """

    def __init__(
        self, window_ms: int, *, started_ms: int | None = None, max_entries: int = MAX_REMEMBERED_REQUESTS
    ) -> None:
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._seen: set[tuple[str, bytes]] = set()
        self._by_time: list[tuple[int, str, bytes]] = []
        """Heap of (timestamp, signer, nonce): the next pair to forget on top."""
        self._forgotten_up_to: int | None = None if started_ms is None else started_ms - 1
        """Requests stamped at or before this may have been served and are no longer remembered."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def admit(self, signer_ref: str, nonce: bytes, timestamp_ms: int, now_ms: int) -> None:
        """Remember a verified request, or raise AuthenticationError if it may have been served before."""
        key = (signer_ref, nonce)
        with self._lock:
            while self._by_time and self._by_time[0][0] < now_ms - self.window_ms:
                _, old_signer, old_nonce = heapq.heappop(self._by_time)
                self._seen.discard((old_signer, old_nonce))
            if key in self._seen:
                raise AuthenticationError(
                    f"REPLAYED: {signer_ref} already sent a request with nonce {nonce.hex()}; "
                    "each signed request is served once: sign a new one"
                )
            if self._forgotten_up_to is not None and timestamp_ms <= self._forgotten_up_to:
                raise AuthenticationError(
                    f"REQUEST_TOO_OLD: this node no longer remembers requests stamped at or before "
                    f"{self._forgotten_up_to}, so it cannot tell whether this one was served: sign it again now"
                )
            while len(self._seen) >= self.max_entries:
                forgotten, old_signer, old_nonce = heapq.heappop(self._by_time)
                self._seen.discard((old_signer, old_nonce))
                self._forgotten_up_to = max(forgotten, self._forgotten_up_to or forgotten)
            self._seen.add(key)
            heapq.heappush(self._by_time, (timestamp_ms, signer_ref, nonce))


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
        self.seen_requests = SeenRequests(MAX_REQUEST_SKEW_MS, started_ms=clock())

    @property
    def node(self) -> str:
        """The name a request must be addressed to: this node's organisation id."""
        return self.peer.org_id

    # authentication -------------------------------------------------------------------------
    def authenticate(self, request: SignedRequest) -> Signer:
        """The signer of a request, or AuthenticationError naming what failed.

        The signature is checked before the request is remembered, so nobody but the signer can
        use up a (signer, nonce) pair."""
        if request.node != self.node:
            raise AuthenticationError(
                f"WRONG_NODE: the request is addressed to node {request.node!r}; this is {self.node!r}"
            )
        now = self.clock()
        if abs(now - request.timestamp_ms) > MAX_REQUEST_SKEW_MS:
            raise AuthenticationError(f"request timestamp {request.timestamp_ms} is more than 5 minutes from {now}")
        if len(request.nonce) != API_NONCE_SIZE:
            raise AuthenticationError(f"the request nonce must be {API_NONCE_SIZE} bytes, got {len(request.nonce)}")
        try:
            signer = self.peer.resolver.resolve(self.peer.store, request.signer_ref, now)
        except TransactionRejected as exc:
            raise AuthenticationError(f"{exc.code}: {exc.reason}") from exc
        payload = api_request_payload(
            request.node, request.method, request.path, request.body, request.timestamp_ms, request.nonce
        )
        if not signature_is_valid(Domain.API_REQUEST, signer.public_key, payload, request.signature):
            raise AuthenticationError(f"request signature does not verify under the key of {request.signer_ref}")
        self.seen_requests.admit(signer.ref, request.nonce, request.timestamp_ms, now)
        return signer

    # transactions ---------------------------------------------------------------------------------
    def order(self, tx_bytes: bytes) -> tuple[TxId, Future[Receipt]]:
        """Check the bytes decode as a transaction and order them (unless already committed); returns its id
        and a future resolved with its receipt once this peer commits it."""
        try:
            tx = decode_transaction(tx_bytes)
        except EncodingError as exc:
            raise ServiceError(f"not a medledger transaction: {exc}") from exc
        future = self.peer.receipt_future(tx.tx_id)
        if not future.done():
            self.orderer.submit(tx_bytes)
        return tx.tx_id, future

    def submit(self, tx_bytes: bytes, wait_seconds: float) -> tuple[TxId, Receipt | None]:
        """Order the transaction (see `order`) and wait up to `wait_seconds` for the receipt."""
        tx_id, future = self.order(tx_bytes)
        if wait_seconds <= 0:
            return tx_id, None
        try:
            return tx_id, future.result(timeout=wait_seconds)
        except FutureTimeout:
            return tx_id, None

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
        """The signed attestations this peer holds for block `number` (anyone may check them).

        Attestations received since the last commit are stored first, so those of the newest
        block are served as soon as they arrive, not only after the next block."""
        self.peer.flush_attestations()
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
