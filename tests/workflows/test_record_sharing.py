"""Cross-institution record sharing, end to end: two hospitals, a third one, a research institute,
a regulator and one patient on a running embedded network with real vaults.

Hospital A ingests a FHIR Bundle, an HL7 v2 ORU message and a DICOM file; the patient grants
hospital B TREAT access to laboratory results of the last six months for thirty days; then B,
C and the research institute ask for records under the conditions the issue lists, and every
step must appear, in order, in the patient's audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from hl7apy.core import Message

from medledger.contracts.records import record_id_for
from medledger.core.identity import MemberIdentity, OrgKind, Role
from medledger.demo.samples import ct_image
from medledger.node.delivery import DeliveryRefused
from medledger.node.ingestion import IngestedRecord
from medledger.node.network import EmbeddedNetwork, OrgSpec
from medledger.ordering.cutter import CutterConfig
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from medledger.sdk.records import open_verified_record, sign_delivery_request
from medledger.standards.audit_event import audit_bundle_json
from medledger.vault import KeyDeliveryError, VaultIntegrityError, open_delivery
from tests.conftest import DAY_MS, ManualClock, member_client

ORGS = (
    OrgSpec("st-mary", OrgKind.HOSPITAL, "Hospital A"),
    OrgSpec("city-general", OrgKind.HOSPITAL, "Hospital B"),
    OrgSpec("riverside", OrgKind.HOSPITAL, "Hospital C"),
    OrgSpec("northern-research", OrgKind.RESEARCH, "Research institute"),
    OrgSpec("mutual-health", OrgKind.INSURER, "Insurer"),
    OrgSpec("health-authority", OrgKind.REGULATOR, "Regulator"),
)


def lab_bundle() -> bytes:
    def observation(ident: str, date: str, value: str) -> dict[str, Any]:
        return {
            "fullUrl": f"urn:uuid:{ident}",
            "resource": {
                "resourceType": "Observation",
                "id": ident,
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "laboratory",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
                "effectiveDateTime": date,
                "valueQuantity": {"value": "VALUE", "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
            },
        }

    recent = observation("hba1c-recent", "2025-11-15T08:30:00Z", "6.50")
    old = observation("hba1c-old", "2025-01-10T08:30:00Z", "7.10")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [recent, old]}
    # decimals go in as JSON numbers with their trailing zeros, which must survive
    text = json.dumps(bundle).replace('"VALUE"', "6.50", 1).replace('"VALUE"', "7.10", 1)
    return text.encode()


def oru_message() -> bytes:
    message = Message("ORU_R01", version="2.5")
    message.msh.msh_3 = "LAB"
    message.msh.msh_4 = "ST-MARY"
    message.msh.msh_7 = "20251201083000+0000"
    message.msh.msh_9 = "ORU^R01^ORU_R01"
    message.msh.msh_10 = "MSG0001"
    message.msh.msh_11 = "P"
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    patient.pid.pid_3 = "MRN123^^^ST-MARY^MR"
    patient.pid.pid_5 = "Osei^Ama"
    patient.pid.pid_8 = "F"
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.obr.obr_1 = "1"
    order.obr.obr_4 = "24323-8^Comprehensive metabolic panel^LN"
    order.obr.obr_7 = "20251201080000"
    observation = order.add_group("ORU_R01_OBSERVATION")
    observation.obx.obx_1 = "1"
    observation.obx.obx_2 = "NM"
    observation.obx.obx_3 = "2345-7^Glucose^LN"
    observation.obx.obx_5 = "5.40"
    observation.obx.obx_6 = "mmol/L"
    observation.obx.obx_11 = "F"
    return str(message.to_er7()).encode()


@dataclass
class World:
    network: EmbeddedNetwork
    clock: ManualClock
    patient: PatientWallet
    patient_client: LedgerClient
    clinician_b: MemberIdentity
    client_b: LedgerClient
    clinician_c: MemberIdentity
    client_c: LedgerClient
    researcher: MemberIdentity
    client_research: LedgerClient
    auditor: LedgerClient
    records: list[IngestedRecord]
    registrar: MemberIdentity

    def grant_b(self, days: int = 30) -> str:
        now = self.clock()
        receipt = self.patient_client.submit(
            "consent",
            "grant",
            {
                "provision": "permit",
                "grantee": {"org": "city-general"},
                "purposes": ["TREAT"],
                "scope": {
                    "categories": ["laboratory"],
                    "resource_types": ["Observation", "DiagnosticReport"],
                    "date_from": "2025-07-01",
                },
                "valid_from": now,
                "valid_until": now + days * DAY_MS,
            },
        )
        return str(receipt.events[0].attributes["consent_id"])

    def request(
        self, client: LedgerClient, record_id: str, purpose: str = "TREAT", justification: str | None = None
    ) -> dict[str, Any]:
        args: dict[str, Any] = {"record_id": record_id, "purpose": purpose}
        if justification is not None:
            args["justification"] = justification
        receipt = client.submit("access", "request", args)
        decision_id = receipt.events[0].attributes["decision_id"]
        decision = client.query("access", "decision", decision_id=decision_id)
        assert decision is not None
        return dict(decision)

    def fetch(self, member: MemberIdentity, decision: dict[str, Any]) -> bytes:
        self.network.wait_until_synced()  # the vault decides at its own latest block
        signed = sign_delivery_request(
            decision["decision_id"], decision["record_id"], member.certificate.cert_id, member.key, self.clock()
        )
        delivery = self.network.vault_service("st-mary").deliver(signed)
        client = self.client_b if member is self.clinician_b else self.client_c
        return open_verified_record(client, member.key, delivery, decision["record_id"]).plaintext


@pytest.fixture
def world(tmp_path: Path, clock: ManualClock) -> Iterator[World]:
    network = EmbeddedNetwork.create(
        tmp_path / "net", ORGS, clock=clock, cutter=CutterConfig(max_tx=100, time_to_cut_ms=10)
    )
    with network:
        _, registrar = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
        registrar_client = LedgerClient(network.gateway("st-mary"), Credentials.of_member(registrar))
        client_b, clinician_b = member_client(network, "city-general", "dr-b", Role.CLINICIAN)
        client_c, clinician_c = member_client(network, "riverside", "dr-c", Role.CLINICIAN)
        client_research, researcher = member_client(network, "northern-research", "researcher", Role.RESEARCHER)
        auditor, _ = member_client(network, "health-authority", "auditor", Role.AUDITOR)
        patient = PatientWallet.generate()
        registrar_client.submit("identity", "register_patient", patient.enrolment_args(network.channel))
        ingest = network.ingestor("st-mary", registrar)
        records = ingest.put_fhir(patient.pseudonym, lab_bundle())
        records += ingest.put_hl7(patient.pseudonym, oru_message())
        records.append(ingest.put_dicom(patient.pseudonym, ct_image()))
        patient_client = LedgerClient(network.gateway("st-mary"), Credentials.of_patient(patient))
        network.wait_until_synced()
        yield World(
            network,
            clock,
            patient,
            patient_client,
            clinician_b,
            client_b,
            clinician_c,
            client_c,
            researcher,
            client_research,
            auditor,
            records,
            registrar,
        )


def by_date(world: World, date_prefix: str, resource_type: str = "Observation") -> IngestedRecord:
    return next(
        r for r in world.records if r.resource_type == resource_type and r.clinical_date.startswith(date_prefix)
    )


def test_the_record_sharing_scenario(world: World) -> None:
    # Prepare
    recent, old = by_date(world, "2025-11-15"), by_date(world, "2025-01-10")
    world.clock.advance(1000)
    world.grant_b(days=30)
    steps: list[str] = []

    # Execute / Assert: B reads a recent lab result, verified against hash and proof
    decision = world.request(world.client_b, recent.record_id)
    assert decision["outcome"] == "permit", decision["reason"]
    plaintext = world.fetch(world.clinician_b, decision)
    assert b'"value":6.50' in plaintext
    steps += ["access.request", "access.decision", "access.delivery"]

    # an older record is outside the six-month window
    denied_old = world.request(world.client_b, old.record_id)
    assert denied_old["outcome"] == "deny"
    assert "clinical dates from 2025-07-01" in denied_old["reason"]
    steps += ["access.request", "access.decision"]

    # an unrelated hospital is not covered
    denied_c = world.request(world.client_c, recent.record_id)
    assert denied_c["outcome"] == "deny" and "no consent" in denied_c["reason"]
    steps += ["access.request", "access.decision"]

    # after the thirty days
    world.clock.advance(31 * DAY_MS)
    expired = world.request(world.client_b, recent.record_id)
    assert expired["outcome"] == "deny" and "expired" in expired["reason"]
    steps += ["access.request", "access.decision"]

    # a fresh grant, a permit, then a revoke: the permit no longer opens the vault, new asks are denied
    consent_id = world.grant_b(days=30)
    before_revoke = world.request(world.client_b, recent.record_id)
    assert before_revoke["outcome"] == "permit"
    world.patient_client.submit("consent", "revoke", {"consent_id": consent_id})
    with pytest.raises(DeliveryRefused) as refused:
        world.fetch(world.clinician_b, before_revoke)
    assert refused.value.code == "NO_PERMIT" and "revoked" in refused.value.reason
    after_revoke = world.request(world.client_b, recent.record_id)
    assert after_revoke["outcome"] == "deny"
    steps += [
        "consent.grant",
        "access.request",
        "access.decision",
        "consent.revoke",
        "access.request",
        "access.decision",
    ]

    # break-glass by B: permitted, flagged, delivered, and shown to the patient
    emergency = world.request(
        world.client_b, old.record_id, "ETREAT", "unconscious patient in A&E, HbA1c history needed now"
    )
    assert emergency["outcome"] == "permit" and emergency["flags"] == ["break-glass", "review"]
    assert world.fetch(world.clinician_b, emergency)
    notices = world.patient_client.query("access", "notices", patient=world.patient.pseudonym)
    assert [n["decision_id"] for n in notices] == [emergency["decision_id"]]
    steps += ["access.request", "access.decision", "access.delivery"]

    # research purpose under a TREAT-only grant
    world.grant_b(days=30)
    research = world.request(world.client_research, recent.record_id, "HRESCH")
    assert research["outcome"] == "deny"
    steps += ["consent.grant", "access.request", "access.decision"]

    # the audit trail holds every step, in order, after the registrations and the first grant
    world.network.wait_until_synced()
    trail = world.patient_client.query("audit", "trail", patient=world.patient.pseudonym)
    events = [e["event"] for e in trail]
    registrations = len(world.records)
    assert events[:registrations] == ["record.register"] * registrations
    assert events[registrations] == "consent.grant"
    assert events[registrations + 1 :] == steps
    accesses = world.patient_client.query("audit", "accesses", patient=world.patient.pseudonym)
    assert {a["agent"]["org"] for a in accesses} == {"city-general", "riverside", "northern-research", "st-mary"}

    # and it exports as FHIR AuditEvents that fhir.resources accepts
    bundle = audit_bundle_json(trail)
    assert len(bundle["entry"]) == len(trail)
    for entry in bundle["entry"]:
        AuditEvent.model_validate(entry["resource"])


def test_a_changed_ciphertext_is_refused_with_a_named_integrity_error(world: World) -> None:
    # Prepare
    recent = by_date(world, "2025-11-15")
    world.grant_b()
    decision = world.request(world.client_b, recent.record_id)
    service = world.network.vault_service("st-mary")
    object_id = service.vault.object_id_for(recent.locator)
    backend = service.vault.backend
    db = backend._db  # type: ignore[attr-defined]
    row = db.execute("SELECT ciphertext FROM objects WHERE object_id=?", (object_id,)).fetchone()
    tampered = bytearray(row[0])
    tampered[10] ^= 0x01
    db.execute("UPDATE objects SET ciphertext=? WHERE object_id=?", (bytes(tampered), object_id))
    # Execute / Assert
    with pytest.raises(VaultIntegrityError) as broken:
        world.fetch(world.clinician_b, decision)
    assert object_id in str(broken.value)


def test_a_record_sent_to_the_wrong_requester_cannot_be_decrypted(world: World) -> None:
    # Prepare
    recent = by_date(world, "2025-11-15")
    world.grant_b()
    decision = world.request(world.client_b, recent.record_id)
    signed = sign_delivery_request(
        decision["decision_id"],
        recent.record_id,
        world.clinician_b.certificate.cert_id,
        world.clinician_b.key,
        world.clock(),
    )
    world.network.wait_until_synced()
    delivery = world.network.vault_service("st-mary").deliver(signed)
    # Execute / Assert: C intercepts B's delivery
    with pytest.raises(KeyDeliveryError):
        open_delivery(delivery, world.clinician_c.key.x25519_private_key())
    assert open_delivery(delivery, world.clinician_b.key.x25519_private_key())


def test_a_replayed_delivery_request_is_refused(world: World) -> None:
    # Prepare
    recent = by_date(world, "2025-11-15")
    world.grant_b()
    decision = world.request(world.client_b, recent.record_id)
    signed = sign_delivery_request(
        decision["decision_id"],
        recent.record_id,
        world.clinician_b.certificate.cert_id,
        world.clinician_b.key,
        world.clock(),
    )
    service = world.network.vault_service("st-mary")
    world.network.wait_until_synced()
    service.deliver(signed)
    # Execute / Assert
    with pytest.raises(DeliveryRefused) as replay:
        service.deliver(signed)
    assert replay.value.code == "REPLAYED"


def test_records_keep_their_ids_and_registrations(world: World) -> None:
    # Assert: what the ledger indexes for each ingested record matches the ingestion
    for record in world.records:
        entry = world.network.peers["city-general"].query("records", "get", {"record_id": record.record_id})
        assert entry["content_hash"] == record.content_hash
        assert entry["ciphertext_hash"] == record.ciphertext_hash
        assert entry["source_org"] == "st-mary"
        assert record.record_id == record_id_for(record.tx_id)
    kinds = sorted({r.resource_type for r in world.records})
    assert {"Observation", "DiagnosticReport", "Patient", "Binary", "ImagingStudy"} <= set(kinds)
    dicom = next(r for r in world.records if r.resource_type == "ImagingStudy")
    entry = world.network.peers["st-mary"].query("records", "get", {"record_id": dicom.record_id})
    assert set(entry["parts"]) == {"header", "pixel_data"}


def test_an_amendment_is_a_new_version_in_provenance_shape(world: World) -> None:
    # Prepare
    recent = by_date(world, "2025-11-15")
    ingest = world.network.ingestor("st-mary", world.registrar)
    corrected = json.loads(lab_bundle())["entry"][0]["resource"]
    corrected["valueQuantity"]["value"] = 6.4
    # Execute
    amended = ingest.amend_fhir(recent.record_id, json.dumps(corrected), "analyser recalibrated")
    # Assert
    world.network.wait_until_synced()
    history = world.client_b.query("records", "history", record_id=amended.record_id)
    assert [v["record_id"] for v in history] == [amended.record_id, recent.record_id]
    provenance = history[0]["provenance"]
    assert provenance["resourceType"] == "Provenance"
    assert provenance["entity"] == [{"role": "revision", "what": {"reference": f"record/{recent.record_id}"}}]
    assert provenance["reason"] == "analyser recalibrated"
    assert history[1]["status"] == "superseded"
    trail = world.patient_client.query("audit", "trail", patient=world.patient.pseudonym)
    assert trail[-1]["event"] == "record.amend"
