"""REST handlers. Each decodes the request, calls the node's service, and encodes the answer;
no rule lives here. Bytes travel as lower-case hex in JSON; transactions as base64 CBOR.

Reads are authenticated with three headers: `X-Medledger-Signer` (member:<cert id> or
patient:<pseudonym>), `X-Medledger-Timestamp` (ms) and `X-Medledger-Signature` (base64 of the
Ed25519 signature over `request_payload(method, path, body, timestamp)` in the API domain).
"""

import base64
import binascii
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from medledger import __version__
from medledger.core.errors import MedledgerError
from medledger.ledger.execution import Signer
from medledger.ledger.receipts import Receipt
from medledger.node.service import AuthenticationError, LedgerService, ServiceError, SignedRequest

Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


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


class SubmitBody(BaseModel):
    tx: str = Field(description="The signed transaction: canonical CBOR bytes, base64.")
    wait_seconds: float = Field(default=10.0, ge=0, le=60, description="How long to wait for the receipt.")


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
        x_medledger_timestamp: Annotated[int | None, Header()] = None,
        x_medledger_signature: Annotated[str | None, Header()] = None,
    ) -> Signer:
        if x_medledger_signer is None or x_medledger_timestamp is None or x_medledger_signature is None:
            raise AuthenticationError(
                "this call needs X-Medledger-Signer, X-Medledger-Timestamp and X-Medledger-Signature headers"
            )
        try:
            signature = base64.b64decode(x_medledger_signature, validate=True)
        except binascii.Error as exc:
            raise AuthenticationError("X-Medledger-Signature is not base64") from exc
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signed = SignedRequest(
            request.method, path, await request.body(), x_medledger_signer, x_medledger_timestamp, signature
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
    def submit(body: SubmitBody) -> dict[str, Any]:
        try:
            raw = base64.b64decode(body.tx, validate=True)
        except binascii.Error as exc:
            raise ServiceError("'tx' is not base64") from exc
        tx_id, receipt = service.submit(raw, body.wait_seconds)
        return {"tx_id": tx_id.hex(), "receipt": None if receipt is None else receipt_json(receipt)}

    @app.get("/v1/transactions/{tx_id}/receipt")
    def receipt(tx_id: Hex32, who: Caller) -> dict[str, Any]:
        return receipt_json(service.receipt(bytes.fromhex(tx_id)))

    @app.get("/v1/transactions/{tx_id}/proof")
    def proof(tx_id: Hex32, who: Caller) -> dict[str, Any]:
        return {"proof": base64.b64encode(service.proof(bytes.fromhex(tx_id)).encode()).decode()}

    @app.get("/v1/blocks/{number}")
    def block(number: Annotated[int, Field(ge=0)], who: Caller) -> dict[str, Any]:
        found = service.block(number)
        return {
            "hash": found.hash.hex(),
            "header": to_json(found.header.to_dict()),
            "transactions": len(found.transactions),
        }

    @app.post("/v1/queries/{contract}/{name}")
    def query(contract: str, name: str, args: dict[str, Any], who: Caller) -> dict[str, Any]:
        return {"result": to_json(service.query(who, contract, name, args))}

    return app
