"""Identity attacks on a running embedded network: revoked, expired, not-yet-valid and rogue
certificates; a member or an organisation acting as another; a patient's key used on another
patient's consent. Each is refused by the identity, records, consent or access contract, with the
same receipt on every peer.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from medledger.core.identity import MemberIdentity, OrgCA, OrgKind, Role
from medledger.core.signing import SigningKey
from medledger.ledger.transactions import Transaction, sign_transaction
from medledger.node.network import EmbeddedNetwork
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from tests.conftest import DAY_MS, ManualClock, member_client
from tests.security.attacks import AttackClass, AttackLog
from tests.security.ordering import assert_peers_agree, submit_raw

IDENTITY = AttackClass.IDENTITY


@dataclass
class Consortium:
    """Staff of two hospitals, a research institute and an insurer, two patients and one record."""

    network: EmbeddedNetwork
    clock: ManualClock
    mary_admin: LedgerClient
    city_admin: LedgerClient
    mary_registrar: LedgerClient
    mary_clinician: MemberIdentity
    city_clinician: MemberIdentity
    alice: PatientWallet
    bob: PatientWallet
    record_id: str

    def client(self, member: MemberIdentity) -> LedgerClient:
        return LedgerClient(self.network.gateway(member.certificate.org_id), Credentials.of_member(member))

    def patient(self, wallet: PatientWallet) -> LedgerClient:
        return LedgerClient(self.network.gateway("st-mary"), Credentials.of_patient(wallet))

    def registration_args(self, patient: PatientWallet, label: str) -> dict[str, object]:
        return {
            "patient": patient.pseudonym,
            "resource_type": "Observation",
            "clinical_date": "2025-12-01",
            "content_hash": hashlib.sha256(label.encode()).digest(),
            "locator": f"vault://st-mary/{os.urandom(16).hex()}",
        }


def admin_client(network: EmbeddedNetwork, org_id: str) -> LedgerClient:
    return LedgerClient(network.gateway(org_id), Credentials.of_member(network.admin(org_id)))


@pytest.fixture
def consortium(network: EmbeddedNetwork, clock: ManualClock) -> Iterator[Consortium]:
    mary_registrar, _ = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    _, mary_clinician = member_client(network, "st-mary", "dr-mensah", Role.CLINICIAN)
    _, city_clinician = member_client(network, "city-general", "dr-osei", Role.CLINICIAN)
    alice, bob = PatientWallet.generate(), PatientWallet.generate()
    for wallet in (alice, bob):
        mary_registrar.submit("identity", "register_patient", wallet.enrolment_args(network.channel))
    built = Consortium(
        network,
        clock,
        admin_client(network, "st-mary"),
        admin_client(network, "city-general"),
        mary_registrar,
        mary_clinician,
        city_clinician,
        alice,
        bob,
        "",
    )
    receipt = mary_registrar.submit("records", "register", built.registration_args(alice, "alice's record"))
    built.record_id = str(receipt.events[0].attributes["record_id"])
    yield built


def cross_org_certificate(ca: OrgCA, claimed_org: str, name: str, role: Role, key: SigningKey, now_ms: int) -> bytes:
    """A member certificate that `ca` signs but whose subject names another organisation."""
    ca_certificate = x509.load_der_x509_certificate(ca.certificate_der)
    start = datetime.datetime.fromtimestamp(now_ms // 1000, datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, claimed_org),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(ca_certificate.subject)
        .public_key(Ed25519PublicKey.from_public_bytes(key.public_key))
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(Ed25519PrivateKey.from_private_bytes(ca.key.seed), algorithm=None)
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def test_revoked_expired_and_not_yet_valid_certificates_are_refused(consortium: Consortium, attacks: AttackLog) -> None:
    # Prepare
    net, now = consortium.network, consortium.clock()
    revoked_client, revoked = member_client(net, "st-mary", "leaver", Role.REGISTRAR)
    consortium.mary_admin.submit(
        "identity", "revoke_member", {"cert_id": revoked.certificate.cert_id, "reason": "left the hospital"}
    )
    short = net.ca("st-mary").enrol("locum", Role.REGISTRAR, now, valid_days=1)
    consortium.mary_admin.submit("identity", "register_member", {"certificate": short.certificate.der})
    future = net.ca("st-mary").enrol("next-year", Role.REGISTRAR, now + 30 * DAY_MS)
    consortium.clock.advance(2 * DAY_MS)
    args = consortium.registration_args(consortium.alice, "late")
    attacks.tried(IDENTITY, "transaction by a revoked certificate")
    attacks.tried(IDENTITY, "transaction by an expired certificate")
    attacks.tried(IDENTITY, "registration of a certificate that is not valid yet")
    # Execute
    receipts = submit_raw(
        net,
        [
            revoked_client.prepare("records", "register", args).encoded,
            consortium.client(short).prepare("records", "register", args).encoded,
            consortium.mary_admin.prepare(
                "identity", "register_member", {"certificate": future.certificate.der}
            ).encoded,
        ],
    )
    # Assert
    assert [r.code for r in receipts] == ["CERT_REVOKED", "CERT_EXPIRED", "CERT_EXPIRED"]


def test_a_rogue_ca_and_a_cross_organisation_certificate_cannot_be_registered(
    consortium: Consortium, attacks: AttackLog
) -> None:
    # Prepare: an outsider's CA with St Mary's very name; St Mary's CA key signing a City General subject
    net, now = consortium.network, consortium.clock()
    rogue_ca = OrgCA.create("st-mary", OrgKind.HOSPITAL, now)
    rogue_admin = rogue_ca.enrol("admin", Role.ADMIN, now)
    forged_key = SigningKey.generate()
    forged = cross_org_certificate(net.ca("st-mary"), "city-general", "dr-fake", Role.CLINICIAN, forged_key, now)
    genuine_city = net.ca("city-general").enrol("dr-stolen", Role.CLINICIAN, now)
    attacks.tried(IDENTITY, "certificate from an outsider's CA that copies St Mary's name")
    attacks.tried(IDENTITY, "St Mary's CA signs a certificate naming City General")
    attacks.tried(IDENTITY, "St Mary's admin registers a genuine City General certificate")
    attacks.tried(IDENTITY, "rogue admin signs a transaction with an unregistered certificate")
    # Execute
    receipts = submit_raw(
        net,
        [
            consortium.mary_admin.prepare(
                "identity", "register_member", {"certificate": rogue_admin.certificate.der}
            ).encoded,
            consortium.mary_admin.prepare("identity", "register_member", {"certificate": forged}).encoded,
            consortium.mary_admin.prepare(
                "identity", "register_member", {"certificate": genuine_city.certificate.der}
            ).encoded,
            LedgerClient(net.gateway("st-mary"), Credentials.of_member(rogue_admin))
            .prepare("identity", "register_member", {"certificate": genuine_city.certificate.der})
            .encoded,
        ],
    )
    # Assert
    assert [r.code for r in receipts] == ["CERT_INVALID", "CERT_INVALID", "WRONG_ORGANISATION", "UNKNOWN_SIGNER"]


def test_a_member_cannot_act_for_another_organisation(consortium: Consortium, attacks: AttackLog) -> None:
    # Prepare
    net = consortium.network
    city = consortium.client(consortium.city_clinician)
    city_as_mary = sign_transaction(
        consortium.mary_registrar.prepare(
            "records", "register", consortium.registration_args(consortium.alice, "impersonated")
        ).body,
        consortium.city_clinician.key,
    )
    _, researcher = member_client(net, "northern-research", "researcher", Role.RESEARCHER)
    _, insurer_registrar = member_client(net, "mutual-health", "registrar", Role.REGISTRAR)
    peer_member = net.member_identity("st-mary", "peer")
    new_member = net.ca("st-mary").enrol("newcomer", Role.NURSE, consortium.clock())
    calls: list[tuple[str, Transaction]] = [
        ("City General clinician signs in St Mary's registrar's name", city_as_mary),
        (
            "City General's admin revokes a St Mary clinician",
            consortium.city_admin.prepare(
                "identity",
                "revoke_member",
                {"cert_id": consortium.mary_clinician.certificate.cert_id, "reason": "hostile takeover"},
            ),
        ),
        (
            "City General clinician amends St Mary's record",
            city.prepare(
                "records",
                "amend",
                {
                    "previous": consortium.record_id,
                    "clinical_date": "2025-12-02",
                    "content_hash": bytes(32),
                    "locator": "vault://city-general/" + "0" * 32,
                    "reason": "quietly rewritten",
                },
            ),
        ),
        (
            "City General clinician retires St Mary's record",
            city.prepare("records", "retire", {"record_id": consortium.record_id, "reason": "hide it"}),
        ),
        (
            "research institute member registers a record",
            consortium.client(researcher).prepare(
                "records", "register", consortium.registration_args(consortium.alice, "research")
            ),
        ),
        (
            "insurer's registrar registers a record",
            consortium.client(insurer_registrar).prepare(
                "records", "register", consortium.registration_args(consortium.alice, "insurer")
            ),
        ),
        (
            "St Mary's peer identity registers a member",
            consortium.client(peer_member).prepare(
                "identity", "register_member", {"certificate": new_member.certificate.der}
            ),
        ),
        (
            "clinician rotates their own certificate",
            consortium.client(consortium.mary_clinician).prepare(
                "identity",
                "rotate_member",
                {"cert_id": consortium.mary_clinician.certificate.cert_id, "certificate": new_member.certificate.der},
            ),
        ),
    ]
    for what, _ in calls:
        attacks.tried(IDENTITY, what)
    # Execute
    receipts = submit_raw(net, [tx.encoded for _, tx in calls])
    # Assert
    assert [r.code for r in receipts] == [
        "BAD_SIGNATURE",
        "WRONG_ORGANISATION",
        "WRONG_ORGANISATION",
        "WRONG_ORGANISATION",
        "ROLE_NOT_PERMITTED",
        "WRONG_ORGANISATION",
        "ROLE_NOT_PERMITTED",
        "ROLE_NOT_PERMITTED",
    ]
    entry = consortium.mary_registrar.query("records", "get", record_id=consortium.record_id)
    assert entry["status"] == "current" and entry["version"] == 1


def test_one_organisation_cannot_admit_a_rogue_organisation_alone(consortium: Consortium, attacks: AttackLog) -> None:
    # Prepare
    net, now = consortium.network, consortium.clock()
    rogue = OrgCA.create("shadow-clinic", OrgKind.HOSPITAL, now)
    rogue_admin = rogue.enrol("admin", Role.ADMIN, now)
    attacks.tried(IDENTITY, "one organisation proposes and approves a rogue organisation")
    attacks.tried(IDENTITY, "the rogue organisation's admin signs a transaction")
    # Execute
    proposed = consortium.mary_admin.submit(
        "identity",
        "propose_org",
        {"org_id": "shadow-clinic", "kind": "hospital", "ca_certificate": rogue.certificate_der},
    )
    again = consortium.mary_admin.submit("identity", "approve_org", {"org_id": "shadow-clinic"}, check=False)
    rogue_client = LedgerClient(net.gateway("st-mary"), Credentials.of_member(rogue_admin))
    (rogue_call,) = submit_raw(
        net, [rogue_client.prepare("identity", "register_member", {"certificate": rogue_admin.certificate.der}).encoded]
    )
    # Assert
    assert [e.name for e in proposed.events] == ["OrgProposed", "OrgApproved"]
    assert again.code == "ALREADY_APPROVED"
    assert consortium.mary_admin.query("identity", "org", id="shadow-clinic") is None
    assert rogue_call.code == "UNKNOWN_SIGNER"


def test_a_patient_key_cannot_act_on_another_patients_consent(consortium: Consortium, attacks: AttackLog) -> None:
    # Prepare: Bob consents to City General; Alice (another patient) attacks his consent
    net, now = consortium.network, consortium.clock()
    bob = consortium.patient(consortium.bob)
    granted = bob.submit(
        "consent",
        "grant",
        {
            "provision": "permit",
            "grantee": {"org": "city-general"},
            "purposes": ["TREAT"],
            "valid_from": now,
            "valid_until": now + 30 * DAY_MS,
        },
    )
    bobs_consent = str(granted.events[0].attributes["consent_id"])
    alice = consortium.patient(consortium.alice)
    alice_as_bob = sign_transaction(
        bob.prepare("consent", "revoke", {"consent_id": bobs_consent}).body, consortium.alice.signing_key
    )
    attacks.tried(IDENTITY, "a patient revokes another patient's consent with their own key")
    attacks.tried(IDENTITY, "a patient signs a revocation in another patient's name")
    attacks.tried(IDENTITY, "a patient calls a members-only contract function")
    # Execute
    receipts = submit_raw(
        net,
        [
            alice.prepare("consent", "revoke", {"consent_id": bobs_consent}).encoded,
            alice_as_bob.encoded,
            alice.prepare("records", "register", consortium.registration_args(consortium.bob, "by alice")).encoded,
        ],
    )
    # Assert
    assert [r.code for r in receipts] == ["NOT_YOUR_CONSENT", "BAD_SIGNATURE", "ROLE_NOT_PERMITTED"]
    consents = bob.query("consent", "list", patient=consortium.bob.pseudonym)
    assert [c["status"] for c in consents] == ["active"]


def test_a_patient_cannot_consent_for_another_patients_records(consortium: Consortium, attacks: AttackLog) -> None:
    # Prepare: Bob's record; Alice grants the research institute access naming Bob's record id
    net, now = consortium.network, consortium.clock()
    receipt = consortium.mary_registrar.submit(
        "records", "register", consortium.registration_args(consortium.bob, "bob's record")
    )
    bobs_record = str(receipt.events[0].attributes["record_id"])
    consortium.patient(consortium.alice).submit(
        "consent",
        "grant",
        {
            "provision": "permit",
            "grantee": {"org": "northern-research"},
            "purposes": ["HRESCH"],
            "scope": {"record_ids": [bobs_record]},
            "valid_from": now,
            "valid_until": now + 30 * DAY_MS,
        },
    )
    researcher_client, _ = member_client(net, "northern-research", "researcher", Role.RESEARCHER)
    attacks.tried(IDENTITY, "a patient's consent names another patient's record")
    # Execute
    decided = researcher_client.submit("access", "request", {"record_id": bobs_record, "purpose": "HRESCH"})
    decision = researcher_client.query("access", "decision", decision_id=decided.events[0].attributes["decision_id"])
    # Assert
    assert decision["outcome"] == "deny", decision


def test_patient_enrolment_cannot_take_over_or_replay_a_wallet(consortium: Consortium, attacks: AttackLog) -> None:
    # Prepare
    net = consortium.network
    victim = PatientWallet.generate()
    attacker = PatientWallet.generate()
    takeover = {
        **victim.enrolment_args(net.channel),
        "enrolment_signature": attacker.enrolment_args(net.channel)["enrolment_signature"],
    }
    other_channel = victim.enrolment_args("another-consortium")
    new_encryption = PatientWallet(consortium.alice.signing_key, PatientWallet.generate().encryption_seed)
    attacks.tried(IDENTITY, "enrol a victim's public key with the attacker's proof of possession")
    attacks.tried(IDENTITY, "replay a patient's enrolment signed for another channel")
    attacks.tried(IDENTITY, "re-enrol an enrolled patient to swap their encryption key")
    # Execute
    receipts = submit_raw(
        net,
        [
            consortium.mary_registrar.prepare("identity", "register_patient", takeover).encoded,
            consortium.mary_registrar.prepare("identity", "register_patient", other_channel).encoded,
            consortium.mary_registrar.prepare(
                "identity", "register_patient", new_encryption.enrolment_args(net.channel)
            ).encoded,
        ],
    )
    # Assert
    assert [r.code for r in receipts] == ["BAD_ENROLMENT_SIGNATURE", "BAD_ENROLMENT_SIGNATURE", "PATIENT_EXISTS"]
    assert_peers_agree(net)


def test_break_glass_is_denied_to_anyone_but_a_hospital_clinician(consortium: Consortium, attacks: AttackLog) -> None:
    # Prepare
    net = consortium.network
    nurse_client, _ = member_client(net, "city-general", "nurse", Role.NURSE)
    research_clinician, _ = member_client(net, "northern-research", "dr-lab", Role.CLINICIAN)
    args = {
        "record_id": consortium.record_id,
        "purpose": "ETREAT",
        "justification": "claims an emergency to read the record now",
    }
    attacks.tried(IDENTITY, "break-glass by a hospital nurse")
    attacks.tried(IDENTITY, "break-glass by a clinician of a research institute")
    # Execute
    outcomes = []
    for client in (nurse_client, research_clinician):
        receipt = client.submit("access", "request", args)
        decision = client.query("access", "decision", decision_id=receipt.events[0].attributes["decision_id"])
        outcomes.append(decision["outcome"])
    # Assert
    assert outcomes == ["deny", "deny"]
