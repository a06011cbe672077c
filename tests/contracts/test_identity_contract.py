"""The identity contract: members, rotation, revocation, patients, and admitting organisations."""

from __future__ import annotations

from medledger.core.identity import OrgCA, OrgKind, Role
from medledger.core.signing import SigningKey
from medledger.sdk import PatientWallet
from tests.conftest import LedgerHarness


def test_registered_member_can_sign_and_is_listed(harness: LedgerHarness) -> None:
    # Execute
    clinician = harness.enrol("st-mary", "dr-amin", Role.CLINICIAN)
    # Assert
    member = harness.query("identity", "member", id=clinician.certificate.cert_id)
    assert member["org_id"] == "st-mary"
    assert member["role"] == "clinician"
    assert member["status"] == "active"


def test_a_certificate_cannot_be_registered_twice(harness: LedgerHarness) -> None:
    # Prepare
    nurse = harness.enrol("st-mary", "nurse-a", Role.NURSE)
    # Execute
    receipt = harness.submit(
        harness.admins["st-mary"], "identity", "register_member", {"certificate": nurse.certificate.der}
    )
    # Assert
    assert receipt.code == "MEMBER_EXISTS"


def test_a_certificate_from_a_foreign_ca_is_refused(harness: LedgerHarness) -> None:
    # Prepare: a CA that claims to be st-mary but is not the one in genesis
    impostor = OrgCA.create("st-mary", OrgKind.HOSPITAL, harness.clock())
    fake = impostor.enrol("mallory", Role.CLINICIAN, harness.clock())
    # Execute
    receipt = harness.submit(
        harness.admins["st-mary"], "identity", "register_member", {"certificate": fake.certificate.der}
    )
    # Assert
    assert receipt.code == "CERT_INVALID"
    assert "st-mary" in receipt.reason


def test_rotation_revokes_the_old_certificate_and_keeps_name_and_role(harness: LedgerHarness) -> None:
    # Prepare
    old = harness.enrol("st-mary", "registrar", Role.REGISTRAR)
    new = harness.cas["st-mary"].enrol("registrar", Role.REGISTRAR, harness.clock())
    # Execute
    receipt = harness.submit(
        harness.admins["st-mary"],
        "identity",
        "rotate_member",
        {"cert_id": old.certificate.cert_id, "certificate": new.certificate.der},
    )
    # Assert
    assert receipt.is_valid, receipt
    assert harness.query("identity", "member", id=old.certificate.cert_id)["status"] == "revoked"
    assert harness.query("identity", "member", id=new.certificate.cert_id)["rotated_from"] == old.certificate.cert_id
    patient = harness.enrol_patient(new)
    assert harness.submit(old, "identity", "register_patient", PatientWallet.generate().enrolment_args("x")).code == (
        "CERT_REVOKED"
    )
    assert harness.query("identity", "patient", id=patient.pseudonym) is not None


def test_rotation_to_another_role_is_refused(harness: LedgerHarness) -> None:
    # Prepare
    old = harness.enrol("st-mary", "registrar", Role.REGISTRAR)
    new = harness.cas["st-mary"].enrol("registrar", Role.ADMIN, harness.clock())
    # Execute
    receipt = harness.submit(
        harness.admins["st-mary"],
        "identity",
        "rotate_member",
        {"cert_id": old.certificate.cert_id, "certificate": new.certificate.der},
    )
    # Assert
    assert receipt.code == "ROTATION_MISMATCH"
    assert harness.query("identity", "member", id=old.certificate.cert_id)["status"] == "active"


def test_an_admin_cannot_revoke_another_organisations_member(harness: LedgerHarness) -> None:
    # Prepare
    clinician = harness.enrol("st-mary", "dr-b", Role.CLINICIAN)
    # Execute
    receipt = harness.submit(
        harness.admins["city-general"],
        "identity",
        "revoke_member",
        {"cert_id": clinician.certificate.cert_id, "reason": "not ours to revoke"},
    )
    # Assert
    assert receipt.code == "WRONG_ORGANISATION"


def test_patient_enrolment_needs_the_patients_own_signature(harness: LedgerHarness) -> None:
    # Prepare
    registrar = harness.enrol("st-mary", "registrar", Role.REGISTRAR)
    wallet = PatientWallet.generate()
    args = wallet.enrolment_args(harness.channel)
    other = PatientWallet(SigningKey.generate(), wallet.encryption_seed)
    args["enrolment_signature"] = other.enrolment_args(harness.channel)["enrolment_signature"]
    # Execute
    forged = harness.submit(registrar, "identity", "register_patient", args)
    wrong_channel = harness.submit(registrar, "identity", "register_patient", wallet.enrolment_args("another-channel"))
    genuine = harness.submit(registrar, "identity", "register_patient", wallet.enrolment_args(harness.channel))
    again = harness.submit(registrar, "identity", "register_patient", wallet.enrolment_args(harness.channel))
    # Assert
    assert forged.code == "BAD_ENROLMENT_SIGNATURE"
    assert wrong_channel.code == "BAD_ENROLMENT_SIGNATURE"
    assert genuine.is_valid
    assert again.code == "PATIENT_EXISTS"
    stored = harness.query("identity", "patient", id=wallet.pseudonym)
    assert stored["sign_key"] == wallet.sign_public_key
    assert stored["enrolled_by"] == "st-mary"


def test_only_hospitals_enrol_patients(harness: LedgerHarness) -> None:
    # Prepare
    insurer_admin = harness.admins["mutual-health"]
    # Execute
    receipt = harness.submit(
        insurer_admin, "identity", "register_patient", PatientWallet.generate().enrolment_args(harness.channel)
    )
    # Assert
    assert receipt.code == "WRONG_ORGANISATION"


def test_a_new_organisation_is_admitted_by_a_strict_majority(harness: LedgerHarness) -> None:
    # Prepare
    ca = OrgCA.create("east-pharmacy", OrgKind.PHARMACY, harness.clock())
    args = {"org_id": "east-pharmacy", "kind": "pharmacy", "ca_certificate": ca.certificate_der}
    # Execute: 5 organisations, so 3 approvals are needed (the proposer's counts)
    proposed = harness.submit(harness.admins["st-mary"], "identity", "propose_org", args)
    second = harness.submit(harness.admins["city-general"], "identity", "approve_org", {"org_id": "east-pharmacy"})
    pending = harness.query("identity", "org", id="east-pharmacy")
    third = harness.submit(harness.admins["health-authority"], "identity", "approve_org", {"org_id": "east-pharmacy"})
    # Assert
    assert proposed.is_valid and second.is_valid and third.is_valid
    assert pending is None
    assert harness.query("identity", "org", id="east-pharmacy")["kind"] == "pharmacy"
    assert [e.name for e in third.events] == ["OrgApproved", "OrgAdmitted"]


def test_an_organisation_cannot_approve_twice(harness: LedgerHarness) -> None:
    # Prepare
    ca = OrgCA.create("west-lab", OrgKind.RESEARCH, harness.clock())
    args = {"org_id": "west-lab", "kind": "research", "ca_certificate": ca.certificate_der}
    harness.submit(harness.admins["st-mary"], "identity", "propose_org", args)
    # Execute
    receipt = harness.submit(harness.admins["st-mary"], "identity", "approve_org", {"org_id": "west-lab"})
    # Assert
    assert receipt.code == "ALREADY_APPROVED"
