"""Reaching a node over its REST API: signed request headers and an HTTP `Gateway`.

Every request is signed for the one node it is addressed to, with a fresh random nonce, so the
node serves it once and no other node serves it at all.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import httpx

from medledger.core.encoding import decode
from medledger.core.errors import EncodingError, MedledgerError
from medledger.core.identity import CertificateVerifier, MemberIdentity
from medledger.core.signing import API_NONCE_SIZE, Domain, api_request_payload
from medledger.ledger.attestations import BlockAttestation
from medledger.ledger.proofs import TransactionProof
from medledger.ledger.receipts import Event, Receipt
from medledger.ledger.transactions import TxId
from medledger.sdk.attestations import attesting_peer, strict_majority_hash
from medledger.sdk.client import Credentials, LedgerClient
from medledger.sdk.records import VerifiedRecord, open_verified_record, sign_delivery_request
from medledger.vault import SealedDelivery


class ApiError(MedledgerError):
    """The node answered with an error; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def signed_headers(
    credentials: Credentials,
    method: str,
    path: str,
    body: bytes,
    timestamp_ms: int,
    *,
    node: str,
    nonce: bytes | None = None,
) -> dict[str, str]:
    """Headers that authenticate one request as `credentials` to the node of organisation `node`.

    A fresh random nonce is drawn unless `nonce` is given; the node serves each nonce once."""
    nonce = os.urandom(API_NONCE_SIZE) if nonce is None else nonce
    payload = api_request_payload(node, method, path, body, timestamp_ms, nonce)
    return {
        "X-Medledger-Signer": credentials.signer_ref,
        "X-Medledger-Node": node,
        "X-Medledger-Timestamp": str(timestamp_ms),
        "X-Medledger-Nonce": nonce.hex(),
        "X-Medledger-Signature": base64.b64encode(credentials.key.sign(Domain.API_REQUEST, payload)).decode(),
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


def _answer(response: httpx.Response) -> Any:
    """The JSON of a successful answer; ApiError with the node's `error` sentence otherwise."""
    if response.status_code >= 400:
        try:
            found = response.json()
            message = (found.get("error") or found.get("detail")) if isinstance(found, dict) else found
        except ValueError:
            message = response.text
        raise ApiError(response.status_code, str(message))
    try:
        return response.json()
    except ValueError as exc:
        raise ApiError(response.status_code, f"the node's answer is not JSON: {response.text[:200]!r}") from exc


class HttpGateway:
    """The SDK's Gateway over a node's REST API (httpx; a FastAPI TestClient works too).

    `node` is the organisation id of the node `client` reaches; requests are signed for it alone.
    Left out, it is read once from the node's own status, which a node could misstate: give it
    when the client must be sure which node it is talking to.

    Block attestations are checked here (medledger.sdk.attestations), against identity records
    read from the node. `trusted_cas` (organisation id -> CA certificate DER, as fixed in the
    consortium's genesis) pins which organisations count and the CA that issues their peers'
    certificates, so a node that misstates the identity state cannot make up a quorum.
    """

    def __init__(
        self,
        client: httpx.Client,
        channel: str,
        credentials: Credentials,
        *,
        node: str | None = None,
        trusted_cas: Mapping[str, bytes] | None = None,
        poll_seconds: float = 0.05,
    ):
        self.client = client
        self.channel = channel
        self.credentials = credentials
        self.trusted_cas = None if trusted_cas is None else dict(trusted_cas)
        self.poll_seconds = poll_seconds
        self._node = node
        self._verifier = CertificateVerifier(max_entries=1024)

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    @property
    def node(self) -> str:
        """The organisation id of the node this gateway addresses."""
        if self._node is None:
            status = _answer(self.client.get("/v1/status"))
            org_id = status.get("org_id") if isinstance(status, dict) else None
            if not isinstance(org_id, str) or not org_id:
                raise ApiError(200, f"the node's status names no organisation: {status!r}")
            self._node = org_id
        return self._node

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = signed_headers(self.credentials, method, path, body, self.now_ms(), node=self.node)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        return _answer(self.client.request(method, path, content=body, headers=headers))

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
        """The hash a strict majority of organisations attested for block `number`, as checked here:
        each attestation's signature, and its signer's certificate against its organisation's CA."""
        attestations = self._attestations(number)
        if not attestations:
            return None
        orgs = self.query("identity", "orgs", {})
        listed = {org.get("org_id"): org for org in (orgs if isinstance(orgs, list) else []) if isinstance(org, dict)}
        if self.trusted_cas is None:
            voters, organisations = listed, len(listed)
        else:
            voters = {
                org_id: {**listed[org_id], "ca_certificate": ca}
                for org_id, ca in self.trusted_cas.items()
                if isinstance(listed.get(org_id), dict)
            }
            organisations = len(set(listed) | set(self.trusted_cas))
        if 2 * len({a.org_id for a in attestations if a.org_id in voters}) <= organisations:
            return None
        now = self.now_ms()
        trusted = [
            attestation
            for attestation in attestations
            if attestation.org_id in voters
            and attesting_peer(
                attestation,
                voters[attestation.org_id],
                self.query("identity", "member", {"id": attestation.signer}),
                now,
                self._verifier,
            )
            is not None
        ]
        return strict_majority_hash(trusted, organisations)

    def _attestations(self, number: int) -> list[BlockAttestation]:
        """The attestations of block `number` the node serves that decode; what does not attests nothing."""
        answer = _answer(self.client.get(f"/v1/blocks/{number}/attestations"))
        encoded = answer.get("attestations") if isinstance(answer, dict) else None
        found = []
        for item in encoded if isinstance(encoded, list) else []:
            try:
                attestation = BlockAttestation.decode(base64.b64decode(item, validate=True))
            except (EncodingError, binascii.Error, ValueError, TypeError):
                continue
            if attestation.block_number == number:
                found.append(attestation)
        return found


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
