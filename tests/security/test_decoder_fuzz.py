"""Malformed input against every decoder that takes bytes from outside: transactions, block headers
and bodies, receipts, attestations, proofs, delivery requests and deliveries, certificates, locators,
and the FHIR, HL7 v2 and DICOM adapters. Hypothesis feeds random bytes, random canonical CBOR, maps
with the right field names and random values, and byte-level mutations of genuine objects.

Whatever the input, a decoder either returns a value or raises the named error of its layer (an
EncodingError, a MedledgerError subclass, a StandardsError): never another exception. Where a
decoder accepts input, the value must encode back to the same bytes. The deterministic tests at the
end check that mistyped fields (a boolean block number, a text signature, non-bytes proof leaves) are
refused with an EncodingError rather than decoded into objects that crash later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from medledger.core.encoding import MAX_INT, MIN_INT, decode, encode
from medledger.core.errors import CertificateError, EncodingError, MedledgerError
from medledger.core.hashing import sha256
from medledger.core.identity import OrgCA, OrgKind, Role, parse_ca_certificate, parse_member_certificate
from medledger.core.merkle import inclusion_proof, merkle_root
from medledger.core.signing import SigningKey, x25519_public_key
from medledger.demo.samples import lab_bundle, oru_message
from medledger.ledger.attestations import BlockAttestation, attest
from medledger.ledger.blocks import BlockHeader, decode_body
from medledger.ledger.proofs import TransactionProof, verify_transaction_proof
from medledger.ledger.receipts import Event, Receipt
from medledger.ledger.transactions import TransactionBody, decode_transaction, new_nonce, sign_transaction
from medledger.sdk.records import SignedDeliveryRequest, sign_delivery_request
from medledger.standards import StandardsError, ingest_dicom, ingest_hl7, parse_bundle, parse_resource
from medledger.vault import SealedDelivery, VaultError, open_delivery, parse_locator
from medledger.vault.crypto import encrypt_record, new_data_key, seal_key
from tests.conftest import START_MS
from tests.security.attacks import AttackClass, AttackLog
from tests.security.world import TODAY

FUZZ = AttackClass.FUZZ
EXAMPLES = 150
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

# genuine objects to mutate ----------------------------------------------------------------------

KEY = SigningKey.generate()
TX = sign_transaction(
    TransactionBody(
        "medledger",
        "records",
        "register",
        {"patient": "a" * 32, "content_hash": bytes(32), "locator": "vault://st-mary/" + "0" * 32},
        "member:" + "b" * 64,
        new_nonce(),
        START_MS,
    ),
    KEY,
)
RECEIPT = Receipt(TX.tx_id, "VALID", "", (Event("records", "RecordRegistered", {"record_id": "c" * 32}),), 3, 4)
LEAVES = [TX.encoded, b"second", b"third"]
RECEIPT_LEAVES = [RECEIPT.encode(), b"r2", b"r3"]
HEADER = BlockHeader(
    7,
    bytes(32),
    START_MS,
    len(LEAVES),
    merkle_root(LEAVES),
    merkle_root(RECEIPT_LEAVES),
    bytes(32),
    {"orderer": "solo", "batch_hash": bytes(32)},
)
ATTESTATION = attest(7, bytes(32), bytes(range(32)), "st-mary", "d" * 64, KEY)
PROOF = TransactionProof(
    HEADER.encode(), TX.encoded, inclusion_proof(LEAVES, 0), RECEIPT.encode(), inclusion_proof(RECEIPT_LEAVES, 0)
)
DELIVERY_REQUEST = sign_delivery_request("e" * 32, "f" * 32, "a" * 64, KEY, START_MS)
_PLAINTEXT = b'{"resourceType":"Observation"}'
_DATA_KEY = new_data_key()
_NONCE, _CIPHERTEXT = encrypt_record(_PLAINTEXT, _DATA_KEY, org_id="st-mary", media_type="application/fhir+json")
_RECIPIENT = KEY.x25519_private_key()
DELIVERY = SealedDelivery(
    "0" * 32,
    "application/fhir+json",
    _CIPHERTEXT,
    _NONCE,
    seal_key(_DATA_KEY, x25519_public_key(KEY.public_key)),
    sha256(_PLAINTEXT),
    sha256(_CIPHERTEXT),
    "st-mary",
)
_CA = OrgCA.create("st-mary", OrgKind.HOSPITAL, START_MS)
MEMBER_DER = _CA.issue("dr-osei", Role.CLINICIAN, KEY.public_key, START_MS)
BUNDLE, _, _ = lab_bundle(TODAY)
ORU = oru_message(TODAY)
DICOM = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()

# strategies -------------------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers(MIN_INT, MAX_INT) | st.text(max_size=20) | st.binary(max_size=40)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def mutations(original: bytes) -> st.SearchStrategy[bytes]:
    """A genuine byte string with bytes flipped, cut, inserted or dropped."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(original)
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "drop"]))
            position = draw(st.integers(0, max(0, len(data) - 1)))
            if kind == "flip" and data:
                data[position] ^= 1 << draw(st.integers(0, 7))
            elif kind == "set" and data:
                data[position] = draw(st.integers(0, 255))
            elif kind == "cut":
                del data[position:]
            elif kind == "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=8))
            elif kind == "drop" and data:
                del data[position]
        return bytes(data)

    return mutate()


def shaped(fields: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Maps with the decoder's field names (some dropped or added), each value random or genuine."""

    @st.composite
    def shape(draw: st.DrawFn) -> bytes:
        value: dict[str, Any] = {}
        for name, genuine in fields.items():
            if draw(st.integers(0, 9)) == 0:
                continue
            value[name] = genuine if draw(st.booleans()) else draw(VALUES)
        if draw(st.integers(0, 9)) == 0:
            value[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
        return encode(value)

    return shape()


def inputs(genuine: bytes, fields: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        VALUES.map(encode),
        shaped(fields),
        mutations(genuine),
    )


def run_fuzz(
    attacks: AttackLog,
    what: str,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], None],
    examples: int = EXAMPLES,
) -> None:
    """Feed `examples` inputs to `check`; log how many were tried."""
    tried = 0

    @settings(SETTINGS, max_examples=examples)
    @given(strategy)
    def fuzz(value: Any) -> None:
        nonlocal tried
        tried += 1
        check(value)

    fuzz()
    attacks.tried(FUZZ, what, times=tried)


def refuses_with(errors: tuple[type[BaseException], ...], decoder: Callable[[Any], Any], raw: Any) -> Any | None:
    """`decoder(raw)`, or None when it raised one of `errors`; any other exception propagates."""
    try:
        return decoder(raw)
    except errors:
        return None


# ledger objects ---------------------------------------------------------------------------------


def test_core_decode_raises_only_encoding_errors(attacks: AttackLog) -> None:
    # Prepare
    def check(raw: bytes) -> None:
        value = refuses_with((EncodingError,), decode, raw)
        if value is not None or raw == encode(None):
            assert encode(value) == raw

    # Execute / Assert: each generated input is decoded and checked at once
    run_fuzz(attacks, "canonical CBOR decoder", st.one_of(st.binary(max_size=200), mutations(TX.encoded)), check)


def test_transactions_decode_strictly(attacks: AttackLog) -> None:
    # Prepare
    def check(raw: bytes) -> None:
        tx = refuses_with((EncodingError,), decode_transaction, raw)
        if tx is not None:
            assert tx.encoded == raw
            assert encode(tx.body.to_dict()) == tx.body_bytes
            assert len(tx.body.nonce) == 16 and isinstance(tx.body.timestamp_ms, int)

    body_fields = TX.body.to_dict()

    @st.composite
    def shaped_bodies(draw: st.DrawFn) -> bytes:
        body = draw(shaped(body_fields))
        return encode({"body": body, "signature": draw(st.binary(min_size=60, max_size=68))})

    # Execute / Assert: each generated input is decoded and checked at once
    run_fuzz(
        attacks,
        "transaction decoder",
        st.one_of(inputs(TX.encoded, {"body": TX.body_bytes, "signature": TX.signature}), shaped_bodies()),
        check,
        examples=300,
    )


def test_block_headers_and_bodies_raise_only_encoding_errors(attacks: AttackLog) -> None:
    # Prepare
    def check(raw: bytes) -> None:
        refuses_with((EncodingError,), BlockHeader.decode, raw)
        body = refuses_with((EncodingError,), decode_body, raw)
        if body is not None:
            assert encode(list(body)) == raw

    # Execute / Assert: each generated input is decoded and checked at once
    run_fuzz(attacks, "block header and body decoders", inputs(HEADER.encode(), HEADER.to_dict()), check)


def test_receipts_and_attestations_raise_only_encoding_errors(attacks: AttackLog) -> None:
    # Prepare
    def check(raw: bytes) -> None:
        refuses_with((EncodingError,), Receipt.decode, raw)
        refuses_with((EncodingError,), BlockAttestation.decode, raw)

    strategy = st.one_of(
        inputs(RECEIPT.encode(), RECEIPT.to_dict()), inputs(ATTESTATION.encode(), ATTESTATION.to_dict())
    )
    # Execute / Assert: each generated input is decoded and checked at once
    run_fuzz(attacks, "receipt and attestation decoders", strategy, check, examples=300)


def test_proofs_raise_only_named_errors_and_verify_only_when_genuine(attacks: AttackLog) -> None:
    # Prepare
    genuine = PROOF.encode()

    assert verify_transaction_proof(PROOF).tx_id == TX.tx_id

    def check(raw: bytes) -> None:
        proof = refuses_with((MedledgerError,), TransactionProof.decode, raw)
        if proof is None:
            return
        proven = refuses_with((MedledgerError,), verify_transaction_proof, proof)
        if proven is not None:  # a changed header may still verify, but never for another transaction
            assert (proven.tx_id, proven.receipt.encode()) == (TX.tx_id, RECEIPT.encode()), "a forged proof verified"

    # Execute / Assert: each generated input is decoded and checked at once
    run_fuzz(attacks, "transaction proof decoder and verifier", inputs(genuine, PROOF.to_dict()), check, examples=300)


def test_delivery_requests_and_deliveries_raise_only_named_errors(attacks: AttackLog) -> None:
    # Prepare
    request = DELIVERY_REQUEST.encode()
    delivery = DELIVERY.to_dict()

    def check_request(raw: bytes) -> None:
        decoded = refuses_with((EncodingError,), SignedDeliveryRequest.decode, raw)
        if decoded is not None:
            assert isinstance(decoded.signature, bytes) and isinstance(decoded.request.nonce, bytes)

    def check_delivery(raw: bytes) -> None:
        value = refuses_with((EncodingError,), decode, raw)
        parsed = refuses_with((VaultError,), SealedDelivery.from_dict, value)
        if parsed is not None:
            refuses_with((VaultError,), lambda d: open_delivery(d, _RECIPIENT), parsed)

    # Execute / Assert: each generated input is decoded and checked at once
    run_fuzz(
        attacks, "vault delivery request decoder", inputs(request, {"request": b"", "signature": b""}), check_request
    )
    run_fuzz(attacks, "sealed delivery decoder and opener", inputs(encode(delivery), delivery), check_delivery)


def test_certificates_and_locators_raise_only_named_errors(attacks: AttackLog) -> None:
    # Prepare
    def check_certificate(raw: bytes) -> None:
        refuses_with((CertificateError,), parse_member_certificate, raw)
        refuses_with((CertificateError,), parse_ca_certificate, raw)

    def check_locator(text: str) -> None:
        refuses_with((VaultError,), parse_locator, text)

    # Execute / Assert: each generated input is decoded and checked at once
    run_fuzz(
        attacks,
        "X.509 certificate parser",
        st.one_of(st.binary(max_size=300), mutations(MEMBER_DER)),
        check_certificate,
    )
    locators = st.one_of(
        st.text(max_size=80), st.from_regex(r"vault://[a-z0-9-]{0,70}/[0-9a-fA-F/]{0,40}", fullmatch=True)
    )
    run_fuzz(attacks, "vault locator parser", locators, check_locator)


# clinical standards -----------------------------------------------------------------------------


def test_fhir_resources_and_bundles_raise_only_standards_errors(attacks: AttackLog) -> None:
    # Prepare
    deep = b'{"resourceType":"Observation","extension":' + b"[" * 5000 + b"]" * 5000 + b"}"

    def check(raw: bytes) -> None:
        refuses_with((StandardsError,), parse_resource, raw)
        refuses_with((StandardsError,), parse_bundle, raw)

    strategy = st.one_of(mutations(BUNDLE), st.binary(max_size=200), st.just(deep), st.just(b"\xef\xbb\xbf" + BUNDLE))
    # Execute / Assert: each generated input is decoded and checked at once
    run_fuzz(attacks, "FHIR resource and Bundle parsers", strategy, check, examples=120)


def test_hl7_messages_raise_only_standards_errors(attacks: AttackLog) -> None:
    # Prepare
    def check(raw: bytes) -> None:
        refuses_with((StandardsError,), ingest_hl7, raw)

    strategy = st.one_of(mutations(ORU), st.binary(max_size=200), st.just(ORU * 50), st.just(ORU.replace(b"\r", b"\n")))
    # Execute / Assert: each generated input is decoded and checked at once
    run_fuzz(attacks, "HL7 v2 parser", strategy, check, examples=120)


def test_dicom_headers_raise_only_standards_errors(attacks: AttackLog) -> None:
    # Prepare
    header_end = 2000

    @st.composite
    def header_mutations(draw: st.DrawFn) -> bytes:
        data = bytearray(DICOM)
        for _ in range(draw(st.integers(1, 3))):
            data[draw(st.integers(0, header_end))] = draw(st.integers(0, 255))
        cut = draw(st.one_of(st.none(), st.integers(132, len(DICOM))))
        return bytes(data if cut is None else data[:cut])

    def check(raw: bytes) -> None:
        refuses_with((StandardsError,), ingest_dicom, raw)

    # Execute / Assert: each generated input is decoded and checked at once
    run_fuzz(
        attacks, "DICOM header parser", st.one_of(header_mutations(), st.binary(max_size=300)), check, examples=120
    )


# mistyped fields --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mistyped:
    """Canonical CBOR with the decoder's field names, one of them holding a value of the wrong type."""

    decoder: str
    raw: bytes

    def decode(self) -> Any:
        return {"receipt": Receipt.decode, "attestation": BlockAttestation.decode, "header": BlockHeader.decode}[
            self.decoder
        ](self.raw)


MISTYPED = {
    "receipt with an integer tx_id and text counters": Mistyped(
        "receipt", encode({**RECEIPT.to_dict(), "tx_id": 5, "reads": "many"})
    ),
    "receipt event whose attributes are a list": Mistyped(
        "receipt", encode({**RECEIPT.to_dict(), "events": [{"contract": "a", "name": "B", "attributes": [1]}]})
    ),
    "attestation with a text signature": Mistyped(
        "attestation", encode({**ATTESTATION.to_dict(), "signature": "s" * 64})
    ),
    "attestation with a text block number": Mistyped(
        "attestation", encode({**ATTESTATION.to_dict(), "block_number": "7"})
    ),
    "header whose orderer metadata is an integer": Mistyped("header", encode({**HEADER.to_dict(), "orderer": 7})),
    "header whose number is a boolean": Mistyped("header", encode({**HEADER.to_dict(), "number": True})),
}


@pytest.mark.parametrize("case", list(MISTYPED), ids=list(MISTYPED))
def test_ledger_decoders_refuse_mistyped_fields(case: str, attacks: AttackLog) -> None:
    # Prepare
    mistyped = MISTYPED[case]
    attacks.tried(FUZZ, f"{mistyped.decoder} decoder: {case}")
    # Execute
    try:
        accepted = mistyped.decode()
    except EncodingError:
        accepted = None
    # Assert
    assert accepted is None, f"decoded into {accepted!r}"


@pytest.mark.parametrize("leaf", ["tx", "receipt"])
def test_a_proof_whose_leaves_are_not_bytes_is_refused_with_a_named_error(leaf: str, attacks: AttackLog) -> None:
    # Prepare
    raw = encode({**PROOF.to_dict(), leaf: None})
    attacks.tried(FUZZ, f"transaction proof whose '{leaf}' is not bytes")
    # Execute
    with pytest.raises(EncodingError) as refused:
        verify_transaction_proof(TransactionProof.decode(raw))
    # Assert
    assert "must be bytes" in str(refused.value)
