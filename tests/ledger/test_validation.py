"""Every way the ledger refuses a transaction: each refusal carries its named code and a sentence,
leaves the world state exactly as it was, and does not stop later valid transactions.

All tests run on the synchronous single-peer harness; a "block" is one `harness.apply` call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from medledger.core.encoding import encode
from medledger.core.identity import MemberIdentity, Role, parse_member_certificate
from medledger.core.signing import Domain, SigningKey
from medledger.ledger.receipts import VALID, Receipt, RejectionCode
from medledger.ledger.transactions import (
    MAX_TX_BYTES,
    Transaction,
    TransactionBody,
    raw_transaction_id,
    transaction_id,
)
from medledger.sdk import Credentials, PatientWallet
from tests.conftest import DAY_MS, LedgerHarness

StateSnapshot = list[tuple[str, bytes, int, int]]

MAX_TX_AGE_MS = DAY_MS
"""The default ChainRules.max_tx_age_ms (the harness genesis sets no rules)."""
MAX_TX_SKEW_MS = 10 * 60 * 1000
"""The default ChainRules.max_tx_skew_ms."""


@dataclass
class World:
    """A harness with a few members of different roles and organisations, a patient and one record."""

    harness: LedgerHarness
    registrar: MemberIdentity
    """Registrar of st-mary (hospital)."""
    clinician: MemberIdentity
    """Clinician of st-mary (hospital)."""
    other_clinician: MemberIdentity
    """Clinician of city-general (another hospital)."""
    researcher: MemberIdentity
    """Researcher of northern-research (a research organisation)."""
    patient: PatientWallet
    """A patient enrolled by st-mary."""
    record_id: str
    """A current record of st-mary about `patient`."""


@dataclass(frozen=True)
class Outcome:
    """What applying one block changed."""

    receipts: list[Receipt]
    state_before: StateSnapshot
    state_after: StateSnapshot
    height_before: int
    height_after: int


def record_args(patient: PatientWallet, /, **overrides: Any) -> dict[str, Any]:
    """Valid arguments of records.register, with `overrides` replacing or adding fields."""
    args: dict[str, Any] = {
        "patient": patient.pseudonym,
        "resource_type": "Observation",
        "clinical_date": "2026-01-01",
        "content_hash": bytes(range(32)),
        "locator": "vault://st-mary/record-1",
    }
    args.update(overrides)
    return args


@pytest.fixture
def world(harness: LedgerHarness) -> World:
    registrar = harness.enrol("st-mary", "registrar", Role.REGISTRAR)
    clinician = harness.enrol("st-mary", "clinician", Role.CLINICIAN)
    other_clinician = harness.enrol("city-general", "clinician", Role.CLINICIAN)
    researcher = harness.enrol("northern-research", "researcher", Role.RESEARCHER)
    patient = harness.enrol_patient(registrar)
    receipt = harness.submit(registrar, "records", "register", record_args(patient))
    assert receipt.is_valid, receipt
    record_id = receipt.events[0].attributes["record_id"]
    return World(harness, registrar, clinician, other_clinician, researcher, patient, record_id)


def apply_block(harness: LedgerHarness, raw_transactions: Sequence[bytes]) -> Outcome:
    state_before, height_before = harness.state_snapshot(), harness.peer.store.height()
    receipts = harness.apply(raw_transactions)
    return Outcome(receipts, state_before, harness.state_snapshot(), height_before, harness.peer.store.height())


def encode_transaction(body_bytes: bytes, signature: bytes) -> bytes:
    """Package arbitrary body bytes and signature the way a stored transaction is packaged."""
    return encode({"body": body_bytes, "signature": signature})


def flip_byte(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def valid_register(world: World, signer: MemberIdentity | None = None) -> Transaction:
    """A fresh, valid records.register transaction (a new nonce, so a new id each call)."""
    return world.harness.sign(signer or world.registrar, "records", "register", record_args(world.patient))


def assert_sentence(reason: str) -> None:
    assert reason.strip() == reason, f"reason {reason!r} has stray whitespace"
    assert len(reason.split()) >= 3, f"reason {reason!r} is not a sentence"


def assert_rejected_without_effect(outcome: Outcome, code: str) -> Receipt:
    """The single transaction of the block was rejected with `code`; the block committed; state did not change."""
    assert [receipt.code for receipt in outcome.receipts] == [code], outcome.receipts
    receipt = outcome.receipts[0]
    assert_sentence(receipt.reason)
    assert (receipt.events, receipt.writes) == ((), 0)
    assert outcome.height_after == outcome.height_before + 1
    assert outcome.state_after == outcome.state_before
    return receipt


def assert_ledger_still_accepts(world: World) -> None:
    """A later valid transaction is applied."""
    receipt = world.harness.apply([valid_register(world).encoded])[0]
    assert receipt.code == VALID, receipt


# signatures -------------------------------------------------------------------------------


def test_forged_signature_is_bad_signature(world: World) -> None:
    # Prepare: the member's signer ref, but a key that is not theirs
    forger = Credentials(f"member:{world.registrar.certificate.cert_id}", SigningKey.generate())
    tx = world.harness.sign(forger, "records", "register", record_args(world.patient))
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, RejectionCode.BAD_SIGNATURE)
    assert receipt.tx_id == tx.tx_id
    assert_ledger_still_accepts(world)


def test_forged_patient_signature_is_bad_signature(world: World) -> None:
    # Prepare
    forger = Credentials(world.patient.signer_ref, SigningKey.generate())
    tx = world.harness.sign(forger, "records", "register", record_args(world.patient))
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    assert_rejected_without_effect(outcome, RejectionCode.BAD_SIGNATURE)
    assert_ledger_still_accepts(world)


@pytest.mark.parametrize("index", [0, 31, 63])
def test_tampered_signature_is_bad_signature(world: World, index: int) -> None:
    # Prepare
    tx = valid_register(world)
    raw = encode_transaction(tx.body_bytes, flip_byte(tx.signature, index))
    # Execute
    outcome = apply_block(world.harness, [raw])
    # Assert
    assert_rejected_without_effect(outcome, RejectionCode.BAD_SIGNATURE)
    assert_ledger_still_accepts(world)


def test_signed_body_with_a_changed_argument_is_bad_signature(world: World) -> None:
    # Prepare: re-encode the body with another content hash but keep the original signature
    tx = valid_register(world)
    changed = TransactionBody(**{**tx.body.to_dict(), "args": record_args(world.patient, content_hash=bytes(32))})
    raw = encode_transaction(encode(changed.to_dict()), tx.signature)
    # Execute
    outcome = apply_block(world.harness, [raw])
    # Assert
    assert_rejected_without_effect(outcome, RejectionCode.BAD_SIGNATURE)
    assert_ledger_still_accepts(world)


@pytest.mark.parametrize("domain", [d for d in Domain if d is not Domain.TRANSACTION], ids=lambda d: d.name)
def test_valid_signature_of_another_domain_is_bad_signature(world: World, domain: Domain) -> None:
    # Prepare: the member's own key signs the exact body bytes, but for another kind of object
    tx = valid_register(world)
    raw = encode_transaction(tx.body_bytes, world.registrar.key.sign(domain, tx.body_bytes))
    # Execute
    outcome = apply_block(world.harness, [raw])
    # Assert
    assert_rejected_without_effect(outcome, RejectionCode.BAD_SIGNATURE)
    assert_ledger_still_accepts(world)


# replays ----------------------------------------------------------------------------------


def test_replay_in_a_later_block_is_duplicate(world: World) -> None:
    # Prepare
    tx = valid_register(world)
    first = world.harness.apply([tx.encoded])[0]
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    assert first.code == VALID
    receipt = assert_rejected_without_effect(outcome, RejectionCode.DUPLICATE_TX)
    assert receipt.tx_id == tx.tx_id
    assert_ledger_still_accepts(world)


def test_replay_within_one_block_is_duplicate(world: World) -> None:
    # Prepare
    tx = valid_register(world)
    records_before = world.harness.query("records", "by_patient", patient=world.patient.pseudonym)
    # Execute
    outcome = apply_block(world.harness, [tx.encoded, tx.encoded])
    # Assert
    assert [receipt.code for receipt in outcome.receipts] == [VALID, RejectionCode.DUPLICATE_TX]
    assert_sentence(outcome.receipts[1].reason)
    records_after = world.harness.query("records", "by_patient", patient=world.patient.pseudonym)
    assert len(records_after) == len(records_before) + 1
    assert_ledger_still_accepts(world)


def test_replay_of_a_contract_rejection_is_duplicate(world: World) -> None:
    # Prepare: a signed call the contract refuses still uses up its id
    tx = world.harness.sign(
        world.registrar, "records", "register", record_args(world.patient, clinical_date="2026-02-30")
    )
    first = world.harness.apply([tx.encoded])[0]
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    assert first.code == "BAD_DATE"
    assert_rejected_without_effect(outcome, RejectionCode.DUPLICATE_TX)


def test_forged_copy_in_an_earlier_block_does_not_block_the_genuine(world: World) -> None:
    # Prepare: same body (hence same id), broken signature, submitted first
    genuine = valid_register(world)
    forged = encode_transaction(genuine.body_bytes, flip_byte(genuine.signature, 0))
    forged_outcome = apply_block(world.harness, [forged])
    # Execute
    genuine_receipt = world.harness.apply([genuine.encoded])[0]
    # Assert
    forged_receipt = assert_rejected_without_effect(forged_outcome, RejectionCode.BAD_SIGNATURE)
    assert forged_receipt.tx_id == genuine.tx_id
    assert genuine_receipt.code == VALID


def test_forged_copy_earlier_in_the_same_block_does_not_block_the_genuine(world: World) -> None:
    # Prepare
    genuine = valid_register(world)
    forged = encode_transaction(genuine.body_bytes, world.clinician.key.sign(Domain.TRANSACTION, genuine.body_bytes))
    # Execute
    receipts = world.harness.apply([forged, genuine.encoded, genuine.encoded])
    # Assert
    assert [r.code for r in receipts] == [RejectionCode.BAD_SIGNATURE, VALID, RejectionCode.DUPLICATE_TX]
    assert {r.tx_id for r in receipts} == {genuine.tx_id}


def test_receipt_lookup_finds_the_accepted_copy_not_the_forged_one(world: World) -> None:
    # Prepare
    genuine = valid_register(world)
    world.harness.apply([encode_transaction(genuine.body_bytes, bytes(64))])
    world.harness.apply([genuine.encoded])
    # Execute
    receipt = world.harness.peer.receipt(genuine.tx_id)
    # Assert
    assert receipt is not None
    assert receipt.code == VALID


# signer identity --------------------------------------------------------------------------


def test_revoked_member_is_cert_revoked(world: World) -> None:
    # Prepare
    cert_id = world.clinician.certificate.cert_id
    revoked = world.harness.submit(
        world.harness.admins["st-mary"], "identity", "revoke_member", {"cert_id": cert_id, "reason": "left the trust"}
    )
    tx = valid_register(world, signer=world.clinician)
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    assert revoked.is_valid, revoked
    receipt = assert_rejected_without_effect(outcome, RejectionCode.CERT_REVOKED)
    assert cert_id in receipt.reason
    assert_ledger_still_accepts(world)


def test_member_revoked_earlier_in_the_same_block_is_cert_revoked(world: World) -> None:
    # Prepare
    cert_id = world.clinician.certificate.cert_id
    revoke = world.harness.sign(
        world.harness.admins["st-mary"], "identity", "revoke_member", {"cert_id": cert_id, "reason": "key lost"}
    )
    tx = valid_register(world, signer=world.clinician)
    # Execute
    receipts = world.harness.apply([revoke.encoded, tx.encoded])
    # Assert
    assert [r.code for r in receipts] == [VALID, RejectionCode.CERT_REVOKED]


def test_expired_certificate_is_cert_expired(world: World) -> None:
    # Prepare: a certificate valid for one day, registered, then the clock moves two days on
    harness = world.harness
    key = SigningKey.generate()
    der = harness.cas["st-mary"].issue("locum", Role.CLINICIAN, key.public_key, harness.clock(), valid_days=1)
    locum = MemberIdentity(parse_member_certificate(der), key)
    registered = harness.submit(harness.admins["st-mary"], "identity", "register_member", {"certificate": der})
    harness.clock.advance(2 * DAY_MS)
    tx = valid_register(world, signer=locum)
    # Execute
    outcome = apply_block(harness, [tx.encoded])
    # Assert
    assert registered.is_valid, registered
    receipt = assert_rejected_without_effect(outcome, RejectionCode.CERT_EXPIRED)
    assert locum.certificate.cert_id in receipt.reason
    assert_ledger_still_accepts(world)


def test_unregistered_certificate_is_unknown_signer(world: World) -> None:
    # Prepare: issued by a genuine CA but never registered on the ledger
    ghost = world.harness.cas["st-mary"].enrol("ghost", Role.CLINICIAN, world.harness.clock())
    tx = valid_register(world, signer=ghost)
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    assert_rejected_without_effect(outcome, RejectionCode.UNKNOWN_SIGNER)
    assert_ledger_still_accepts(world)


def test_unknown_patient_is_unknown_signer(world: World) -> None:
    # Prepare
    stranger = PatientWallet.generate()
    tx = world.harness.sign(stranger, "records", "register", record_args(stranger))
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, RejectionCode.UNKNOWN_SIGNER)
    assert stranger.pseudonym in receipt.reason
    assert_ledger_still_accepts(world)


# contract and function --------------------------------------------------------------------


def test_unknown_contract(world: World) -> None:
    # Prepare
    tx = world.harness.sign(world.registrar, "billing", "register", record_args(world.patient))
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, RejectionCode.UNKNOWN_CONTRACT)
    assert "billing" in receipt.reason
    assert_ledger_still_accepts(world)


def test_unknown_function(world: World) -> None:
    # Prepare
    tx = world.harness.sign(world.registrar, "records", "erase_everything", record_args(world.patient))
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, RejectionCode.UNKNOWN_FUNCTION)
    assert "erase_everything" in receipt.reason
    assert_ledger_still_accepts(world)


# arguments --------------------------------------------------------------------------------

BAD_RECORD_ARGS: dict[str, tuple[dict[str, Any], str]] = {
    "missing-field": ({"locator": None}, "locator"),
    "wrong-type-str-for-bytes": ({"content_hash": bytes(range(32)).hex()}, "content_hash"),
    "wrong-type-int-for-str": ({"clinical_date": 20260101}, "clinical_date"),
    "extra-unknown-field": ({"colour": "blue"}, "colour"),
    "content-hash-31-bytes": ({"content_hash": bytes(31)}, "content_hash"),
    "content-hash-33-bytes": ({"content_hash": bytes(33)}, "content_hash"),
    "clinical-date-not-a-date": ({"clinical_date": "01/02/2026"}, "clinical_date"),
    "bad-pseudonym": ({"patient": "not-a-pseudonym"}, "patient"),
    "bad-locator": ({"locator": "no scheme"}, "locator"),
}
"""Case -> (fields to override, where None removes the field; the field the reason must name)."""


@pytest.mark.parametrize(
    ("overrides", "field"),
    list(BAD_RECORD_ARGS.values()),
    ids=list(BAD_RECORD_ARGS),
)
def test_malformed_arguments_are_bad_arguments_naming_the_field(
    world: World, overrides: Mapping[str, Any], field: str
) -> None:
    # Prepare
    args = {key: value for key, value in record_args(world.patient, **overrides).items() if value is not None}
    tx = world.harness.sign(world.registrar, "records", "register", args)
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, RejectionCode.BAD_ARGUMENTS)
    assert field in receipt.reason
    assert "records.register" in receipt.reason
    assert_ledger_still_accepts(world)


@pytest.mark.parametrize("clinical_date", ["2026-02-30", "2025-02-29", "2026-13", "2026-00-10"])
def test_impossible_clinical_date_is_bad_date(world: World, clinical_date: str) -> None:
    # Prepare
    args = record_args(world.patient, clinical_date=clinical_date)
    tx = world.harness.sign(world.registrar, "records", "register", args)
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, "BAD_DATE")
    assert "clinical date" in receipt.reason
    assert clinical_date in receipt.reason
    assert_ledger_still_accepts(world)


# roles and organisations ------------------------------------------------------------------


def test_clinician_cannot_register_a_member(world: World) -> None:
    # Prepare
    newcomer = world.harness.cas["st-mary"].enrol("newcomer", Role.NURSE, world.harness.clock())
    args = {"certificate": newcomer.certificate.der}
    tx = world.harness.sign(world.clinician, "identity", "register_member", args)
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, RejectionCode.ROLE_NOT_PERMITTED)
    assert "admin" in receipt.reason
    assert_ledger_still_accepts(world)


def test_researcher_cannot_register_a_record(world: World) -> None:
    # Prepare
    tx = valid_register(world, signer=world.researcher)
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, RejectionCode.ROLE_NOT_PERMITTED)
    assert "researcher" in receipt.reason
    assert_ledger_still_accepts(world)


def test_patient_cannot_register_a_record(world: World) -> None:
    # Prepare
    tx = world.harness.sign(world.patient, "records", "register", record_args(world.patient))
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, RejectionCode.ROLE_NOT_PERMITTED)
    assert "patient" in receipt.reason
    assert_ledger_still_accepts(world)


def test_admin_cannot_register_a_certificate_of_another_organisation(world: World) -> None:
    # Prepare: a genuine city-general certificate, presented by st-mary's admin
    foreign = world.harness.cas["city-general"].enrol("intruder", Role.CLINICIAN, world.harness.clock())
    args = {"certificate": foreign.certificate.der}
    tx = world.harness.sign(world.harness.admins["st-mary"], "identity", "register_member", args)
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, "WRONG_ORGANISATION")
    assert "city-general" in receipt.reason
    assert world.harness.query("identity", "member", id=foreign.certificate.cert_id) is None
    assert_ledger_still_accepts(world)


def test_member_of_another_hospital_cannot_amend_a_record(world: World) -> None:
    # Prepare
    args = {
        "previous": world.record_id,
        "clinical_date": "2026-01-02",
        "content_hash": bytes(32),
        "locator": "vault://city-general/copy",
        "reason": "correcting another hospital's record",
    }
    tx = world.harness.sign(world.other_clinician, "records", "amend", args)
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, "WRONG_ORGANISATION")
    assert "st-mary" in receipt.reason
    assert world.harness.query("records", "get", record_id=world.record_id)["status"] == "current"
    assert_ledger_still_accepts(world)


# channel and time -------------------------------------------------------------------------


def test_wrong_channel(world: World) -> None:
    # Prepare
    args = record_args(world.patient)
    tx = world.harness.sign(world.registrar, "records", "register", args, channel="another-channel")
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    receipt = assert_rejected_without_effect(outcome, RejectionCode.WRONG_CHANNEL)
    assert "another-channel" in receipt.reason
    assert_ledger_still_accepts(world)


@pytest.mark.parametrize(
    ("offset_ms", "code"),
    [(-MAX_TX_AGE_MS - 1, RejectionCode.STALE_TX), (MAX_TX_SKEW_MS + 1, RejectionCode.FUTURE_TX)],
    ids=["stale", "future"],
)
def test_timestamp_outside_the_window_is_refused(world: World, offset_ms: int, code: RejectionCode) -> None:
    # Prepare
    args = record_args(world.patient)
    tx = world.harness.sign(
        world.registrar, "records", "register", args, timestamp_ms=world.harness.clock() + offset_ms
    )
    # Execute
    outcome = apply_block(world.harness, [tx.encoded])
    # Assert
    assert_rejected_without_effect(outcome, code)
    assert_ledger_still_accepts(world)


@pytest.mark.parametrize("offset_ms", [-MAX_TX_AGE_MS, MAX_TX_SKEW_MS], ids=["oldest", "latest"])
def test_timestamp_at_the_edge_of_the_window_is_accepted(world: World, offset_ms: int) -> None:
    # Prepare
    args = record_args(world.patient)
    tx = world.harness.sign(
        world.registrar, "records", "register", args, timestamp_ms=world.harness.clock() + offset_ms
    )
    # Execute
    receipt = world.harness.apply([tx.encoded])[0]
    # Assert
    assert receipt.code == VALID, receipt


# undecodable bytes ------------------------------------------------------------------------


def _malformed_inputs(world: World) -> dict[str, bytes]:
    tx = valid_register(world)
    body = tx.body.to_dict()
    outer_keys_unsorted = b"\xa2" + encode("signature") + encode(tx.signature) + encode("body") + encode(tx.body_bytes)
    return {
        "garbage": b"\x00garbage",
        "empty": b"",
        "truncated": tx.encoded[:-1],
        "half": tx.encoded[: len(tx.encoded) // 2],
        "outer-extra-key": encode({"body": tx.body_bytes, "signature": tx.signature, "extra": 1}),
        "outer-missing-signature": encode({"body": tx.body_bytes}),
        "outer-not-a-map": encode([tx.body_bytes, tx.signature]),
        "outer-keys-unsorted": outer_keys_unsorted,
        "body-not-bytes": encode({"body": body, "signature": tx.signature}),
        "body-extra-field": encode_transaction(encode({**body, "memo": "x"}), tx.signature),
        "body-bad-signer-ref": encode_transaction(encode({**body, "signer": "admin"}), tx.signature),
        "body-short-nonce": encode_transaction(encode({**body, "nonce": b"short"}), tx.signature),
        "body-float-timestamp-bytes": encode_transaction(
            encode({**body, "timestamp_ms": 0})[:-1] + b"\xf9\x3c\x00", tx.signature
        ),
        "oversized": b"\x00" * (MAX_TX_BYTES + 1),
    }


MALFORMED_CASES = [
    "garbage",
    "empty",
    "truncated",
    "half",
    "outer-extra-key",
    "outer-missing-signature",
    "outer-not-a-map",
    "outer-keys-unsorted",
    "body-not-bytes",
    "body-extra-field",
    "body-bad-signer-ref",
    "body-short-nonce",
    "body-float-timestamp-bytes",
    "oversized",
]


@pytest.mark.parametrize("case", MALFORMED_CASES)
def test_undecodable_bytes_are_malformed_and_the_block_commits(world: World, case: str) -> None:
    # Prepare
    raw = _malformed_inputs(world)[case]
    # Execute
    outcome = apply_block(world.harness, [raw])
    # Assert
    receipt = assert_rejected_without_effect(outcome, RejectionCode.MALFORMED)
    assert receipt.tx_id == raw_transaction_id(raw)
    block = world.harness.peer.store.block(outcome.height_before)
    assert block is not None
    assert block.transactions == (raw,)
    assert world.harness.peer.store.receipts(outcome.height_before) == [receipt]
    assert_ledger_still_accepts(world)


def test_malformed_case_list_names_every_input(world: World) -> None:
    # Prepare
    expected = set(MALFORMED_CASES)
    # Execute
    built = set(_malformed_inputs(world))
    # Assert
    assert built == expected


# blocks of mixed transactions -------------------------------------------------------------


def test_mixed_block_commits_the_valid_and_rejects_only_the_bad(world: World) -> None:
    # Prepare
    harness = world.harness
    first, second, third = valid_register(world), valid_register(world, world.clinician), valid_register(world)
    forged = harness.sign(
        Credentials(f"member:{world.registrar.certificate.cert_id}", SigningKey.generate()),
        "records",
        "register",
        record_args(world.patient),
    )
    wrong_role = valid_register(world, signer=world.researcher)
    bad_date = harness.sign(
        world.registrar, "records", "register", record_args(world.patient, clinical_date="2026-02-30")
    )
    garbage = b"\x00garbage"
    batch = [
        first.encoded,
        forged.encoded,
        second.encoded,
        garbage,
        wrong_role.encoded,
        first.encoded,
        bad_date.encoded,
        third.encoded,
    ]
    records_before = harness.query("records", "by_patient", patient=world.patient.pseudonym)
    # Execute
    outcome = apply_block(harness, batch)
    # Assert
    assert [receipt.code for receipt in outcome.receipts] == [
        VALID,
        RejectionCode.BAD_SIGNATURE,
        VALID,
        RejectionCode.MALFORMED,
        RejectionCode.ROLE_NOT_PERMITTED,
        RejectionCode.DUPLICATE_TX,
        "BAD_DATE",
        VALID,
    ]
    expected_ids = [
        first.tx_id,
        forged.tx_id,
        second.tx_id,
        raw_transaction_id(garbage),
        wrong_role.tx_id,
        first.tx_id,
        bad_date.tx_id,
        third.tx_id,
    ]
    assert [receipt.tx_id for receipt in outcome.receipts] == expected_ids
    for receipt in outcome.receipts:
        if receipt.is_valid:
            assert receipt.reason == "" and receipt.writes > 0
        else:
            assert_sentence(receipt.reason)
            assert (receipt.events, receipt.writes) == ((), 0)
    assert harness.peer.store.receipts(outcome.height_before) == outcome.receipts
    records_after = harness.query("records", "by_patient", patient=world.patient.pseudonym)
    assert len(records_after) == len(records_before) + 3
    registered_by = {
        receipt.events[0].attributes["record_id"]: receipt.tx_id for receipt in outcome.receipts if receipt.is_valid
    }
    assert set(registered_by.values()) == {first.tx_id, second.tx_id, third.tx_id}


def test_state_written_by_a_mixed_block_is_only_that_of_its_valid_transactions(world: World) -> None:
    # Prepare: a rejected call before the valid one and its replay after it
    harness = world.harness
    good = valid_register(world)
    bad = harness.sign(world.researcher, "records", "register", record_args(world.patient))
    # Execute
    outcome = apply_block(harness, [bad.encoded, good.encoded, bad.encoded])
    # Assert
    assert [r.code for r in outcome.receipts] == [
        RejectionCode.ROLE_NOT_PERMITTED,
        VALID,
        RejectionCode.DUPLICATE_TX,
    ]
    changed = {row for row in outcome.state_after if row not in outcome.state_before}
    assert {(block, index) for _, _, block, index in changed} == {(outcome.height_before, 1)}
    record_id = outcome.receipts[1].events[0].attributes["record_id"]
    assert {key for key, _, _, _ in changed} >= {
        f"records/entry/{record_id}",
        f"records/by-patient/{world.patient.pseudonym}/{record_id}",
    }


def test_body_bytes_define_the_transaction_id(world: World) -> None:
    # Prepare
    tx = valid_register(world)
    # Execute
    receipt = world.harness.apply([tx.encoded])[0]
    # Assert
    assert receipt.tx_id == transaction_id(tx.body_bytes) == tx.tx_id


def test_a_fresh_nonce_makes_an_identical_call_a_new_transaction(world: World) -> None:
    # Prepare: the same signer, call and timestamp; only the nonce differs
    timestamp_ms = world.harness.clock()
    args = record_args(world.patient)
    first, second = (
        world.harness.sign(world.registrar, "records", "register", args, timestamp_ms=timestamp_ms) for _ in range(2)
    )
    # Execute
    receipts = world.harness.apply([first.encoded, second.encoded])
    # Assert
    assert first.body.nonce != second.body.nonce
    assert [r.code for r in receipts] == [VALID, VALID]
    assert receipts[0].tx_id != receipts[1].tx_id
