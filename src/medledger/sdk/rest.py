"""Reaching a node over its REST API: signed request headers and an HTTP `Gateway`."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import httpx

from medledger.core.encoding import decode
from medledger.core.errors import MedledgerError
from medledger.core.identity import MemberIdentity
from medledger.core.signing import Domain, api_request_payload
from medledger.ledger.proofs import TransactionProof
from medledger.ledger.receipts import Event, Receipt
from medledger.ledger.transactions import TxId
from medledger.sdk.client import Credentials, LedgerClient
from medledger.sdk.records import VerifiedRecord, open_verified_record, sign_delivery_request
from medledger.vault import SealedDelivery


class ApiError(MedledgerError):
    """The node answered with an error; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def signed_headers(credentials: Credentials, method: str, path: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    """Headers that authenticate one request as `credentials`."""
    signature = credentials.key.sign(Domain.API_REQUEST, api_request_payload(method, path, body, timestamp_ms))
    return {
        "X-Medledger-Signer": credentials.signer_ref,
        "X-Medledger-Timestamp": str(timestamp_ms),
        "X-Medledger-Signature": base64.b64encode(signature).decode(),
    }


def receipt_from_json(value: Mapping[str, Any]) -> Receipt:
    return Receipt(
        tx_id=bytes.fromhex(value["tx_id"]),
        code=value["code"],
        reason=value["reason"],
        events=tuple(Event(e["contract"], e["name"], e["attributes"]) for e in value["events"]),
        reads=value["reads"],
        writes=value["writes"],
    )


class HttpGateway:
    """The SDK's Gateway over a node's REST API (httpx; a FastAPI TestClient works too)."""

    def __init__(self, client: httpx.Client, channel: str, credentials: Credentials, *, poll_seconds: float = 0.05):
        self.client = client
        self.channel = channel
        self.credentials = credentials
        self.poll_seconds = poll_seconds

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = signed_headers(self.credentials, method, path, body, self.now_ms())
        if payload is not None:
            headers["Content-Type"] = "application/json"
        response = self.client.request(method, path, content=body, headers=headers)
        if response.status_code >= 400:
            try:
                message = response.json().get("error") or response.json().get("detail")
            except ValueError:
                message = response.text
            raise ApiError(response.status_code, str(message))
        return response.json()

    def submit(self, tx: bytes) -> None:
        self.request("POST", "/v1/transactions", {"tx": base64.b64encode(tx).decode(), "wait_seconds": 0})

    def receipt_future(self, tx_id: TxId) -> Future[Receipt]:
        future: Future[Receipt] = Future()

        def poll() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not future.cancelled():
                try:
                    future.set_result(receipt_from_json(self.request("GET", f"/v1/transactions/{tx_id.hex()}/receipt")))
                    return
                except ApiError as exc:
                    if exc.status != 404:
                        future.set_exception(exc)
                        return
                time.sleep(self.poll_seconds)

        threading.Thread(target=poll, daemon=True).start()
        return future

    def query(self, contract: str, name: str, args: Mapping[str, Any]) -> Any:
        answer = self.request("POST", f"/v1/queries/{contract}/{name}", dict(args))
        return decode(base64.b64decode(answer["result_cbor"]))

    def transaction_proof(self, tx_id: TxId) -> TransactionProof:
        encoded = self.request("GET", f"/v1/transactions/{tx_id.hex()}/proof")["proof"]
        return TransactionProof.decode(base64.b64decode(encoded))

    def attested_block_hash(self, number: int) -> bytes | None:
        return None


def ingest_over_http(
    gateway: HttpGateway, registrar: LedgerClient, patient: str, kind: str, data: bytes
) -> list[Receipt]:
    """Put a record into a hospital's vault over REST, then sign and submit its registrations."""
    answer = gateway.request(
        "POST", "/v1/vault/ingest", {"patient": patient, "format": kind, "content": base64.b64encode(data).decode()}
    )
    registrations = decode(base64.b64decode(answer["registrations_cbor"]))
    futures = [registrar.send(registrar.prepare("records", "register", args)) for args in registrations]
    return [LedgerClient.wait(future) for future in futures]


def fetch_over_http(
    vault_gateway: HttpGateway, client: LedgerClient, member: MemberIdentity, decision_id: str, record_id: str
) -> VerifiedRecord:
    """Ask a hospital's vault for a record under a permit over REST, and check it against the ledger."""
    signed = sign_delivery_request(
        decision_id, record_id, member.certificate.cert_id, member.key, vault_gateway.now_ms()
    )
    answer = vault_gateway.request(
        "POST", "/v1/vault/deliveries", {"request": base64.b64encode(signed.encode()).decode()}
    )
    delivery = SealedDelivery.from_dict(decode(base64.b64decode(answer["delivery"])))
    return open_verified_record(client, member.key, delivery, record_id)
