"""The vault's cryptographic building blocks, without any storage."""

from __future__ import annotations

import nacl.public
import pytest

from medledger.vault.crypto import (
    DATA_KEY_SIZE,
    SEALED_KEY_SIZE,
    TAG_SIZE,
    WRAPPED_KEY_SIZE,
    decrypt_record,
    encrypt_record,
    key_wrap_aad,
    new_data_key,
    open_sealed_key,
    record_aad,
    seal_key,
    unwrap_data_key,
    wrap_data_key,
)
from medledger.vault.errors import KeyDeliveryError, VaultIntegrityError

OBJECT_ID = "00112233445566778899aabbccddeeff"


def key_pair() -> tuple[bytes, bytes]:
    private = nacl.public.PrivateKey.generate()
    return bytes(private), bytes(private.public_key)


def test_a_record_decrypts_only_with_its_key_org_and_media_type() -> None:
    # Prepare
    data_key = new_data_key()
    nonce, ciphertext = encrypt_record(b"record", data_key, org_id="org-a", media_type="text/plain")
    # Execute
    plaintext = decrypt_record(
        ciphertext, nonce, data_key, org_id="org-a", media_type="text/plain", object_id=OBJECT_ID
    )
    # Assert
    assert plaintext == b"record" and len(ciphertext) == len(b"record") + TAG_SIZE
    for key, org, media_type in [
        (new_data_key(), "org-a", "text/plain"),
        (data_key, "org-b", "text/plain"),
        (data_key, "org-a", "text/html"),
    ]:
        with pytest.raises(VaultIntegrityError, match=f"^object {OBJECT_ID}: ciphertext does not authenticate"):
            decrypt_record(ciphertext, nonce, key, org_id=org, media_type=media_type, object_id=OBJECT_ID)


def test_a_wrapped_key_unwraps_only_for_its_object_and_master_key() -> None:
    # Prepare
    master_key, data_key = new_data_key(), new_data_key()
    # Execute
    wrapped = wrap_data_key(data_key, master_key, OBJECT_ID)
    # Assert
    assert len(wrapped) == WRAPPED_KEY_SIZE and data_key not in wrapped
    assert unwrap_data_key(wrapped, master_key, OBJECT_ID) == data_key
    with pytest.raises(VaultIntegrityError, match="data key cannot be unwrapped"):
        unwrap_data_key(wrapped, new_data_key(), OBJECT_ID)
    with pytest.raises(VaultIntegrityError, match="data key cannot be unwrapped"):
        unwrap_data_key(wrapped, master_key, "ffeeddccbbaa99887766554433221100")
    with pytest.raises(VaultIntegrityError, match=f"wrapped data key is 71 bytes, expected {WRAPPED_KEY_SIZE}"):
        unwrap_data_key(wrapped[:-1], master_key, OBJECT_ID)


def test_record_and_key_wrap_associated_data_are_domain_separated() -> None:
    # Assert: even equal strings give different associated data in the two roles
    assert record_aad(OBJECT_ID, "") != key_wrap_aad(OBJECT_ID)
    assert record_aad("org-a", "text/plain") != record_aad("org-atext", "/plain")


def test_a_sealed_key_opens_for_its_recipient_only() -> None:
    # Prepare
    data_key = new_data_key()
    (alice_private, alice_public), (bob_private, _) = key_pair(), key_pair()
    # Execute
    sealed = seal_key(data_key, alice_public)
    # Assert
    assert len(sealed) == SEALED_KEY_SIZE and len(data_key) == DATA_KEY_SIZE
    assert open_sealed_key(sealed, alice_private) == data_key
    with pytest.raises(KeyDeliveryError, match=r"^this delivery is sealed to another recipient"):
        open_sealed_key(sealed, bob_private)
    with pytest.raises(KeyDeliveryError, match="sealed to another recipient"):
        open_sealed_key(sealed[:-1] + bytes([sealed[-1] ^ 1]), alice_private)


@pytest.mark.parametrize(
    ("sealed_size", "private_size", "message"),
    [
        (SEALED_KEY_SIZE, 31, "an X25519 private key is 32 bytes, got 31"),
        (SEALED_KEY_SIZE - 1, 32, f"a sealed data key is {SEALED_KEY_SIZE} bytes, got {SEALED_KEY_SIZE - 1}"),
    ],
)
def test_malformed_delivery_keys_are_named(sealed_size: int, private_size: int, message: str) -> None:
    # Execute / Assert
    with pytest.raises(KeyDeliveryError, match=message):
        open_sealed_key(bytes(sealed_size), bytes(private_size))


def test_sealing_to_a_malformed_public_key_is_refused() -> None:
    # Execute / Assert
    with pytest.raises(KeyDeliveryError, match="an X25519 public key is 32 bytes, got 33"):
        seal_key(new_data_key(), bytes(33))
    with pytest.raises(KeyDeliveryError, match="not a usable X25519 public key"):
        seal_key(new_data_key(), bytes(32))  # a low-order point: libsodium refuses it
