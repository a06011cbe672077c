"""Forged, replayed, re-ordered and cross-domain transaction signatures, sent through the orderer of a
running embedded network: every copy is refused with its named code by all five peers alike, and a
forged copy never blocks the genuine transaction.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import cbor2
import pytest

from medledger.core.encoding import encode
from medledger.core.identity import MemberIdentity, Role
from medledger.core.signing import Domain, SigningKey
from medledger.ledger.receipts import VALID, Receipt
from medledger.ledger.transactions import Transaction, TransactionBody, sign_transaction
from medledger.node.network import EmbeddedNetwork
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from tests.conftest import DAY_MS, ManualClock, member_client
from tests.security.attacks import AttackClass, AttackLog
from tests.security.ordering import submit_raw

SIGNATURES = AttackClass.SIGNATURES
ED25519_GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
"""L: adding it to a signature's S gives the same point arithmetic, so a lax verifier accepts both."""


@dataclass
class Ledger:
    """A running network with a registrar, a patient and a client for each."""

    network: EmbeddedNetwork
    clock: ManualClock
    registrar: MemberIdentity
    registrar_client: LedgerClient
    patient: PatientWallet
    patient_client: LedgerClient

    def registration(self, label: str) -> Transaction:
        """A valid, signed, not yet submitted records.register transaction."""
        args = {
            "patient": self.patient.pseudonym,
            "resource_type": "Observation",
            "clinical_date": "2025-12-01",
            "content_hash": hashlib.sha256(label.encode()).digest(),
            "locator": f"vault://st-mary/{hashlib.md5(label.encode()).hexdigest()}",
        }
        return self.registrar_client.prepare("records", "register", args)


@pytest.fixture
def ledger(network: EmbeddedNetwork, clock: ManualClock) -> Iterator[Ledger]:
    registrar_client, registrar = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    patient = PatientWallet.generate()
    registrar_client.submit("identity", "register_patient", patient.enrolment_args(network.channel))
    patient_client = LedgerClient(network.gateway("st-mary"), Credentials.of_patient(patient))
    yield Ledger(network, clock, registrar, registrar_client, patient, patient_client)


def stored(body_bytes: bytes, signature: bytes) -> bytes:
    """The stored form of a transaction: canonical {"body", "signature"}."""
    return encode({"body": body_bytes, "signature": signature})


def codes(receipts: list[Receipt]) -> list[str]:
    return [r.code for r in receipts]


def test_forged_signatures_are_bad_signature(ledger: Ledger, attacks: AttackLog) -> None:
    # Prepare
    tx = ledger.registration("forged")
    changed_body = replace(tx.body, args={**tx.body.args, "locator": "vault://st-mary/" + "f" * 32})
    flipped = bytes([tx.signature[0] ^ 0x01]) + tx.signature[1:]
    s = int.from_bytes(tx.signature[32:], "little") + ED25519_GROUP_ORDER
    malleated = tx.signature[:32] + s.to_bytes(32, "little")
    forgeries = {
        "random signature bytes": stored(tx.body_bytes, os.urandom(64)),
        "signed by a fresh key under the registrar's name": sign_transaction(tx.body, SigningKey.generate()).encoded,
        "body changed after signing": stored(encode(changed_body.to_dict()), tx.signature),
        "one bit of the signature flipped": stored(tx.body_bytes, flipped),
        "truncated signature": stored(tx.body_bytes, tx.signature[:63]),
        "empty signature": stored(tx.body_bytes, b""),
        "malleated signature (S + L)": stored(tx.body_bytes, malleated),
    }
    for what in forgeries:
        attacks.tried(SIGNATURES, f"transaction: {what}")
    # Execute
    receipts = submit_raw(ledger.network, list(forgeries.values()))
    genuine = submit_raw(ledger.network, [tx.encoded])
    # Assert
    assert codes(receipts) == ["BAD_SIGNATURE"] * len(forgeries), dict(zip(forgeries, codes(receipts), strict=True))
    assert all(r.writes == 0 and not r.events for r in receipts)
    assert codes(genuine) == [VALID], "a refused forgery must not consume the genuine transaction's id"


def test_a_patient_transaction_signed_by_another_key_is_bad_signature(ledger: Ledger, attacks: AttackLog) -> None:
    # Prepare
    now = ledger.clock()
    grant = ledger.patient_client.prepare(
        "consent",
        "grant",
        {
            "provision": "permit",
            "grantee": {"org": "northern-research"},
            "purposes": ["HRESCH"],
            "valid_from": now,
            "valid_until": now + DAY_MS,
        },
    )
    attacker = PatientWallet.generate()
    attacks.tried(SIGNATURES, "consent grant in a patient's name signed by another wallet")
    # Execute
    receipts = submit_raw(ledger.network, [sign_transaction(grant.body, attacker.signing_key).encoded])
    # Assert
    assert codes(receipts) == ["BAD_SIGNATURE"]
    assert ledger.patient_client.query("consent", "list", patient=ledger.patient.pseudonym) == []


def test_replays_are_duplicate_in_a_block_across_blocks_and_after_the_age_window(
    ledger: Ledger, attacks: AttackLog
) -> None:
    # Prepare
    tx = ledger.registration("replayed")
    unknown_patient = replace(tx.body, args={**tx.body.args, "patient": "0" * 32})
    rejected = sign_transaction(unknown_patient, ledger.registrar.key)
    attacks.tried(SIGNATURES, "replay of a transaction within its own block")
    attacks.tried(SIGNATURES, "replay of a transaction in a later block")
    attacks.tried(SIGNATURES, "replay of a transaction 25 hours later (past the age window)")
    attacks.tried(SIGNATURES, "replay of a transaction the contract rejected")
    # Execute
    same_block = submit_raw(ledger.network, [tx.encoded, tx.encoded])
    later_block = submit_raw(ledger.network, [tx.encoded])
    first_rejection = submit_raw(ledger.network, [rejected.encoded])
    replayed_rejection = submit_raw(ledger.network, [rejected.encoded])
    ledger.clock.advance(25 * 3_600_000)
    after_window = submit_raw(ledger.network, [tx.encoded])
    # Assert
    assert codes(same_block) == [VALID, "DUPLICATE_TX"]
    assert codes(later_block) == ["DUPLICATE_TX"]
    assert codes(first_rejection) == ["UNKNOWN_PATIENT"]
    assert codes(replayed_rejection) == ["DUPLICATE_TX"]
    assert codes(after_window) == ["DUPLICATE_TX"]
    records = ledger.registrar_client.query("records", "by_patient", patient=ledger.patient.pseudonym)
    assert len(records) == 1


def test_a_transaction_of_another_channel_is_wrong_channel(ledger: Ledger, attacks: AttackLog) -> None:
    # Prepare: a valid signature over a body meant for another consortium's channel
    tx = ledger.registration("other channel")
    foreign = sign_transaction(replace(tx.body, channel="another-consortium"), ledger.registrar.key)
    attacks.tried(SIGNATURES, "transaction signed for another channel replayed here")
    # Execute
    receipts = submit_raw(ledger.network, [foreign.encoded])
    # Assert
    assert codes(receipts) == ["WRONG_CHANNEL"]


def _noncanonical_map(pairs: list[tuple[str, bytes]]) -> bytes:
    """A CBOR map of already encoded values, its entries in the given order and duplicates kept:
    bytes that `encode` never writes."""
    assert len(pairs) < 24
    return bytes([0xA0 + len(pairs)]) + b"".join(cbor2.dumps(key) + value for key, value in pairs)


def _encoded(pairs: list[tuple[str, Any]]) -> list[tuple[str, bytes]]:
    return [(key, encode(value)) for key, value in pairs]


def test_reordered_and_duplicated_fields_are_malformed_even_when_validly_signed(
    ledger: Ledger, attacks: AttackLog
) -> None:
    # Prepare: the attacker holds the key, so each byte string carries a valid signature over itself
    tx = ledger.registration("reordered")
    fields = list(tx.body.to_dict().items())
    reversed_body = _noncanonical_map(_encoded(list(reversed(fields))))
    reversed_args = _noncanonical_map(_encoded(list(reversed(list(tx.body.args.items())))))
    args_reversed = _noncanonical_map([(k, reversed_args if k == "args" else encode(v)) for k, v in fields])
    duplicated = _noncanonical_map(_encoded([*fields, ("args", {**tx.body.args, "clinical_date": "1999-01-01"})]))
    key = ledger.registrar.key
    variants = {
        "body fields in reversed order": stored(reversed_body, key.sign(Domain.TRANSACTION, reversed_body)),
        "argument fields in reversed order": stored(args_reversed, key.sign(Domain.TRANSACTION, args_reversed)),
        "a body field given twice": stored(duplicated, key.sign(Domain.TRANSACTION, duplicated)),
        "outer map with signature before body": _noncanonical_map(
            _encoded([("signature", tx.signature), ("body", tx.body_bytes)])
        ),
    }
    for what in variants:
        attacks.tried(SIGNATURES, f"re-ordered encoding: {what}")
    # Execute
    receipts = submit_raw(ledger.network, list(variants.values()))
    # Assert
    assert codes(receipts) == ["MALFORMED"] * len(variants), dict(zip(variants, codes(receipts), strict=True))


@pytest.mark.parametrize("domain", [d for d in Domain if d is not Domain.TRANSACTION])
def test_a_signature_made_in_another_domain_is_bad_signature(
    ledger: Ledger, attacks: AttackLog, domain: Domain
) -> None:
    # Prepare: the registrar's own key, over the exact body bytes, but for another kind of object
    tx = ledger.registration(f"domain {domain.value}")
    attacks.tried(SIGNATURES, f"transaction body signed in the {domain.value} domain")
    # Execute
    receipts = submit_raw(ledger.network, [stored(tx.body_bytes, ledger.registrar.key.sign(domain, tx.body_bytes))])
    # Assert
    assert codes(receipts) == ["BAD_SIGNATURE"]


def test_an_unregistered_signer_is_unknown_signer(ledger: Ledger, attacks: AttackLog) -> None:
    # Prepare: a certificate St Mary's CA issued but nobody registered, and a wallet never enrolled
    issued = ledger.network.ca("st-mary").enrol("ghost", Role.REGISTRAR, ledger.clock())
    ghost = LedgerClient(ledger.network.gateway("st-mary"), Credentials.of_member(issued))
    stranger = LedgerClient(ledger.network.gateway("st-mary"), Credentials.of_patient(PatientWallet.generate()))
    now = ledger.clock()
    attacks.tried(SIGNATURES, "transaction by a certificate that was never registered")
    attacks.tried(SIGNATURES, "transaction by a wallet that was never enrolled")
    # Execute
    receipts = submit_raw(
        ledger.network,
        [
            ghost.prepare("records", "register", ledger.registration("ghost").body.args).encoded,
            stranger.prepare(
                "consent",
                "grant",
                {"provision": "deny", "grantee": {}, "purposes": [], "valid_from": now, "valid_until": now + DAY_MS},
            ).encoded,
        ],
    )
    # Assert
    assert codes(receipts) == ["UNKNOWN_SIGNER", "UNKNOWN_SIGNER"]


def test_the_body_of_a_transaction_cannot_be_altered_by_the_submitting_node(ledger: Ledger, attacks: AttackLog) -> None:
    """A relaying node (or the orderer) that edits a transaction it carries produces a new id and a
    signature that no longer verifies; the original, if it is also ordered, still applies once."""
    # Prepare
    tx = ledger.registration("relayed")
    edited = TransactionBody(**{**tx.body.to_dict(), "timestamp_ms": tx.body.timestamp_ms + 1})
    attacks.tried(SIGNATURES, "relaying node changes the timestamp of a transaction it carries")
    # Execute
    receipts = submit_raw(ledger.network, [stored(encode(edited.to_dict()), tx.signature), tx.encoded])
    # Assert
    assert codes(receipts) == ["BAD_SIGNATURE", VALID]
