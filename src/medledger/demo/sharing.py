"""The record-sharing scenario the demo runs after the foundation: ingest, consent, ask, fetch,
refuse, break the glass, revoke, and show the patient's audit trail."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from medledger.core.identity import MemberIdentity
from medledger.demo.samples import ct_image, lab_bundle, oru_message
from medledger.node.delivery import DeliveryRefused
from medledger.node.network import EmbeddedNetwork
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from medledger.sdk.records import open_verified_record, sign_delivery_request

DAY_MS = 86_400_000


@dataclass
class SharingStep:
    """One thing that happened, as the demo reports it."""

    who: str
    what: str
    outcome: str
    reason: str


@dataclass
class SharingSummary:
    patient: str
    records: int = 0
    steps: list[SharingStep] = field(default_factory=list)
    trail: list[dict[str, Any]] = field(default_factory=list)


def _member(staff: list[MemberIdentity], name: str) -> MemberIdentity:
    return next(m for m in staff if m.certificate.name == name)


def run_sharing_scenario(
    network: EmbeddedNetwork, staff: dict[str, list[MemberIdentity]], wallet: PatientWallet
) -> SharingSummary:
    hospital_a, hospital_b = "st-mary", "city-general"
    summary = SharingSummary(wallet.pseudonym)
    today = datetime.datetime.fromtimestamp(network.clock() / 1000, datetime.UTC).date()
    ingest = network.ingestor(hospital_a, _member(staff[hospital_a], "registrar"))
    bundle, recent_date, old_date = lab_bundle(today)
    records = ingest.put_fhir(wallet.pseudonym, bundle)
    records += ingest.put_hl7(wallet.pseudonym, oru_message(today))
    records.append(ingest.put_dicom(wallet.pseudonym, ct_image()))
    summary.records = len(records)
    summary.steps.append(SharingStep(hospital_a, f"ingested {len(records)} records (FHIR, HL7 v2, DICOM)", "ok", ""))
    recent = next(r for r in records if r.resource_type == "Observation" and r.clinical_date == recent_date)
    old = next(r for r in records if r.resource_type == "Observation" and r.clinical_date == old_date)
    image = next(r for r in records if r.resource_type == "ImagingStudy")

    patient = LedgerClient(network.gateway(hospital_a), Credentials.of_patient(wallet))
    now = network.clock()
    six_months_ago = (today - datetime.timedelta(days=182)).isoformat()
    grant = patient.submit(
        "consent",
        "grant",
        {
            "provision": "permit",
            "grantee": {"org": hospital_b},
            "purposes": ["TREAT"],
            "scope": {"categories": ["laboratory"], "date_from": six_months_ago},
            "valid_from": now,
            "valid_until": now + 30 * DAY_MS,
        },
    )
    consent_id = grant.events[0].attributes["consent_id"]
    summary.steps.append(
        SharingStep(
            "patient", f"grants {hospital_b} TREAT on lab results since {six_months_ago}, 30 days", "ok", consent_id
        )
    )

    clinician = _member(staff[hospital_b], "dr-osei")
    doctor = LedgerClient(network.gateway(hospital_b), Credentials.of_member(clinician))

    def ask(client: LedgerClient, who: str, record_id: str, purpose: str, justification: str | None = None) -> Any:
        args: dict[str, Any] = {"record_id": record_id, "purpose": purpose}
        if justification:
            args["justification"] = justification
        receipt = client.submit("access", "request", args)
        decision = client.query("access", "decision", decision_id=receipt.events[0].attributes["decision_id"])
        flags = f" ({', '.join(decision['flags'])})" if decision["flags"] else ""
        summary.steps.append(
            SharingStep(who, f"asks {purpose} for {record_id[:12]}…", decision["outcome"] + flags, decision["reason"])
        )
        return decision

    def fetch(member: MemberIdentity, client: LedgerClient, who: str, decision: Any) -> None:
        network.wait_until_synced()
        signed = sign_delivery_request(
            decision["decision_id"], decision["record_id"], member.certificate.cert_id, member.key, network.clock()
        )
        try:
            delivery = network.vault_service(hospital_a).deliver(signed)
        except DeliveryRefused as refused:
            summary.steps.append(SharingStep(hospital_a + " vault", f"refuses {who}", "refused", refused.reason))
            return
        verified = open_verified_record(client, member.key, delivery, decision["record_id"])
        summary.steps.append(
            SharingStep(
                who,
                f"receives {verified.record['resource_type']} {decision['record_id'][:12]}…",
                "verified",
                f"{len(verified.plaintext)} bytes match the on-chain hashes; "
                f"registration proven in block {verified.block_number}",
            )
        )

    permitted = ask(doctor, f"{hospital_b} clinician", recent.record_id, "TREAT")
    fetch(clinician, doctor, f"{hospital_b} clinician", permitted)
    ask(doctor, f"{hospital_b} clinician", old.record_id, "TREAT")
    researcher = LedgerClient(
        network.gateway("northern-research"), Credentials.of_member(_member(staff["northern-research"], "researcher"))
    )
    ask(researcher, "research institute", recent.record_id, "HRESCH")
    emergency = ask(
        doctor,
        f"{hospital_b} clinician",
        image.record_id,
        "ETREAT",
        "patient unconscious in the emergency department; prior CT needed",
    )
    fetch(clinician, doctor, f"{hospital_b} clinician", emergency)
    patient.submit("consent", "revoke", {"consent_id": consent_id})
    summary.steps.append(SharingStep("patient", "revokes the consent", "ok", consent_id))
    fetch(clinician, doctor, f"{hospital_b} clinician (old permit)", permitted)
    ask(doctor, f"{hospital_b} clinician", recent.record_id, "TREAT")
    summary.trail = list(patient.query("audit", "trail", patient=wallet.pseudonym))
    return summary
