"""The record-sharing workflow over the REST API: ingest into a hospital's vault, consent, ask,
fetch from the vault and read the audit trail, each as its own signed HTTP call."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from medledger.api import create_app
from medledger.core.identity import Role
from medledger.demo.samples import lab_bundle
from medledger.node.network import EmbeddedNetwork
from medledger.node.service import LedgerService
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from medledger.sdk.rest import ApiError, HttpGateway, fetch_over_http, ingest_over_http
from tests.conftest import DAY_MS, member_client


def node_app(network: EmbeddedNetwork, org_id: str) -> TestClient:
    assert network.orderer is not None
    vault = network.vault_service(org_id) if org_id in {"st-mary", "city-general"} else None
    service = LedgerService(network.peers[org_id], network.orderer, network.clock, vault)
    return TestClient(create_app(service))


@dataclass
class Http:
    network: EmbeddedNetwork
    hospital_a: TestClient
    hospital_b: TestClient

    def gateway(self, node: TestClient, credentials: Credentials) -> HttpGateway:
        gateway = HttpGateway(node, self.network.channel, credentials)
        gateway.now_ms = self.network.clock  # type: ignore[method-assign]
        return gateway

    def client(self, node: TestClient, credentials: Credentials) -> tuple[HttpGateway, LedgerClient]:
        gateway = self.gateway(node, credentials)
        return gateway, LedgerClient(gateway, credentials)


@pytest.fixture
def http(network: EmbeddedNetwork) -> Iterator[Http]:
    with node_app(network, "st-mary") as a, node_app(network, "city-general") as b:
        yield Http(network, a, b)


def test_sharing_over_http(http: Http) -> None:
    # Prepare: staff and a patient
    network = http.network
    _, registrar = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    _, clinician = member_client(network, "city-general", "dr-b", Role.CLINICIAN)
    registrar_gateway, registrar_client = http.client(http.hospital_a, Credentials.of_member(registrar))
    patient = PatientWallet.generate()
    registrar_client.submit("identity", "register_patient", patient.enrolment_args(network.channel))
    bundle, recent_date, _ = lab_bundle(datetime.date(2026, 1, 1))

    # Execute: ingest over HTTP (vault stores, registrar signs the registrations)
    receipts = ingest_over_http(registrar_gateway, registrar_client, patient.pseudonym, "fhir", bundle)
    assert [r.code for r in receipts] == ["VALID", "VALID"]
    record_id = next(
        r["record_id"]
        for r in registrar_client.query("records", "by_patient", patient=patient.pseudonym)
        if r["clinical_date"] == recent_date
    )
    # the patient grants over HTTP
    _, patient_client = http.client(http.hospital_a, Credentials.of_patient(patient))
    now = network.clock()
    patient_client.submit(
        "consent",
        "grant",
        {
            "provision": "permit",
            "grantee": {"org": "city-general"},
            "purposes": ["TREAT"],
            "scope": {"categories": ["laboratory"]},
            "valid_from": now,
            "valid_until": now + 30 * DAY_MS,
        },
    )
    # the clinician asks through its own hospital's node and fetches from A's vault
    _, doctor = http.client(http.hospital_b, Credentials.of_member(clinician))
    receipt = doctor.submit("access", "request", {"record_id": record_id, "purpose": "TREAT"})
    decision_id = receipt.events[0].attributes["decision_id"]
    network.wait_until_synced()
    vault_gateway = http.gateway(http.hospital_a, Credentials.of_member(clinician))
    verified = fetch_over_http(vault_gateway, doctor, clinician, decision_id, record_id)

    # Assert
    assert b'"value":6.50' in verified.plaintext
    trail_gateway = http.gateway(http.hospital_a, Credentials.of_patient(patient))
    trail = trail_gateway.request("GET", f"/v1/patients/{patient.pseudonym}/audit")["trail"]
    assert [e["event"] for e in trail][-4:] == ["consent.grant", "access.request", "access.decision", "access.delivery"]
    exported = trail_gateway.request("GET", f"/v1/patients/{patient.pseudonym}/audit/fhir")
    assert len(Bundle.model_validate(exported).entry or []) == len(trail)


def test_only_the_hospitals_writers_put_records(http: Http) -> None:
    # Prepare
    network = http.network
    _, nurse_elsewhere = member_client(network, "city-general", "nurse", Role.NURSE)
    _, researcher = member_client(network, "northern-research", "researcher", Role.RESEARCHER)
    body = {"patient": "a" * 32, "format": "fhir", "content": "e30="}
    # Execute / Assert
    for member in (nurse_elsewhere, researcher):
        gateway = http.gateway(http.hospital_a, Credentials.of_member(member))
        with pytest.raises(ApiError) as refused:
            gateway.request("POST", "/v1/vault/ingest", body)
        assert refused.value.status == 403


def test_bad_files_and_requests_get_named_errors(http: Http) -> None:
    # Prepare
    network = http.network
    _, registrar = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    registrar_gateway, registrar_client = http.client(http.hospital_a, Credentials.of_member(registrar))
    patient = PatientWallet.generate()
    registrar_client.submit("identity", "register_patient", patient.enrolment_args(network.channel))
    broken = {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}}
    # Execute
    with pytest.raises(ApiError) as bad_fhir:
        ingest_over_http(
            registrar_gateway, registrar_client, patient.pseudonym, "fhir", __import__("json").dumps(broken).encode()
        )
    with pytest.raises(ApiError) as bad_hl7:
        ingest_over_http(registrar_gateway, registrar_client, patient.pseudonym, "hl7", b"PID|not a message")
    bad_delivery = http.hospital_a.post("/v1/vault/deliveries", json={"request": "AAAA"})
    # Assert
    assert bad_fhir.value.status == 400 and "status" in str(bad_fhir.value)
    assert bad_hl7.value.status == 400 and "MSH" in str(bad_hl7.value)
    assert bad_delivery.status_code == 400 and "not a delivery request" in bad_delivery.json()["error"]
