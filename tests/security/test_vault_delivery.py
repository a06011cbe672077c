"""Attacks on a hospital's vault (medledger.node.delivery.VaultService.deliver): every request that
is not backed by a valid on-chain permit for exactly this requester and record, at the vault's latest
block, is refused with a named DeliveryRefused code, and nothing is handed out or recorded.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace

import pytest

from medledger.core.identity import Role
from medledger.core.signing import Domain, SigningKey
from medledger.node.delivery import MAX_REQUEST_AGE_MS, DeliveryRefused
from medledger.sdk import Credentials, LedgerClient
from medledger.sdk.records import DeliveryRequest, SignedDeliveryRequest
from medledger.vault import KeyDeliveryError, SealedDelivery
from tests.conftest import DAY_MS, member_client
from tests.security.attacks import AttackClass, AttackLog
from tests.security.world import GRANTEE_ORG, VAULT_ORG, SharingWorld

HOUR_MS = 3_600_000
VAULT = AttackClass.VAULT


def refusal(world: SharingWorld, signed: SignedDeliveryRequest) -> DeliveryRefused:
    """The DeliveryRefused St Mary's vault raises for `signed` (the test fails if it serves it)."""
    with pytest.raises(DeliveryRefused) as caught:
        world.deliver(signed)
    return caught.value


def deliveries(world: SharingWorld) -> int:
    """How many deliveries the ledger has recorded for both patients together."""
    assert world.network.wait_until_synced()
    peer = world.network.peers[VAULT_ORG]
    total = 0
    for patient in (world.alice, world.bob):
        trail = peer.query("audit", "trail", {"patient": patient.wallet.pseudonym, "events": ["access.delivery"]})
        total += len(trail)
    return total


def resigned(request: DeliveryRequest, key: SigningKey, domain: Domain = Domain.VAULT_REQUEST) -> SignedDeliveryRequest:
    return SignedDeliveryRequest(request, key.sign(domain, request.payload()))


def test_a_permitted_request_is_served_and_verifies(world: SharingWorld, attacks: AttackLog) -> None:
    """The control: the legitimate path works, so every refusal below is the rule at work."""
    # Prepare
    decision = world.request(world.doctor, world.alice.recent.record_id)
    # Execute
    delivery = world.deliver(world.sign(world.doctor, decision["decision_id"], world.alice.recent.record_id))
    # Assert
    assert decision["outcome"] == "permit", decision["reason"]
    assert b'"value":6.50' in world.open(world.doctor, delivery, world.alice.recent.record_id)
    assert deliveries(world) == 1


def test_a_request_without_a_permit_is_refused(world: SharingWorld, attacks: AttackLog) -> None:
    # Prepare
    denied_old = world.request(world.doctor, world.alice.old.record_id)
    denied_research = world.request(world.researcher, world.alice.recent.record_id, "HRESCH")
    made_up = os.urandom(16).hex()
    attacks.tried(VAULT, "request naming a decision that was never made")
    attacks.tried(VAULT, "request naming a deny decision (record outside the consent's date window)")
    attacks.tried(VAULT, "request naming a deny decision (no consent covers the requester)")
    # Execute
    never_made = refusal(world, world.sign(world.doctor, made_up, world.alice.recent.record_id))
    outside_scope = refusal(world, world.sign(world.doctor, denied_old["decision_id"], world.alice.old.record_id))
    not_covered = refusal(
        world, world.sign(world.researcher, denied_research["decision_id"], world.alice.recent.record_id)
    )
    # Assert
    assert (denied_old["outcome"], denied_research["outcome"]) == ("deny", "deny")
    assert never_made.code == "UNKNOWN_PERMIT"
    assert outside_scope.code == "NO_PERMIT" and "denied access" in outside_scope.reason
    assert not_covered.code == "NO_PERMIT" and "denied access" in not_covered.reason
    assert deliveries(world) == 0


def test_an_expired_permit_is_refused_whether_or_not_a_block_followed(world: SharingWorld, attacks: AttackLog) -> None:
    # Prepare: two permits, then 25 hours pass (a permit lasts 24)
    first = world.request(world.doctor, world.alice.recent.record_id)
    second = world.request(world.doctor, world.alice.recent.record_id)
    world.clock.advance(25 * HOUR_MS)
    attacks.tried(VAULT, "expired permit, idle network (the vault's latest block predates the expiry)")
    attacks.tried(VAULT, "expired permit, a block committed after the expiry")
    # Execute: the network was idle, so the vault's latest block is older than the expiry; the
    # delivery transaction, executed at the new block's time, still refuses it
    idle = refusal(world, world.sign(world.doctor, first["decision_id"], world.alice.recent.record_id))
    world.commit_a_block()
    after_block = refusal(world, world.sign(world.doctor, second["decision_id"], world.alice.recent.record_id))
    # Assert
    assert idle.code == "NO_PERMIT" and "lapsed" in idle.reason
    assert after_block.code == "NO_PERMIT" and "lapsed" in after_block.reason
    assert deliveries(world) == 0


def test_a_permit_is_refused_once_its_consent_is_revoked_or_its_record_retired(
    world: SharingWorld, attacks: AttackLog
) -> None:
    # Prepare
    alice_permit = world.request(world.doctor, world.alice.recent.record_id)
    bob_permit = world.request(world.doctor, world.bob.recent.record_id)
    world.alice.client.submit("consent", "revoke", {"consent_id": world.alice.consent_id})
    world.client(world.registrar).submit(
        "records", "retire", {"record_id": world.bob.recent.record_id, "reason": "entered for the wrong patient"}
    )
    attacks.tried(VAULT, "permit whose consent the patient revoked")
    attacks.tried(VAULT, "permit for a record its hospital retired")
    # Execute
    revoked = refusal(world, world.sign(world.doctor, alice_permit["decision_id"], world.alice.recent.record_id))
    retired = refusal(world, world.sign(world.doctor, bob_permit["decision_id"], world.bob.recent.record_id))
    # Assert
    assert revoked.code == "NO_PERMIT" and "revoked" in revoked.reason
    assert retired.code == "NO_PERMIT" and "no longer available" in retired.reason
    assert deliveries(world) == 0


def test_a_permit_for_the_wrong_purpose_or_a_lapsed_break_glass_is_refused(
    world: SharingWorld, attacks: AttackLog
) -> None:
    # Prepare: the consent covers TREAT; the doctor asks for payment, then breaks the glass
    payment = world.request(world.doctor, world.alice.recent.record_id, "HPAYMT")
    emergency = world.request(
        world.doctor, world.alice.old.record_id, "ETREAT", "unconscious patient in A&E, HbA1c history needed now"
    )
    world.clock.advance(5 * HOUR_MS)
    world.commit_a_block()
    attacks.tried(VAULT, "decision made for a purpose the consent does not cover")
    attacks.tried(VAULT, "break-glass permit used after its four hours")
    # Execute
    wrong_purpose = refusal(world, world.sign(world.doctor, payment["decision_id"], world.alice.recent.record_id))
    lapsed = refusal(world, world.sign(world.doctor, emergency["decision_id"], world.alice.old.record_id))
    # Assert
    assert payment["outcome"] == "deny" and "HPAYMT" in payment["reason"]
    assert emergency["outcome"] == "permit" and "break-glass" in emergency["flags"]
    assert wrong_purpose.code == "NO_PERMIT"
    assert lapsed.code == "NO_PERMIT" and "break-glass permit" in lapsed.reason and "lapsed" in lapsed.reason
    assert deliveries(world) == 0


def test_a_permit_for_another_record_or_patient_is_refused(world: SharingWorld, attacks: AttackLog) -> None:
    # Prepare: one permit, for Alice's recent result
    permit = world.request(world.doctor, world.alice.recent.record_id)
    attacks.tried(VAULT, "permit for one record used for another record of the same patient")
    attacks.tried(VAULT, "permit for one patient's record used for another patient's record")
    # Execute
    other_record = refusal(world, world.sign(world.doctor, permit["decision_id"], world.alice.old.record_id))
    other_patient = refusal(world, world.sign(world.doctor, permit["decision_id"], world.bob.recent.record_id))
    # Assert
    assert other_record.code == "NO_PERMIT" and f"is for record {world.alice.recent.record_id}" in other_record.reason
    assert other_patient.code == "NO_PERMIT" and f"is for record {world.alice.recent.record_id}" in other_patient.reason
    assert deliveries(world) == 0


def test_a_permit_of_another_requester_is_refused_and_a_stolen_request_opens_nothing(
    world: SharingWorld, attacks: AttackLog
) -> None:
    # Prepare: the doctor's permit and signed request; the nurse works in the same hospital
    permit = world.request(world.doctor, world.alice.recent.record_id)
    doctors_request = world.sign(world.doctor, permit["decision_id"], world.alice.recent.record_id)
    renamed = replace(doctors_request.request, requester=world.nurse.certificate.cert_id)
    attacks.tried(VAULT, "colleague uses another member's permit with their own signature")
    attacks.tried(VAULT, "colleague re-signs another member's request under their name")
    attacks.tried(VAULT, "colleague replays another member's stolen signed request")
    # Execute
    borrowed = refusal(world, world.sign(world.nurse, permit["decision_id"], world.alice.recent.record_id))
    impersonated = refusal(world, resigned(doctors_request.request, world.nurse.key))
    renamed_refusal = refusal(world, resigned(renamed, world.nurse.key))
    stolen = world.deliver(doctors_request)
    # Assert
    assert borrowed.code == "NO_PERMIT" and "another requester" in borrowed.reason
    assert impersonated.code == "BAD_SIGNATURE"
    assert renamed_refusal.code == "NO_PERMIT" and "another requester" in renamed_refusal.reason
    with pytest.raises(KeyDeliveryError):
        world.open(world.nurse, stolen, world.alice.recent.record_id)
    assert world.open(world.doctor, stolen, world.alice.recent.record_id)


def test_a_permit_from_a_block_the_vault_has_not_seen_is_refused_until_it_commits(
    world: SharingWorld, attacks: AttackLog
) -> None:
    # Prepare: St Mary's peer stops following the orderer; the permit commits at City General only
    vault_peer = world.network.peers[VAULT_ORG]
    vault_peer.stop()
    permit = world.request(world.doctor, world.alice.recent.record_id)
    attacks.tried(VAULT, "permit committed on other peers but not yet on the vault's peer")
    # Execute
    with pytest.raises(DeliveryRefused) as early:
        world.vault.deliver(world.sign(world.doctor, permit["decision_id"], world.alice.recent.record_id))
    assert world.network.orderer is not None
    vault_peer.start(world.network.orderer)
    served = world.deliver(world.sign(world.doctor, permit["decision_id"], world.alice.recent.record_id))
    # Assert
    assert early.value.code == "UNKNOWN_PERMIT" and "not have reached this vault" in early.value.reason
    assert world.open(world.doctor, served, world.alice.recent.record_id)


def test_a_replayed_request_is_refused_serially_and_concurrently(world: SharingWorld, attacks: AttackLog) -> None:
    # Prepare
    permit = world.request(world.doctor, world.alice.recent.record_id)
    served_once = world.sign(world.doctor, permit["decision_id"], world.alice.recent.record_id)
    raced = world.sign(world.doctor, permit["decision_id"], world.alice.recent.record_id)
    world.deliver(served_once)
    attacks.tried(VAULT, "signed request replayed after it was served")
    attacks.tried(VAULT, "signed request replayed by four clients at once", times=3)
    outcomes: list[SealedDelivery | DeliveryRefused] = []
    lock = threading.Lock()

    def race() -> None:
        try:
            outcome: SealedDelivery | DeliveryRefused = world.vault.deliver(raced)
        except DeliveryRefused as refused:
            outcome = refused
        with lock:
            outcomes.append(outcome)

    # Execute
    replay = refusal(world, served_once)
    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Assert
    assert replay.code == "REPLAYED"
    served = [o for o in outcomes if isinstance(o, SealedDelivery)]
    refused = [o for o in outcomes if isinstance(o, DeliveryRefused)]
    assert len(served) == 1 and len(refused) == 3, outcomes
    assert {r.code for r in refused} == {"REPLAYED"}
    assert deliveries(world) == 2


def test_a_stale_or_future_dated_request_is_refused(world: SharingWorld, attacks: AttackLog) -> None:
    # Prepare
    permit = world.request(world.doctor, world.alice.recent.record_id)
    skew = MAX_REQUEST_AGE_MS + 60_000
    attacks.tried(VAULT, "request signed more than five minutes ago")
    attacks.tried(VAULT, "request dated more than five minutes ahead")
    # Execute
    stale = refusal(
        world,
        world.sign(
            world.doctor, permit["decision_id"], world.alice.recent.record_id, timestamp_ms=world.clock() - skew
        ),
    )
    future = refusal(
        world,
        world.sign(
            world.doctor, permit["decision_id"], world.alice.recent.record_id, timestamp_ms=world.clock() + skew
        ),
    )
    # Assert
    assert (stale.code, future.code) == ("STALE_REQUEST", "STALE_REQUEST")
    assert deliveries(world) == 0


def test_forged_reordered_and_cross_domain_request_signatures_are_refused(
    world: SharingWorld, attacks: AttackLog
) -> None:
    # Prepare
    permit = world.request(world.doctor, world.alice.recent.record_id)
    genuine = world.sign(world.doctor, permit["decision_id"], world.alice.recent.record_id).request
    swapped = DeliveryRequest(
        genuine.record_id, genuine.decision_id, genuine.requester, genuine.nonce, genuine.timestamp_ms
    )
    reordered = SignedDeliveryRequest(genuine, world.doctor.key.sign(Domain.VAULT_REQUEST, swapped.payload()))
    forgeries = {
        "random signature bytes": SignedDeliveryRequest(genuine, os.urandom(64)),
        "signature of a fresh key": resigned(genuine, SigningKey.generate()),
        "doctor's key, transaction domain": resigned(genuine, world.doctor.key, Domain.TRANSACTION),
        "doctor's key, REST API domain": resigned(genuine, world.doctor.key, Domain.API_REQUEST),
        "doctor's key, block-attestation domain": resigned(genuine, world.doctor.key, Domain.BLOCK_ATTESTATION),
        "doctor's signature over the fields in another order": reordered,
        "truncated signature": SignedDeliveryRequest(genuine, resigned(genuine, world.doctor.key).signature[:63]),
    }
    for what in forgeries:
        attacks.tried(VAULT, f"delivery request with a forged signature: {what}")
    # Execute
    codes = {what: refusal(world, signed).code for what, signed in forgeries.items()}
    # Assert
    assert set(codes.values()) == {"BAD_SIGNATURE"}, codes
    assert deliveries(world) == 0


def test_revoked_expired_and_unknown_requesters_are_refused(world: SharingWorld, attacks: AttackLog) -> None:
    # Prepare: a clinician whose certificate lasts one day gets a permit half-way through it
    short_lived = world.network.ca(GRANTEE_ORG).enrol("dr-locum", Role.CLINICIAN, world.clock(), valid_days=1)
    admin = LedgerClient(world.network.gateway(GRANTEE_ORG), Credentials.of_member(world.network.admin(GRANTEE_ORG)))
    admin.submit("identity", "register_member", {"certificate": short_lived.certificate.der})
    world.clock.advance(12 * HOUR_MS)
    locum_permit = world.request(short_lived, world.alice.recent.record_id)
    doctor_permit = world.request(world.doctor, world.alice.recent.record_id)
    admin.submit("identity", "revoke_member", {"cert_id": world.doctor.certificate.cert_id, "reason": "laptop stolen"})
    world.clock.advance(13 * HOUR_MS)  # the locum's certificate has expired; the permit has 11 hours left
    world.commit_a_block()
    outsider = world.network.ca(GRANTEE_ORG).enrol("never-registered", Role.CLINICIAN, world.clock())
    patient_as_member = DeliveryRequest(
        doctor_permit["decision_id"],
        world.alice.recent.record_id,
        world.alice.wallet.pseudonym,
        os.urandom(16),
        world.clock(),
    )
    attacks.tried(VAULT, "requester whose certificate was revoked after the permit")
    attacks.tried(VAULT, "requester whose certificate expired after the permit")
    attacks.tried(VAULT, "requester whose certificate was issued but never registered")
    attacks.tried(VAULT, "patient wallet key posing as a member requester")
    # Execute
    revoked = refusal(world, world.sign(world.doctor, doctor_permit["decision_id"], world.alice.recent.record_id))
    expired = refusal(world, world.sign(short_lived, locum_permit["decision_id"], world.alice.recent.record_id))
    unknown = refusal(world, world.sign(outsider, doctor_permit["decision_id"], world.alice.recent.record_id))
    patient = refusal(world, resigned(patient_as_member, world.alice.wallet.signing_key))
    # Assert
    assert locum_permit["outcome"] == "permit"
    assert revoked.code == "CERT_REVOKED"
    assert expired.code == "CERT_EXPIRED"
    assert unknown.code == "UNKNOWN_SIGNER"
    assert patient.code == "UNKNOWN_SIGNER"
    assert deliveries(world) == 0


def test_a_request_for_a_record_held_elsewhere_or_unknown_is_refused(world: SharingWorld, attacks: AttackLog) -> None:
    # Prepare
    permit = world.request(world.doctor, world.alice.recent.record_id)
    signed = world.sign(world.doctor, permit["decision_id"], world.alice.recent.record_id)
    assert world.network.wait_until_synced()
    attacks.tried(VAULT, "request for St Mary's record sent to City General's vault")
    attacks.tried(VAULT, "request for a record id that does not exist")
    # Execute
    with pytest.raises(DeliveryRefused) as elsewhere:
        world.network.vault_service(GRANTEE_ORG).deliver(signed)
    unknown = refusal(world, world.sign(world.doctor, permit["decision_id"], os.urandom(16).hex()))
    # Assert
    assert elsewhere.value.code == "WRONG_VAULT"
    assert unknown.code == "UNKNOWN_RECORD"
    assert deliveries(world) == 0


def test_a_vault_member_of_another_hospital_cannot_record_deliveries(world: SharingWorld, attacks: AttackLog) -> None:
    """Deliveries on the ledger are what patients read: nobody but the holding vault may write one."""
    # Prepare
    permit = world.request(world.doctor, world.alice.recent.record_id)
    other_vault = LedgerClient(
        world.network.gateway(GRANTEE_ORG),
        Credentials.of_member(world.network.member_identity(GRANTEE_ORG, "vault")),
    )
    doctor = world.client(world.doctor)
    args = {
        "decision_id": permit["decision_id"],
        "record_id": world.alice.recent.record_id,
        "request_hash": os.urandom(32),
        "ciphertext_hash": world.alice.recent.ciphertext_hash,
    }
    _, insurer_vault_role = member_client(world.network, "mutual-health", "fake-vault", Role.VAULT)
    insurer = world.client(insurer_vault_role)
    attacks.tried(VAULT, "another hospital's vault records a delivery of St Mary's record")
    attacks.tried(VAULT, "a clinician records a delivery to cover an access")
    attacks.tried(VAULT, "an insurer's member with the vault role records a delivery")
    # Execute
    receipts = [c.submit("access", "record_delivery", args, check=False) for c in (other_vault, doctor, insurer)]
    # Assert
    assert [r.code for r in receipts] == ["WRONG_ORGANISATION", "ROLE_NOT_PERMITTED", "WRONG_ORGANISATION"]
    assert deliveries(world) == 0


def test_the_world_clock_and_consents_are_what_the_attacks_assume(world: SharingWorld) -> None:
    """Guards the fixture: the consents are 30 days long and the old record is outside their window."""
    # Execute
    consents = world.alice.client.query("consent", "list", patient=world.alice.wallet.pseudonym)
    # Assert
    assert [c["valid_until"] - c["valid_from"] for c in consents] == [30 * DAY_MS]
    assert world.alice.old.clinical_date < "2025-07-01" <= world.alice.recent.clinical_date
