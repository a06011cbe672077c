"""Tests of domain-bound Ed25519 signatures: a signature verifies only for its own domain,
payload and key, malformed keys and signatures are refused quietly, and errors name the domain.
The signed payload of a REST request is pinned byte for byte, and binds every one of its fields."""

from __future__ import annotations

import itertools

import pytest

from medledger.core.errors import SignatureError
from medledger.core.signing import (
    API_NONCE_SIZE,
    PUBLIC_KEY_SIZE,
    SEED_SIZE,
    SIGNATURE_SIZE,
    Domain,
    SigningKey,
    api_request_payload,
    signature_is_valid,
    signing_message,
    verify_signature,
)

PAYLOAD = b"a canonical body to be signed"
KEY = SigningKey(bytes(range(SEED_SIZE)))
OTHER_KEY = SigningKey(bytes(range(1, SEED_SIZE + 1)))

DOMAIN_PAIRS = list(itertools.permutations(Domain, 2))


def flip_byte(data: bytes, index: int) -> bytes:
    """`data` with the byte at `index` changed (its lowest bit flipped)."""
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize("domain", list(Domain), ids=lambda d: d.name)
def test_signature_verifies_in_its_own_domain(domain: Domain) -> None:
    # Prepare
    signature = KEY.sign(domain, PAYLOAD)
    # Execute
    valid = signature_is_valid(domain, KEY.public_key, PAYLOAD, signature)
    # Assert
    assert valid
    assert len(signature) == SIGNATURE_SIZE
    verify_signature(domain, KEY.public_key, PAYLOAD, signature)


@pytest.mark.parametrize(
    ("signed_for", "checked_for"), DOMAIN_PAIRS, ids=[f"{a.name}->{b.name}" for a, b in DOMAIN_PAIRS]
)
def test_signature_for_one_domain_fails_in_every_other(signed_for: Domain, checked_for: Domain) -> None:
    # Prepare
    signature = KEY.sign(signed_for, PAYLOAD)
    # Execute
    valid = signature_is_valid(checked_for, KEY.public_key, PAYLOAD, signature)
    # Assert
    assert not valid


def test_every_domain_has_a_distinct_signing_message() -> None:
    # Prepare
    domains = list(Domain)
    # Execute
    messages = {signing_message(domain, PAYLOAD) for domain in domains}
    # Assert
    assert len(messages) == len(domains)


@pytest.mark.parametrize("index", [0, len(PAYLOAD) // 2, len(PAYLOAD) - 1])
def test_changed_payload_byte_fails(index: int) -> None:
    # Prepare
    signature = KEY.sign(Domain.TRANSACTION, PAYLOAD)
    # Execute
    valid = signature_is_valid(Domain.TRANSACTION, KEY.public_key, flip_byte(PAYLOAD, index), signature)
    # Assert
    assert not valid


@pytest.mark.parametrize("index", [0, 31, 32, SIGNATURE_SIZE - 1])
def test_changed_signature_byte_fails(index: int) -> None:
    # Prepare
    signature = KEY.sign(Domain.TRANSACTION, PAYLOAD)
    # Execute
    valid = signature_is_valid(Domain.TRANSACTION, KEY.public_key, PAYLOAD, flip_byte(signature, index))
    # Assert
    assert not valid


def test_signature_fails_under_another_key() -> None:
    # Prepare
    signature = KEY.sign(Domain.TRANSACTION, PAYLOAD)
    # Execute
    valid = signature_is_valid(Domain.TRANSACTION, OTHER_KEY.public_key, PAYLOAD, signature)
    # Assert
    assert KEY.public_key != OTHER_KEY.public_key
    assert not valid


@pytest.mark.parametrize("length", [0, 1, PUBLIC_KEY_SIZE - 1, PUBLIC_KEY_SIZE + 1, 64])
def test_wrong_length_public_key_returns_false(length: int) -> None:
    # Prepare
    signature = KEY.sign(Domain.TRANSACTION, PAYLOAD)
    public_key = (KEY.public_key * 3)[:length]
    # Execute
    valid = signature_is_valid(Domain.TRANSACTION, public_key, PAYLOAD, signature)
    # Assert
    assert not valid


@pytest.mark.parametrize("length", [0, 1, SIGNATURE_SIZE - 1, SIGNATURE_SIZE + 1, 128])
def test_wrong_length_signature_returns_false(length: int) -> None:
    # Prepare
    signature = (KEY.sign(Domain.TRANSACTION, PAYLOAD) * 3)[:length]
    # Execute
    valid = signature_is_valid(Domain.TRANSACTION, KEY.public_key, PAYLOAD, signature)
    # Assert
    assert not valid


def test_public_key_that_is_not_a_curve_point_returns_false() -> None:
    # Prepare: 32 bytes of 0xff do not decode as an Ed25519 point
    signature = KEY.sign(Domain.TRANSACTION, PAYLOAD)
    # Execute
    valid = signature_is_valid(Domain.TRANSACTION, b"\xff" * PUBLIC_KEY_SIZE, PAYLOAD, signature)
    # Assert
    assert not valid


@pytest.mark.parametrize("length", [0, 16, SEED_SIZE - 1, SEED_SIZE + 1, 64])
def test_signing_key_rejects_wrong_seed_length(length: int) -> None:
    # Prepare
    seed = bytes(length)
    # Execute / Assert
    with pytest.raises(SignatureError, match=rf"{SEED_SIZE} bytes, got {length}"):
        SigningKey(seed)


def test_signing_is_deterministic_for_a_fixed_seed() -> None:
    # Prepare
    same_key = SigningKey(bytes(range(SEED_SIZE)))
    # Execute
    first, second = KEY.sign(Domain.TRANSACTION, PAYLOAD), same_key.sign(Domain.TRANSACTION, PAYLOAD)
    # Assert
    assert first == second
    assert KEY.public_key == same_key.public_key


def test_seed_is_not_shown_in_repr() -> None:
    # Prepare
    seed_hex = KEY.seed.hex()
    # Execute
    shown = repr(KEY)
    # Assert
    assert seed_hex not in shown
    assert "seed" not in shown


@pytest.mark.parametrize("domain", list(Domain), ids=lambda d: d.name)
def test_verify_signature_raises_naming_the_domain(domain: Domain) -> None:
    # Prepare
    signature = OTHER_KEY.sign(domain, PAYLOAD)
    # Execute / Assert
    with pytest.raises(SignatureError, match=domain.value):
        verify_signature(domain, KEY.public_key, PAYLOAD, signature)


def test_verify_signature_raises_for_a_signature_of_another_domain() -> None:
    # Prepare
    signature = KEY.sign(Domain.BLOCK_ATTESTATION, PAYLOAD)
    # Execute / Assert
    with pytest.raises(SignatureError, match=Domain.TRANSACTION.value):
        verify_signature(Domain.TRANSACTION, KEY.public_key, PAYLOAD, signature)


# the signed payload of a REST request --------------------------------------------------------------

REQUEST = {
    "node": "st-mary",
    "method": "get",
    "path": "/v1/status",
    "body": b"",
    "timestamp_ms": 1_767_225_600_000,
    "nonce": bytes(range(API_NONCE_SIZE)),
}


def test_the_api_request_payload_is_pinned_byte_for_byte() -> None:
    # Prepare: canonical CBOR of [node, METHOD, path, sha256(body), timestamp, nonce], spelled out
    expected = (
        "86"  # array of 6
        + "67" + b"st-mary".hex()  # text(7)
        + "63" + b"GET".hex()  # text(3): the method upper-cased
        + "6a" + b"/v1/status".hex()  # text(10)
        + "5820" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # bytes(32): SHA-256("")
        + "1b" + (1_767_225_600_000).to_bytes(8, "big").hex()  # uint64
        + "50" + bytes(range(16)).hex()  # bytes(16)
    )  # fmt: skip
    # Execute
    payload = api_request_payload(**REQUEST)  # type: ignore[arg-type]
    # Assert
    assert payload.hex() == expected
    assert Domain.API_REQUEST.value == "medledger/api-request/v2"


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("node", "city-general"),
        ("method", "POST"),
        ("path", "/v1/status?x=1"),
        ("body", b"{}"),
        ("timestamp_ms", 1_767_225_600_001),
        ("nonce", bytes(API_NONCE_SIZE)),
    ],
)
def test_a_request_signature_does_not_verify_once_any_field_changes(field: str, other: object) -> None:
    # Prepare
    signature = KEY.sign(Domain.API_REQUEST, api_request_payload(**REQUEST))  # type: ignore[arg-type]
    changed = api_request_payload(**{**REQUEST, field: other})  # type: ignore[arg-type]
    # Execute
    valid = signature_is_valid(Domain.API_REQUEST, KEY.public_key, changed, signature)
    # Assert
    assert not valid
