"""The node's REST API over a running embedded network: signed requests, submission, reads, errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from medledger.api import create_app
from medledger.core.identity import Role
from medledger.ledger.proofs import TransactionProof, verify_transaction_proof
from medledger.node.network import EmbeddedNetwork
from medledger.node.service import LedgerService
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from medledger.sdk.rest import ApiError, HttpGateway, signed_headers
from tests.conftest import member_client


@pytest.fixture
def http(network: EmbeddedNetwork) -> Iterator[TestClient]:
    peer = network.peers["st-mary"]
    assert network.orderer is not None
    service = LedgerService(peer, network.orderer, network.clock)
    with TestClient(create_app(service)) as client:
        yield client


def test_submit_and_read_back_over_http(network: EmbeddedNetwork, http: TestClient) -> None:
    # Prepare
    _, registrar = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    gateway = HttpGateway(http, network.channel, Credentials.of_member(registrar))
    gateway.now_ms = network.clock  # type: ignore[method-assign]
    client = LedgerClient(gateway, Credentials.of_member(registrar))
    wallet = PatientWallet.generate()
    # Execute
    receipt = client.submit("identity", "register_patient", wallet.enrolment_args(network.channel))
    # Assert
    assert receipt.is_valid
    assert client.query("identity", "patient", id=wallet.pseudonym)["enrolled_by"] == "st-mary"
    proof = gateway.transaction_proof(receipt.tx_id)
    assert verify_transaction_proof(proof).tx_id == receipt.tx_id
    assert http.get("/v1/status").json()["org_id"] == "st-mary"
    assert gateway.node == "st-mary"  # read from the node's status, as no node was given


def test_a_proof_fetched_right_after_the_commit_checks_against_the_quorum_over_http(
    network: EmbeddedNetwork, http: TestClient
) -> None:
    # Prepare
    _, registrar = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    credentials = Credentials.of_member(registrar)
    gateway = HttpGateway(http, network.channel, credentials, node="st-mary")
    gateway.now_ms = network.clock  # type: ignore[method-assign]
    client = LedgerClient(gateway, credentials)
    receipt = client.submit("identity", "register_patient", PatientWallet.generate().enrolment_args(network.channel))
    # Execute: no later block is waited for
    proven = client.proof(receipt.tx_id)
    # Assert
    block = network.peers["st-mary"].store.block(proven.block_number)
    assert block is not None and proven.block_hash == block.hash
    assert gateway.attested_block_hash(proven.block_number) == block.hash
    assert proven.receipt.is_valid


def test_patients_read_only_their_own_trail(network: EmbeddedNetwork, http: TestClient) -> None:
    # Prepare
    registrar_client, _ = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    alice, bob = PatientWallet.generate(), PatientWallet.generate()
    for wallet in (alice, bob):
        registrar_client.submit("identity", "register_patient", wallet.enrolment_args(network.channel))
    as_alice = HttpGateway(http, network.channel, Credentials.of_patient(alice))
    as_alice.now_ms = network.clock  # type: ignore[method-assign]
    # Execute / Assert
    assert as_alice.query("audit", "trail", {"patient": alice.pseudonym}) == []
    with pytest.raises(ApiError) as refused:
        as_alice.query("audit", "trail", {"patient": bob.pseudonym})
    assert refused.value.status == 403


def test_unauthenticated_and_forged_requests_are_refused(network: EmbeddedNetwork, http: TestClient) -> None:
    # Prepare
    admin = Credentials.of_member(network.admin("st-mary"))
    path = "/v1/queries/identity/orgs"
    body = b"{}"
    good = signed_headers(admin, "POST", path, body, network.clock(), node="st-mary")
    forged = {**good, "X-Medledger-Signature": base64.b64encode(bytes(64)).decode()}
    stale = signed_headers(admin, "POST", path, body, network.clock() - 10 * 60 * 1000, node="st-mary")
    json_type = {"Content-Type": "application/json"}
    # Execute
    missing = http.post(path, content=body, headers=json_type)
    bad = http.post(path, content=body, headers={**forged, **json_type})
    old = http.post(path, content=body, headers={**stale, **json_type})
    ok = http.post(path, content=body, headers={**good, **json_type})
    # Assert
    assert missing.status_code == 401 and "X-Medledger-Signer" in missing.json()["error"]
    assert bad.status_code == 401 and "does not verify" in bad.json()["error"]
    assert old.status_code == 401 and "5 minutes" in old.json()["error"]
    assert ok.status_code == 200 and len(ok.json()["result"]) == 5


def test_malformed_submissions_get_a_clear_400(http: TestClient) -> None:
    # Execute
    not_base64 = http.post("/v1/transactions", json={"tx": "***"})
    not_a_tx = http.post("/v1/transactions", json={"tx": base64.b64encode(b"\x00garbage").decode()})
    wrong_shape = http.post("/v1/transactions", json={"transaction": "AA=="})
    # Assert
    assert not_base64.status_code == 400 and "base64" in not_base64.json()["error"]
    assert not_a_tx.status_code == 400 and "not a medledger transaction" in not_a_tx.json()["error"]
    assert wrong_shape.status_code == 422


def test_proof_of_unknown_transaction_is_404(network: EmbeddedNetwork, http: TestClient) -> None:
    # Prepare
    admin = Credentials.of_member(network.admin("st-mary"))
    path = f"/v1/transactions/{'ab' * 32}/proof"
    # Execute
    response = http.get(path, headers=signed_headers(admin, "GET", path, b"", network.clock(), node="st-mary"))
    # Assert
    assert response.status_code == 404


def test_the_openapi_document_is_published(http: TestClient) -> None:
    # Execute
    spec = http.get("/openapi.json").json()
    # Assert
    assert "/v1/transactions" in spec["paths"]
    assert TransactionProof.__name__  # the proof endpoint returns encoded TransactionProof bytes
