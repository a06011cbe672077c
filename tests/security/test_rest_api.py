"""Attacks on a node's REST API (medledger.api over medledger.node.service.LedgerService): forged,
mis-bound, cross-domain, stale and replayed request signatures, requests signed for another node,
callers reading what is not theirs, and path values outside what the store can hold. Each must end
in a 4xx with an `error` sentence.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from medledger.api import create_app
from medledger.core.identity import MemberIdentity, Role
from medledger.core.signing import Domain, SigningKey, api_request_payload
from medledger.node.network import EmbeddedNetwork
from medledger.node.service import MAX_REQUEST_SKEW_MS, LedgerService
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from medledger.sdk.rest import signed_headers
from tests.conftest import ManualClock, member_client
from tests.security.attacks import AttackClass, AttackLog

REST = AttackClass.REST
JSON = {"Content-Type": "application/json"}


@dataclass
class Api:
    """St Mary's and City General's REST faces over one running network, and who calls them."""

    network: EmbeddedNetwork
    clock: ManualClock
    mary: TestClient
    city: TestClient
    auditor: MemberIdentity
    registrar: MemberIdentity
    alice: PatientWallet
    bob: PatientWallet

    def headers(
        self, credentials: Credentials, method: str, path: str, body: bytes = b"", node: str = "st-mary"
    ) -> dict[str, str]:
        """Signed headers of one request addressed to `node` (St Mary's unless said otherwise)."""
        return {**signed_headers(credentials, method, path, body, self.clock(), node=node), **JSON}


def node(network: EmbeddedNetwork, org_id: str) -> TestClient:
    assert network.orderer is not None
    vault = network.vault_service(org_id) if org_id in {"st-mary", "city-general"} else None
    service = LedgerService(network.peers[org_id], network.orderer, network.clock, vault)
    return TestClient(create_app(service), raise_server_exceptions=False)


@pytest.fixture
def api(network: EmbeddedNetwork, clock: ManualClock) -> Iterator[Api]:
    registrar_client, registrar = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    _, auditor = member_client(network, "health-authority", "auditor", Role.AUDITOR)
    alice, bob = PatientWallet.generate(), PatientWallet.generate()
    for wallet in (alice, bob):
        registrar_client.submit("identity", "register_patient", wallet.enrolment_args(network.channel))
    with node(network, "st-mary") as mary, node(network, "city-general") as city:
        yield Api(network, clock, mary, city, auditor, registrar, alice, bob)


def trail_path(patient: PatientWallet) -> str:
    return f"/v1/patients/{patient.pseudonym}/audit"


def test_the_genuine_signed_request_is_served(api: Api) -> None:
    """The control: what the attacks below alter is accepted when unaltered."""
    # Prepare
    path = trail_path(api.alice)
    # Execute
    response = api.mary.get(path, headers=api.headers(Credentials.of_patient(api.alice), "GET", path))
    # Assert
    assert response.status_code == 200, response.text
    assert response.json() == {"trail": []}


def test_forged_misbound_and_cross_domain_request_signatures_are_401(api: Api, attacks: AttackLog) -> None:
    # Prepare: Alice's signed GET of her trail, altered every way an attacker could
    alice = Credentials.of_patient(api.alice)
    path, other_path = trail_path(api.alice), trail_path(api.bob)
    now = api.clock()
    genuine = api.headers(alice, "GET", path)
    nonce = bytes.fromhex(genuine["X-Medledger-Nonce"])

    def signed(
        key: SigningKey, domain: Domain, method: str = "GET", body: bytes = b"", node: str = "st-mary"
    ) -> dict[str, str]:
        """The genuine headers with the signature replaced by one of `key` in `domain`."""
        signature = key.sign(domain, api_request_payload(node, method, path, body, now, nonce))
        return {**genuine, "X-Medledger-Signature": base64.b64encode(signature).decode()}

    key = api.alice.signing_key
    stale = {**signed_headers(alice, "GET", path, b"", now - MAX_REQUEST_SKEW_MS - 1, node="st-mary"), **JSON}
    variants: dict[str, tuple[str, dict[str, str]]] = {
        "random signature bytes": (
            path,
            {**genuine, "X-Medledger-Signature": base64.b64encode(os.urandom(64)).decode()},
        ),
        "signature by another key": (path, signed(SigningKey.generate(), Domain.API_REQUEST)),
        "signature for another path, sent to this one": (other_path, genuine),
        "signature for another method": (path, signed(key, Domain.API_REQUEST, "POST")),
        "signature over another body": (path, signed(key, Domain.API_REQUEST, body=b"{}")),
        "signature in the vault-request domain": (path, signed(key, Domain.VAULT_REQUEST)),
        "signature in the transaction domain": (path, signed(key, Domain.TRANSACTION)),
        "signature for another node, node header set to this one": (path, signed(key, Domain.API_REQUEST, node="x")),
        "timestamp header changed after signing": (path, {**genuine, "X-Medledger-Timestamp": str(now + 1)}),
        "nonce header changed after signing": (path, {**genuine, "X-Medledger-Nonce": os.urandom(16).hex()}),
        "nonce that is not hex": (path, {**genuine, "X-Medledger-Nonce": "not hex"}),
        "nonce of 8 bytes": (path, {**genuine, "X-Medledger-Nonce": nonce[:8].hex()}),
        "request without a nonce": (
            path,
            {k: v for k, v in genuine.items() if k != "X-Medledger-Nonce"},
        ),
        "request without a node": (path, {k: v for k, v in genuine.items() if k != "X-Medledger-Node"}),
        "signature that is not base64": (path, {**genuine, "X-Medledger-Signature": "!!not base64!!"}),
        "no signature headers at all": (path, JSON),
        "another patient's name on Alice's signature": (
            path,
            {**genuine, "X-Medledger-Signer": f"patient:{api.bob.pseudonym}"},
        ),
        "signer that is neither member nor patient": (path, {**genuine, "X-Medledger-Signer": "admin:root"}),
        "request signed more than five minutes ago": (path, stale),
    }
    for what in variants:
        attacks.tried(REST, f"signed request: {what}")
    # Execute
    responses = {what: api.mary.get(at, headers=headers) for what, (at, headers) in variants.items()}
    # Assert
    statuses = {what: r.status_code for what, r in responses.items()}
    assert set(statuses.values()) == {401}, statuses
    assert all(r.json()["error"] for r in responses.values())


def test_revoked_and_unregistered_members_are_401(api: Api, attacks: AttackLog) -> None:
    # Prepare
    net = api.network
    leaver_client, leaver = member_client(net, "st-mary", "leaver", Role.CLINICIAN)
    admin = LedgerClient(net.gateway("st-mary"), Credentials.of_member(net.admin("st-mary")))
    admin.submit("identity", "revoke_member", {"cert_id": leaver.certificate.cert_id, "reason": "left"})
    ghost = net.ca("st-mary").enrol("ghost", Role.CLINICIAN, api.clock())
    path = "/v1/queries/identity/orgs"
    attacks.tried(REST, "request signed by a revoked member")
    attacks.tried(REST, "request signed by a certificate never registered")
    # Execute
    revoked = api.mary.post(
        path, content=b"{}", headers=api.headers(Credentials.of_member(leaver), "POST", path, b"{}")
    )
    unknown = api.mary.post(path, content=b"{}", headers=api.headers(Credentials.of_member(ghost), "POST", path, b"{}"))
    # Assert
    assert revoked.status_code == 401 and "CERT_REVOKED" in revoked.json()["error"]
    assert unknown.status_code == 401 and "UNKNOWN_SIGNER" in unknown.json()["error"]
    assert leaver_client.query("identity", "orgs")  # the leaver's key still works in-process; the API refuses it


def test_callers_cannot_read_what_is_not_theirs(api: Api, attacks: AttackLog) -> None:
    # Prepare
    alice = Credentials.of_patient(api.alice)
    registrar = Credentials.of_member(api.registrar)
    researcher_client, researcher = member_client(api.network, "northern-research", "researcher", Role.RESEARCHER)
    reads: dict[str, tuple[TestClient, str, str, bytes, Credentials]] = {
        "patient reads another patient's audit trail": (
            api.mary, "GET", trail_path(api.bob), b"", alice,
        ),
        "patient reads another patient's consents": (
            api.mary, "POST", "/v1/queries/consent/list", json.dumps({"patient": api.bob.pseudonym}).encode(), alice,
        ),
        "member who is not an auditor reads a patient's consents": (
            api.mary, "POST", "/v1/queries/consent/list", json.dumps({"patient": api.alice.pseudonym}).encode(),
            registrar,
        ),
        "patient asks for a member-only permit check": (
            api.mary, "POST", "/v1/queries/access/permit_status",
            json.dumps({"decision_id": "0" * 32, "requester": "0" * 64, "record_id": "0" * 32, "at_ms": 0}).encode(),
            alice,
        ),
        "research member puts a record into St Mary's vault": (
            api.mary, "POST", "/v1/vault/ingest",
            json.dumps({"patient": api.alice.pseudonym, "format": "fhir", "content": "e30="}).encode(),
            Credentials.of_member(researcher),
        ),
        "patient fetches ordered batches meant for peers": (
            api.mary, "GET", "/v1/batches/1", b"", alice,
        ),
        "query that is not in the read-rules table": (
            api.mary, "POST", "/v1/queries/identity/secret_keys", b"{}", registrar,
        ),
    }  # fmt: skip
    for what in reads:
        attacks.tried(REST, what)
    # Execute
    responses = {
        what: client.request(method, path, content=body, headers=api.headers(who, method, path, body))
        for what, (client, method, path, body, who) in reads.items()
    }
    # Assert
    statuses = {what: r.status_code for what, r in responses.items()}
    assert statuses == {
        "patient reads another patient's audit trail": 403,
        "patient reads another patient's consents": 403,
        "member who is not an auditor reads a patient's consents": 403,
        "patient asks for a member-only permit check": 403,
        "research member puts a record into St Mary's vault": 403,
        "patient fetches ordered batches meant for peers": 403,
        "query that is not in the read-rules table": 404,
    }
    assert all(r.json()["error"] for r in responses.values())
    assert researcher_client.query("identity", "orgs")


def test_a_replayed_signed_request_is_refused(api: Api, attacks: AttackLog) -> None:
    # Prepare: the auditor's signed request for Alice's trail, captured on the way
    path = trail_path(api.alice)
    captured = api.headers(Credentials.of_member(api.auditor), "GET", path)
    first = api.mary.get(path, headers=captured)
    attacks.tried(REST, "the same signed request sent a second time within the five-minute window")
    attacks.tried(REST, "the same signed request sent again at the edge of the five-minute window")
    attacks.tried(REST, "the same signed request sent again after the five-minute window")
    # Execute
    replay = api.mary.get(path, headers=captured)
    api.clock.advance(MAX_REQUEST_SKEW_MS)
    at_the_edge = api.mary.get(path, headers=captured)
    api.clock.advance(1)
    after_the_window = api.mary.get(path, headers=captured)
    fresh = api.mary.get(path, headers=api.headers(Credentials.of_member(api.auditor), "GET", path))
    # Assert
    assert first.status_code == 200
    assert replay.status_code == 401 and "REPLAYED" in replay.json()["error"], replay.text
    assert at_the_edge.status_code == 401 and "REPLAYED" in at_the_edge.json()["error"], at_the_edge.text
    assert after_the_window.status_code == 401 and "5 minutes" in after_the_window.json()["error"]
    assert fresh.status_code == 200, "a freshly signed request by the same caller is served"


def test_a_request_captured_before_the_node_restarted_is_refused_after(api: Api, attacks: AttackLog) -> None:
    # Prepare: the auditor's request is served, then St Mary's node restarts (a new service, empty memory)
    path = trail_path(api.alice)
    captured = api.headers(Credentials.of_member(api.auditor), "GET", path)
    first = api.mary.get(path, headers=captured)
    api.clock.advance(1)
    attacks.tried(REST, "a signed request served before the node restarted, sent again after")
    # Execute
    with node(api.network, "st-mary") as restarted:
        replay = restarted.get(path, headers=captured)
        fresh = restarted.get(path, headers=api.headers(Credentials.of_member(api.auditor), "GET", path))
    # Assert
    assert first.status_code == 200
    assert replay.status_code == 401 and "REQUEST_TOO_OLD" in replay.json()["error"], replay.text
    assert fresh.status_code == 200


def test_concurrent_copies_of_one_signed_request_are_served_once(api: Api, attacks: AttackLog) -> None:
    # Prepare: eight copies of one captured request, sent at once
    path = trail_path(api.alice)
    captured = api.headers(Credentials.of_member(api.auditor), "GET", path)
    attacks.tried(REST, "eight copies of one signed request sent concurrently")
    # Execute
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: api.mary.get(path, headers=captured).status_code, range(8)))
    # Assert
    assert sorted(statuses) == [200] + [401] * 7, statuses


def test_a_request_signed_for_one_node_is_refused_by_another(api: Api, attacks: AttackLog) -> None:
    # Prepare: the auditor signs for St Mary's node; the request is sent to City General's instead
    path = trail_path(api.alice)
    signed_for_mary = api.headers(Credentials.of_member(api.auditor), "GET", path)
    relabelled = {**signed_for_mary, "X-Medledger-Node": "city-general"}
    attacks.tried(REST, "request signed for St Mary's node replayed at City General's node")
    attacks.tried(REST, "request signed for St Mary's node, node header rewritten to City General")
    # Execute
    at_city = api.city.get(path, headers=signed_for_mary)
    relabelled_at_city = api.city.get(path, headers=relabelled)
    at_mary = api.mary.get(path, headers=signed_for_mary)
    # Assert
    assert at_city.status_code == 401 and "WRONG_NODE" in at_city.json()["error"], at_city.text
    assert relabelled_at_city.status_code == 401 and "does not verify" in relabelled_at_city.json()["error"]
    assert at_mary.status_code == 200, "the node the request was signed for serves it"


@pytest.mark.parametrize("template", ["/v1/blocks/{}", "/v1/blocks/{}/attestations", "/v1/batches/{}"])
def test_a_block_number_beyond_64_bits_gets_a_clear_4xx(api: Api, attacks: AttackLog, template: str) -> None:
    # Prepare
    path = template.format(2**63)
    attacks.tried(REST, f"GET {template.format('2**63')}")
    # Execute
    response = api.mary.get(path, headers=api.headers(Credentials.of_member(api.auditor), "GET", path))
    # Assert
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text}"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/transactions", {"tx": "\u0080", "wait_seconds": 0}),
        ("/v1/vault/deliveries", {"request": "é"}),
        ("/v1/vault/ingest", {"patient": "0" * 32, "format": "fhir", "content": "ü"}),
    ],
    ids=["transactions", "deliveries", "ingest"],
)
def test_a_base64_field_holding_non_ascii_text_gets_a_400(
    api: Api, attacks: AttackLog, path: str, body: dict[str, object]
) -> None:
    # Prepare
    raw = json.dumps(body).encode()
    attacks.tried(REST, f"POST {path} with non-ASCII text in its base64 field")
    # Execute
    response = api.mary.post(
        path, content=raw, headers=api.headers(Credentials.of_member(api.registrar), "POST", path, raw)
    )
    # Assert
    assert response.status_code == 400, f"{response.status_code}: {response.text}"
