"""What medledger does not defend yet, shown on the running system. Each test passes while the limit
exists and is listed in docs/threat-model.md under "Not defended yet"; when a limit is lifted, its
test fails and the threat model needs the same update.

These are design limits, not bugs: the orderer is trusted for order, time and liveness; a vault host
holds the keys of what it stores; the ledger's hashes and index entries are visible to every member;
a majority of organisations is trusted for attestations; the transaction endpoint takes anything that
decodes.
"""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from medledger.core.identity import Role
from medledger.core.signing import SigningKey
from medledger.ledger.attestations import attest
from medledger.ledger.transactions import TransactionBody, new_nonce, sign_transaction
from medledger.node.attestation_board import quorum_hash
from medledger.node.network import EmbeddedNetwork
from medledger.ordering.orderer import OrderedBatch, OrderingError
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from tests.conftest import DAY_MS, LedgerHarness
from tests.security.attacks import AttackClass, AttackLog
from tests.security.ordering import settle_attestations, submit_raw
from tests.security.world import SharingWorld

HOUR_MS = 3_600_000


def _consenting_patient(harness: LedgerHarness, valid_for_ms: int) -> tuple[PatientWallet, str, str]:
    """A patient with one record at St Mary's and a TREAT consent for City General; (wallet, record, consent)."""
    registrar = harness.enrol("st-mary", "registrar", Role.REGISTRAR)
    patient = harness.enrol_patient(registrar)
    registered = harness.submit(
        registrar,
        "records",
        "register",
        {
            "patient": patient.pseudonym,
            "resource_type": "Observation",
            "clinical_date": "2025-12-01",
            "content_hash": os.urandom(32),
            "locator": f"vault://st-mary/{os.urandom(16).hex()}",
        },
    )
    now = harness.clock()
    granted = harness.submit(
        patient,
        "consent",
        "grant",
        {
            "provision": "permit",
            "grantee": {"org": "city-general"},
            "purposes": ["TREAT"],
            "valid_from": now,
            "valid_until": now + valid_for_ms,
        },
    )
    return patient, str(registered.events[0].attributes["record_id"]), str(granted.events[0].attributes["consent_id"])


def _decision(harness: LedgerHarness, decision_id: str) -> dict[str, object]:
    decision = harness.query("access", "decision", decision_id=decision_id)
    assert decision is not None
    return dict(decision)


def test_the_orderer_decides_the_order_of_a_revocation_and_a_request(
    harness: LedgerHarness, attacks: AttackLog
) -> None:
    # Prepare: the patient revokes and a clinician asks, both signed at the same moment
    patient, record_id, consent_id = _consenting_patient(harness, 30 * DAY_MS)
    clinician = harness.enrol("city-general", "dr-osei", Role.CLINICIAN)
    revoke = harness.sign(patient, "consent", "revoke", {"consent_id": consent_id})
    request = harness.sign(clinician, "access", "request", {"record_id": record_id, "purpose": "TREAT"})
    attacks.limit(
        AttackClass.BYZANTINE,
        "a compromised orderer orders an access request before the revocation it raced (or drops it)",
    )
    # Execute: the orderer puts the request first
    receipts = harness.apply([request.encoded, revoke.encoded])
    # Assert
    decision = _decision(harness, str(receipts[0].events[0].attributes["decision_id"]))
    assert decision["outcome"] == "permit"
    assert receipts[1].is_valid


def test_the_orderer_sets_the_clock_contracts_read(harness: LedgerHarness, attacks: AttackLog) -> None:
    # Prepare: a one-hour consent; two hours later a colluding requester signs with an old time
    _, record_id, _ = _consenting_patient(harness, HOUR_MS)
    clinician = harness.enrol("city-general", "dr-osei", Role.CLINICIAN)
    granted_at = harness.clock()
    harness.clock.advance(2 * HOUR_MS)
    request = harness.sign(
        clinician,
        "access",
        "request",
        {"record_id": record_id, "purpose": "TREAT"},
        timestamp_ms=granted_at + 50 * 60_000,
    )
    attacks.limit(AttackClass.BYZANTINE, "a compromised orderer back-dates a block so an expired consent still permits")
    # Execute: the orderer stamps the block inside the consent's hour
    number = harness.peer.store.height()
    committed = harness.peer.apply_batch(OrderedBatch(number, granted_at + 55 * 60_000, (request.encoded,), "solo"))
    # Assert
    decision = _decision(harness, str(committed.receipts[0].events[0].attributes["decision_id"]))
    assert decision["outcome"] == "permit"


def test_the_solo_orderer_is_a_single_point_of_failure(network: EmbeddedNetwork, attacks: AttackLog) -> None:
    # Prepare
    admin = LedgerClient(network.gateway("st-mary"), Credentials.of_member(network.admin("st-mary")))
    assert network.orderer is not None
    attacks.limit(AttackClass.BYZANTINE, "the solo orderer stops: no organisation can commit anything")
    # Execute
    network.orderer.drain()
    # Assert
    with pytest.raises(OrderingError):
        admin.submit("identity", "register_patient", PatientWallet.generate().enrolment_args(network.channel))


def test_a_vault_host_reads_the_plaintext_it_holds(world: SharingWorld, attacks: AttackLog) -> None:
    # Prepare
    vault = world.vault.vault
    attacks.limit(AttackClass.VAULT, "the host of a vault decrypts every record it holds (it has the master key)")
    # Execute
    plaintext = vault.decrypt(vault.object_id_for(world.alice.recent.locator))
    # Assert
    assert b'"value":6.50' in plaintext


def test_any_member_reads_every_record_index_and_confirms_a_guessed_value(
    world: SharingWorld, attacks: AttackLog
) -> None:
    """A researcher with no consent reads Alice's index entry (its clinical date, category and content
    hash), then tries every HbA1c value of a known template until the hash matches."""
    # Prepare: the template the attacker knows (the canonical form of the hospital's lab results)
    researcher = world.client(world.researcher)
    template = world.vault.vault.decrypt(world.vault.vault.object_id_for(world.bob.recent.locator))
    attacks.limit(AttackClass.VAULT, "any member reads any record's index entry (pseudonym, type, date, hashes)")
    attacks.limit(AttackClass.VAULT, "a low-entropy record is recovered from its on-chain content hash by guessing")
    # Execute
    entry = researcher.query("records", "get", record_id=world.alice.recent.record_id)
    found = None
    for tenths in range(300, 1500):
        guess = f"{tenths // 100}.{tenths % 100:02d}".encode()
        candidate = re.sub(rb'"value":[0-9.]+', b'"value":' + guess, template)
        if hashlib.sha256(candidate).digest() == entry["content_hash"]:
            found = guess
            break
    # Assert
    assert entry["patient"] == world.alice.wallet.pseudonym and entry["category"] == "laboratory"
    assert found == b"6.50"


def test_anyone_can_make_the_ledger_store_junk_transactions(network: EmbeddedNetwork, attacks: AttackLog) -> None:
    # Prepare: a decodable transaction from nobody, as an outsider can POST to /v1/transactions
    junk = sign_transaction(
        TransactionBody(
            network.channel,
            "records",
            "register",
            {"x": "y" * 1000},
            "member:" + "0" * 64,
            new_nonce(),
            network.clock(),
        ),
        SigningKey.generate(),
    )
    attacks.limit(AttackClass.REST, "an outsider's junk transactions are ordered and stored forever (refused, kept)")
    # Execute
    (receipt,) = submit_raw(network, [junk.encoded])
    # Assert
    assert receipt.code == "UNKNOWN_SIGNER"
    stored = network.peers["st-mary"].store.locate(junk.tx_id)
    assert stored is not None


def test_a_colluding_majority_of_organisations_decides_what_is_attested(
    network: EmbeddedNetwork, attacks: AttackLog
) -> None:
    # Prepare: three of five organisations sign, with their real peer keys, a block that never existed
    admin = LedgerClient(network.gateway("st-mary"), Credentials.of_member(network.admin("st-mary")))
    admin.submit("identity", "register_patient", PatientWallet.generate().enrolment_args(network.channel), check=False)
    honest = network.peers["st-mary"]
    number = honest.store.height() - 1
    settle_attestations(network, number)
    fake = os.urandom(32)
    attacks.limit(AttackClass.BYZANTINE, "three of five organisations attest a false block: the quorum follows them")
    # Execute
    for org_id in ("city-general", "mutual-health", "northern-research"):
        member = network.member_identity(org_id, "peer")
        honest.receive_attestation(attest(number, fake, os.urandom(32), org_id, member.certificate.cert_id, member.key))
    honest.flush_attestations()
    # Assert
    assert quorum_hash(honest, honest.store.attestations(number)) == fake
