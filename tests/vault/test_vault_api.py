"""The vault's public surface: exports, error tree, layering, locators, validation, the backend factory."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import nacl.public
import pytest

import medledger.vault
from medledger.core.errors import MedledgerError
from medledger.vault import (
    KeyDeliveryError,
    LocatorError,
    MasterKeyError,
    ObjectNotFound,
    SealedDelivery,
    StoredObject,
    Vault,
    VaultBackendError,
    VaultError,
    VaultIntegrityError,
    VaultLocator,
    open_backend,
    parse_locator,
)
from medledger.vault.sqlite_backend import SQLiteVaultBackend

OBJECT_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault(SQLiteVaultBackend(tmp_path / "vault"), "hospital-a", bytes(32))


def test_the_public_api_is_what_it_should_be() -> None:
    # Assert
    assert sorted(medledger.vault.__all__) == [
        "DEFAULT_INLINE_LIMIT",
        "KeyDeliveryError",
        "LocatorError",
        "MasterKeyError",
        "ObjectId",
        "ObjectKind",
        "ObjectNotFound",
        "ScrubReport",
        "SealedDelivery",
        "StoredObject",
        "Vault",
        "VaultBackend",
        "VaultBackendError",
        "VaultError",
        "VaultIntegrityError",
        "VaultLocator",
        "load_or_create_master_key",
        "open_backend",
        "open_delivery",
        "open_sealed_key",
        "parse_locator",
        "scrub",
        "seal_key",
    ]


def test_the_error_tree() -> None:
    # Assert
    assert issubclass(VaultError, MedledgerError)
    for error in (
        ObjectNotFound,
        VaultIntegrityError,
        KeyDeliveryError,
        VaultBackendError,
        MasterKeyError,
        LocatorError,
    ):
        assert error.__bases__ == (VaultError,)


def test_the_vault_imports_neither_ledger_nor_node() -> None:
    # Prepare
    probe = "import sys, medledger.vault; print(sorted(m for m in sys.modules if m.startswith('medledger.')))"
    # Execute
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    # Assert
    assert "medledger.core" in loaded
    assert not [layer for layer in ("ledger", "node", "contracts", "ordering", "sdk") if f"medledger.{layer}" in loaded]


def test_record_rows_and_deliveries_are_frozen_slotted_dataclasses() -> None:
    # Assert
    for cls in (StoredObject, SealedDelivery, VaultLocator):
        assert dataclasses.is_dataclass(cls) and "__slots__" in vars(cls)
        assert vars(cls)["__dataclass_params__"].frozen


def test_a_locator_round_trips() -> None:
    # Prepare
    locator = f"vault://hospital-a/{OBJECT_ID}"
    # Execute
    parsed = parse_locator(locator)
    # Assert
    assert parsed == VaultLocator("hospital-a", OBJECT_ID)
    assert str(parsed) == locator


@pytest.mark.parametrize(
    "locator",
    [
        f"vaults://hospital-a/{OBJECT_ID}",
        f"vault://Hospital-A/{OBJECT_ID}",
        "vault://hospital-a/",
        f"vault://hospital-a/{OBJECT_ID}/extra",
        f"vault://hospital-a/{OBJECT_ID.upper()}",
        f"vault://{OBJECT_ID}",
        "",
    ],
)
def test_a_malformed_locator_is_refused(locator: str) -> None:
    # Execute / Assert
    with pytest.raises(LocatorError, match="locator"):
        parse_locator(locator)


def test_a_locator_of_another_organisation_is_refused(vault: Vault) -> None:
    # Execute / Assert
    with pytest.raises(LocatorError, match="points at the vault of 'hospital-b', this is 'hospital-a'"):
        vault.object_id_for(f"vault://hospital-b/{OBJECT_ID}")


@pytest.mark.parametrize(
    "media_type",
    ["application/fhir+json", "application/fhir+json; fhirVersion=4.0", "application/dicom", "text/plain"],
)
def test_valid_media_types_are_accepted(vault: Vault, media_type: str) -> None:
    # Execute / Assert
    assert vault.put(b"x", media_type, 0).media_type == media_type


@pytest.mark.parametrize("media_type", ["", "json", "/json", "text/", "text/plain\n", "a/" + "b" * 300])
def test_invalid_media_types_are_refused(vault: Vault, media_type: str) -> None:
    # Execute / Assert
    with pytest.raises(VaultError, match="is not a MIME type"):
        vault.put(b"x", media_type, 0)


def test_invalid_put_arguments_are_refused(vault: Vault) -> None:
    # Execute / Assert
    with pytest.raises(VaultError, match="neither 'record' nor 'blob'"):
        vault.put(b"x", "text/plain", 0, kind="photo")
    with pytest.raises(VaultError, match="now_ms must be a non-negative integer"):
        vault.put(b"x", "text/plain", -1)


def test_a_vault_needs_a_valid_org_and_master_key(tmp_path: Path) -> None:
    # Prepare
    backend = SQLiteVaultBackend(tmp_path / "vault")
    # Execute / Assert
    with pytest.raises(VaultError, match="organisation id 'Org A' is not valid"):
        Vault(backend, "Org A", bytes(32))
    with pytest.raises(VaultError, match="a vault master key is 32 bytes"):
        Vault(backend, "org-a", bytes(16))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sealed_key": "text"}, "field 'sealed_key' is a str, expected bytes"),
        ({"object_id": b"id"}, "field 'object_id' is a bytes, expected str"),
        ({"signature": b""}, r"unknown fields \['signature'\]"),
    ],
)
def test_a_malformed_delivery_is_named(vault: Vault, change: dict[str, object], message: str) -> None:
    # Prepare
    stored = vault.put(b"record", "text/plain", 0)
    recipient = bytes(nacl.public.PrivateKey.generate().public_key)
    fields = vault.deliver(stored.object_id, recipient).to_dict()
    # Execute / Assert
    with pytest.raises(KeyDeliveryError, match=message):
        SealedDelivery.from_dict(fields | change)
    with pytest.raises(KeyDeliveryError, match=r"missing fields \['nonce'\]"):
        SealedDelivery.from_dict({k: v for k, v in fields.items() if k != "nonce"})


def test_open_backend_opens_a_sqlite_directory(tmp_path: Path) -> None:
    # Execute
    with open_backend(f"sqlite://{tmp_path / 'vault'}", inline_limit=1024) as backend:
        # Assert
        assert isinstance(backend, SQLiteVaultBackend)
        assert backend.inline_limit == 1024
        assert backend.description == f"sqlite://{tmp_path / 'vault'}"
    assert (tmp_path / "vault" / "vault.sqlite").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://host/db", "unknown vault URL scheme 'mysql'"),
        ("sqlite://", "names no directory"),
        ("/var/vault", "unknown vault URL scheme"),
    ],
)
def test_open_backend_refuses_unknown_urls(url: str, message: str) -> None:
    # Execute / Assert
    with pytest.raises(VaultBackendError, match=message):
        open_backend(url)


def test_a_closed_backend_refuses_work(tmp_path: Path) -> None:
    # Prepare
    backend = SQLiteVaultBackend(tmp_path / "vault")
    backend.close()
    # Execute / Assert
    with pytest.raises(VaultBackendError, match="is closed"):
        backend.list_ids()


def test_a_file_that_is_not_a_vault_database_is_refused_with_its_name(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "vault").mkdir()
    (tmp_path / "vault" / "vault.sqlite").write_bytes(b"not a database" * 100)
    # Execute / Assert
    with pytest.raises(VaultBackendError, match=r"cannot open vault sqlite://.*vault"):
        SQLiteVaultBackend(tmp_path / "vault")
