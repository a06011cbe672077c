"""REST handlers. Each decodes the request, calls the node's service, and encodes the answer;
no rule lives here. Bytes travel as lower-case hex in JSON; transactions as base64 CBOR.

Reads are authenticated with five headers: `X-Medledger-Signer` (member:<cert id> or
patient:<pseudonym>), `X-Medledger-Node` (the organisation id of the node addressed),
`X-Medledger-Timestamp` (ms), `X-Medledger-Nonce` (16 random bytes, hex, fresh per request) and
`X-Medledger-Signature` (base64 of the Ed25519 signature over
`api_request_payload(node, method, path, body, timestamp, nonce)` in the API domain).
"""

import asyncio
import base64
import binascii
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from medledger import __version__
from medledger.core.encoding import encode
from medledger.core.errors import MedledgerError
from medledger.ledger.execution import Signer
from medledger.ledger.receipts import Receipt
from medledger.node.service import AuthenticationError, LedgerService, ServiceError, SignedRequest
from medledger.standards.audit_event import audit_bundle_json

Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
MAX_HEIGHT = 2**63 - 1
"""SQLite's largest integer: a larger block number is refused with 422, never sent to the store."""


def to_json(value: Any) -> Any:
    """Canonical values as JSON: bytes become hex strings."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    return to_json(receipt.to_dict())  # type: ignore[no-any-return]


class IngestBody(BaseModel):
    patient: str = Field(pattern=r"^[0-9a-f]{32}$", description="The patient's pseudonym.")
    format: str = Field(pattern=r"^(fhir|hl7|dicom)$", description="fhir (resource or Bundle), hl7 or dicom.")
    content: str = Field(description="The file, base64.")


class DeliveryBody(BaseModel):
    request: str = Field(description="A signed delivery request (medledger.node.delivery), canonical CBOR, base64.")


class SubmitBody(BaseModel):
    tx: str = Field(description="The signed transaction: canonical CBOR bytes, base64.")
    wait_seconds: float = Field(default=10.0, ge=0, le=60, description="How long to wait for the receipt.")


def _base64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:  # non-ASCII text raises ValueError, not binascii.Error
        raise ServiceError(f"{field!r} is not base64") from exc


def create_app(service: LedgerService) -> FastAPI:
    app = FastAPI(
        title="medledger node",
        version=__version__,
        description="One organisation's medledger peer: submit signed transactions, read receipts, proofs and "
        "state under signed-request authentication.",
    )

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(MedledgerError)
    async def medledger_error(request: Request, exc: MedledgerError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def caller(
        request: Request,
        x_medledger_signer: Annotated[str | None, Header()] = None,
        x_medledger_node: Annotated[str | None, Header()] = None,
        x_medledger_timestamp: Annotated[int | None, Header()] = None,
        x_medledger_nonce: Annotated[str | None, Header()] = None,
        x_medledger_signature: Annotated[str | None, Header()] = None,
    ) -> Signer:
        if (
            x_medledger_signer is None
            or x_medledger_node is None
            or x_medledger_timestamp is None
            or x_medledger_nonce is None
            or x_medledger_signature is None
        ):
            raise AuthenticationError(
                "this call needs X-Medledger-Signer, X-Medledger-Node, X-Medledger-Timestamp, X-Medledger-Nonce "
                "and X-Medledger-Signature headers"
            )
        try:
            signature = base64.b64decode(x_medledger_signature, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AuthenticationError("X-Medledger-Signature is not base64") from exc
        try:
            nonce = bytes.fromhex(x_medledger_nonce)
        except ValueError as exc:
            raise AuthenticationError("X-Medledger-Nonce is not hex") from exc
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signed = SignedRequest(
            request.method,
            path,
            await request.body(),
            x_medledger_signer,
            x_medledger_node,
            x_medledger_timestamp,
            nonce,
            signature,
        )
        return service.authenticate(signed)

    Caller = Annotated[Signer, Depends(caller)]

    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        peer = service.status()
        return {
            "org_id": peer.org_id,
            "height": peer.height,
            "block_hash": peer.block_hash.hex(),
            "state_root": peer.state_root.hex(),
            "diverged": list(peer.diverged),
        }

    @app.post("/v1/transactions")
    async def submit(body: SubmitBody) -> dict[str, Any]:
        # Ordering takes a worker thread for the orderer's round trip only; the wait for the receipt holds
        # no thread, so the clients in flight are not bounded by the worker pool.
        tx_id, future = await run_in_threadpool(service.order, _base64(body.tx, "tx"))
        receipt: Receipt | None = None
        if body.wait_seconds > 0:
            try:
                receipt = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), body.wait_seconds)
            except TimeoutError:
                receipt = None
        return {"tx_id": tx_id.hex(), "receipt": None if receipt is None else receipt_json(receipt)}

    @app.get("/v1/transactions/{tx_id}/receipt")
    def receipt(tx_id: Hex32, who: Caller) -> dict[str, Any]:
        return receipt_json(service.receipt(bytes.fromhex(tx_id)))

    @app.get("/v1/transactions/{tx_id}/proof")
    def proof(tx_id: Hex32, who: Caller) -> dict[str, Any]:
        return {"proof": base64.b64encode(service.proof(bytes.fromhex(tx_id)).encode()).decode()}

    @app.get("/v1/blocks/{number}")
    def block(number: Annotated[int, Field(ge=0, le=MAX_HEIGHT)], who: Caller) -> dict[str, Any]:
        found = service.block(number)
        return {
            "hash": found.hash.hex(),
            "header": to_json(found.header.to_dict()),
            "transactions": len(found.transactions),
        }

    @app.post("/v1/vault/ingest")
    def ingest(body: IngestBody, who: Caller) -> dict[str, Any]:
        """Store a record in this hospital's vault; sign and submit the returned registrations."""
        registrations = service.ingest(who, body.patient, body.format, _base64(body.content, "content"))
        return {
            "registrations": to_json(registrations),
            "registrations_cbor": base64.b64encode(encode(registrations)).decode(),
        }

    @app.post("/v1/vault/deliveries")
    def deliver(body: DeliveryBody) -> dict[str, Any]:
        """Serve one record under a permit; the data key is sealed to the requester's certified key."""
        delivery = service.deliver(_base64(body.request, "request"))
        return {"delivery": base64.b64encode(encode(delivery.to_dict())).decode()}

    @app.get("/v1/patients/{patient}/audit")
    def audit_trail(patient: str, who: Caller) -> dict[str, Any]:
        return {"trail": to_json(service.query(who, "audit", "trail", {"patient": patient}))}

    @app.get("/v1/patients/{patient}/audit/fhir")
    def audit_fhir(patient: str, who: Caller) -> dict[str, Any]:
        """The patient's trail as a FHIR Bundle of AuditEvent resources."""
        return audit_bundle_json(service.query(who, "audit", "trail", {"patient": patient}))

    @app.get("/v1/batches/{number}")
    def batch(number: Annotated[int, Field(ge=1, le=MAX_HEIGHT)], who: Caller) -> dict[str, Any]:
        """The ordered batch of a committed block (canonical CBOR, base64), for peers catching up."""
        found = service.batch(who, number)
        payload = [found.number, found.timestamp_ms, list(found.transactions), found.orderer_id]
        return {"batch": base64.b64encode(encode(payload)).decode()}

    @app.get("/v1/blocks/{number}/attestations")
    def attestations(number: Annotated[int, Field(ge=0, le=MAX_HEIGHT)]) -> dict[str, Any]:
        """Signed (block hash, state root) attestations of the organisations, as this peer holds them."""
        return {"attestations": [base64.b64encode(a).decode() for a in service.attestations(number)]}

    @app.post("/v1/queries/{contract}/{name}")
    def query(contract: str, name: str, args: dict[str, Any], who: Caller) -> dict[str, Any]:
        result = service.query(who, contract, name, args)
        return {"result": to_json(result), "result_cbor": base64.b64encode(encode(result)).decode()}

    return app
