"""A record-sharing world to attack: St Mary's vault holds two patients' lab results, both patients
consent to City General treating them, and the staff and outsiders the attacks need are enrolled.

It is the scenario of tests/workflows/test_record_sharing.py cut down to what the vault and identity
attacks use, on a running embedded network (solo orderer, five organisations, real SQLite vault).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.core.identity import MemberIdentity, Role
from medledger.demo.samples import lab_bundle
from medledger.node.delivery import VaultService
from medledger.node.ingestion import IngestedRecord
from medledger.node.network import EmbeddedNetwork
from medledger.ordering.cutter import CutterConfig
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from medledger.sdk.records import SignedDeliveryRequest, open_verified_record, sign_delivery_request
from medledger.vault import SealedDelivery
from tests.conftest import DAY_MS, START_MS, ManualClock, member_client

VAULT_ORG = "st-mary"
"""The hospital whose vault holds the records."""
GRANTEE_ORG = "city-general"
"""The hospital the patients consent to."""
TODAY = datetime.datetime.fromtimestamp(START_MS / 1000, datetime.UTC).date()
CONSENT_DATE_FROM = "2025-07-01"
"""The consents cover laboratory results from this date on: the older result stays out of scope."""


@dataclass
class PatientRecords:
    """One patient, their client, and the two lab results St Mary's holds for them."""

    wallet: PatientWallet
    client: LedgerClient
    recent: IngestedRecord
    """A result from about two months ago: inside the consent's scope."""
    old: IngestedRecord
    """A result from over a year ago: outside the consent's date window."""
    consent_id: str


@dataclass
class SharingWorld:
    """The running network and everyone in it."""

    network: EmbeddedNetwork
    clock: ManualClock
    registrar: MemberIdentity
    """St Mary's registrar, who ingested the records."""
    doctor: MemberIdentity
    """A City General clinician: the legitimate requester."""
    nurse: MemberIdentity
    """A City General nurse: same organisation as the doctor, another requester."""
    researcher: MemberIdentity
    """A Northern Research researcher: no consent covers them."""
    alice: PatientRecords
    bob: PatientRecords

    @property
    def vault(self) -> VaultService:
        return self.network.vault_service(VAULT_ORG)

    def client(self, member: MemberIdentity) -> LedgerClient:
        """A client signing as `member`, through its own organisation's peer."""
        return LedgerClient(self.network.gateway(member.certificate.org_id), Credentials.of_member(member))

    def request(
        self, member: MemberIdentity, record_id: str, purpose: str = "TREAT", justification: str | None = None
    ) -> dict[str, Any]:
        """Ask for access on the ledger; return the committed decision (permit or deny)."""
        args: dict[str, Any] = {"record_id": record_id, "purpose": purpose}
        if justification is not None:
            args["justification"] = justification
        client = self.client(member)
        receipt = client.submit("access", "request", args)
        decision = client.query("access", "decision", decision_id=receipt.events[0].attributes["decision_id"])
        assert decision is not None
        return dict(decision)

    def sign(
        self, member: MemberIdentity, decision_id: str, record_id: str, *, timestamp_ms: int | None = None
    ) -> SignedDeliveryRequest:
        """A delivery request signed by `member` for (decision, record)."""
        now = self.clock() if timestamp_ms is None else timestamp_ms
        return sign_delivery_request(decision_id, record_id, member.certificate.cert_id, member.key, now)

    def deliver(self, signed: SignedDeliveryRequest) -> SealedDelivery:
        """Hand a request to St Mary's vault once every peer has committed what was ordered."""
        assert self.network.wait_until_synced()
        return self.vault.deliver(signed)

    def open(self, member: MemberIdentity, delivery: SealedDelivery, record_id: str) -> bytes:
        """What the requester does with a delivery: decrypt it and check it against the ledger."""
        return open_verified_record(self.client(member), member.key, delivery, record_id).plaintext

    def commit_a_block(self) -> None:
        """Have the orderer cut one more block, so every peer's latest block time is the clock's time."""
        registrar = self.client(self.registrar)
        registrar.submit("identity", "register_patient", PatientWallet.generate().enrolment_args(self.network.channel))
        assert self.network.wait_until_synced()


def _grant(patient: LedgerClient, now: int, days: int = 30) -> str:
    receipt = patient.submit(
        "consent",
        "grant",
        {
            "provision": "permit",
            "grantee": {"org": GRANTEE_ORG},
            "purposes": ["TREAT"],
            "scope": {"categories": ["laboratory"], "date_from": CONSENT_DATE_FROM},
            "valid_from": now,
            "valid_until": now + days * DAY_MS,
        },
    )
    return str(receipt.events[0].attributes["consent_id"])


def _patient(network: EmbeddedNetwork, registrar: MemberIdentity, clock: ManualClock) -> PatientRecords:
    wallet = PatientWallet.generate()
    registrar_client = LedgerClient(network.gateway(VAULT_ORG), Credentials.of_member(registrar))
    registrar_client.submit("identity", "register_patient", wallet.enrolment_args(network.channel))
    bundle, recent_date, old_date = lab_bundle(TODAY)
    records = network.ingestor(VAULT_ORG, registrar).put_fhir(wallet.pseudonym, bundle)
    recent = next(r for r in records if r.clinical_date.startswith(recent_date))
    old = next(r for r in records if r.clinical_date.startswith(old_date))
    client = LedgerClient(network.gateway(VAULT_ORG), Credentials.of_patient(wallet))
    return PatientRecords(wallet, client, recent, old, _grant(client, clock()))


def build_world(data_dir: Path, clock: ManualClock) -> SharingWorld:
    """Create and start the network, enrol the cast, ingest and consent. The caller stops the network."""
    network = EmbeddedNetwork.create(data_dir, clock=clock, cutter=CutterConfig(max_tx=100, time_to_cut_ms=5))
    network.start()
    try:
        _, registrar = member_client(network, VAULT_ORG, "registrar", Role.REGISTRAR)
        _, doctor = member_client(network, GRANTEE_ORG, "dr-osei", Role.CLINICIAN)
        _, nurse = member_client(network, GRANTEE_ORG, "nurse-lind", Role.NURSE)
        _, researcher = member_client(network, "northern-research", "researcher", Role.RESEARCHER)
        alice = _patient(network, registrar, clock)
        bob = _patient(network, registrar, clock)
        assert network.wait_until_synced()
    except BaseException:
        network.stop()
        raise
    return SharingWorld(network, clock, registrar, doctor, nurse, researcher, alice, bob)
