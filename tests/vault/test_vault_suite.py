"""One abstract test suite for a Vault over a VaultBackend, run against every backend.

Each backend's subclass opens storage for the test and implements a few hooks that reach into
that storage directly (a SQL row, a blob file or a bytea row), which is how the tamper tests
change stored bytes behind the vault's back.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nacl.public
import psycopg
import pytest
from psycopg import sql

from medledger.core.encoding import decode, encode
from medledger.core.hashing import sha256
from medledger.vault import (
    KeyDeliveryError,
    ObjectKind,
    ObjectNotFound,
    SealedDelivery,
    StoredObject,
    Vault,
    VaultBackend,
    VaultBackendError,
    VaultIntegrityError,
    open_backend,
    open_delivery,
    scrub,
)
from medledger.vault.crypto import TAG_SIZE
from medledger.vault.postgres_backend import PostgresVaultBackend
from medledger.vault.sqlite_backend import SQLiteVaultBackend

ORG = "hospital-a"
MASTER_KEY = bytes(range(32))
OTHER_MASTER_KEY = bytes(range(1, 33))
NOW_MS = 1_767_225_600_000
FHIR = "application/fhir+json"
DICOM = "application/dicom"
ONE_MIB = 1024 * 1024
BackendOpener = Callable[[], VaultBackend]


def random_bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def flip_one_byte(data: bytes, position: int | None = None) -> bytes:
    index = len(data) // 2 if position is None else position
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


class Recipient:
    """A requester's X25519 key pair."""

    def __init__(self) -> None:
        key = nacl.public.PrivateKey.generate()
        self.private = bytes(key)
        self.public = bytes(key.public_key)


class VaultSuite(ABC):
    """Behaviour every VaultBackend must give a Vault."""

    # ---- what each backend provides -------------------------------------------------------

    @abstractmethod
    @pytest.fixture
    def open_backend(self) -> Iterator[BackendOpener]:
        """A function opening a backend on this test's own storage (again, for reopen tests)."""

    @abstractmethod
    def set_stored_column(self, backend: VaultBackend, object_id: str, column: str, value: Any) -> None:
        """Change one column of an object's row directly in storage."""

    @abstractmethod
    def read_stored_column(self, backend: VaultBackend, object_id: str, column: str) -> Any:
        """Read one column of an object's row directly from storage."""

    @abstractmethod
    def stored_blob(self, backend: VaultBackend, ciphertext_hash: bytes) -> bytes | None:
        """The out-of-row bytes stored under `ciphertext_hash`, or None."""

    @abstractmethod
    def write_stored_blob(self, backend: VaultBackend, ciphertext_hash: bytes, data: bytes) -> None:
        """Put `data` where out-of-row bytes for `ciphertext_hash` are stored, replacing any."""

    @abstractmethod
    def remove_stored_blob(self, backend: VaultBackend, ciphertext_hash: bytes) -> None:
        """Delete the out-of-row bytes stored under `ciphertext_hash`."""

    # ---- shared fixtures and helpers ------------------------------------------------------

    @pytest.fixture
    def backend(self, open_backend: BackendOpener) -> VaultBackend:
        return open_backend()

    @pytest.fixture
    def vault(self, backend: VaultBackend) -> Vault:
        return Vault(backend, ORG, MASTER_KEY)

    def is_stored_outside_row(self, backend: VaultBackend, stored: StoredObject) -> bool:
        in_row = self.read_stored_column(backend, stored.object_id, "ciphertext")
        in_blob = self.stored_blob(backend, stored.ciphertext_hash)
        assert (in_row is None) != (in_blob is None), "a ciphertext must be in its row or out of it, not both"
        return in_row is None

    def replace_stored_ciphertext(
        self, backend: VaultBackend, stored: StoredObject, ciphertext: bytes, *, rewrite_hash: bool = False
    ) -> None:
        """Replace an object's ciphertext in storage; with `rewrite_hash`, also its recorded hash (and blob address)."""
        new_hash = sha256(ciphertext)
        if self.is_stored_outside_row(backend, stored):
            self.write_stored_blob(backend, new_hash if rewrite_hash else stored.ciphertext_hash, ciphertext)
        else:
            self.set_stored_column(backend, stored.object_id, "ciphertext", ciphertext)
        if rewrite_hash:
            self.set_stored_column(backend, stored.object_id, "ciphertext_hash", new_hash)

    # ---- round trips ----------------------------------------------------------------------

    def test_small_record_round_trip(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        plaintext = b'{"resourceType":"Observation","status":"final","valueQuantity":{"value":7.2}}'
        # Execute
        stored = vault.put(plaintext, FHIR, NOW_MS)
        # Assert
        assert vault.get(stored.object_id) == stored
        assert vault.decrypt(stored.object_id) == plaintext
        assert len(stored.object_id) == 32 and int(stored.object_id, 16) >= 0
        assert (stored.media_type, stored.size, stored.created_ms) == (FHIR, len(plaintext), NOW_MS)
        assert stored.kind == "record"
        assert stored.content_hash == sha256(plaintext)
        assert stored.ciphertext_hash == sha256(vault.read_ciphertext(stored.object_id))
        assert len(vault.read_ciphertext(stored.object_id)) == len(plaintext) + TAG_SIZE
        assert plaintext not in vault.read_ciphertext(stored.object_id)
        assert not self.is_stored_outside_row(backend, stored)
        assert vault.locator_for(stored.object_id) == f"vault://{ORG}/{stored.object_id}"
        assert vault.object_id_for(vault.locator_for(stored.object_id)) == stored.object_id

    def test_large_blob_round_trip_is_stored_outside_the_row(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        plaintext = random_bytes(ONE_MIB + 1)
        # Execute
        stored = vault.put(plaintext, DICOM, NOW_MS, kind="blob")
        # Assert
        assert vault.decrypt(stored.object_id) == plaintext
        assert stored.kind is ObjectKind.BLOB and stored.size == ONE_MIB + 1
        assert self.is_stored_outside_row(backend, stored)
        assert self.stored_blob(backend, stored.ciphertext_hash) == vault.read_ciphertext(stored.object_id)

    def test_the_inline_limit_decides_where_a_ciphertext_is_stored(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        limit = backend.inline_limit
        # Execute
        just_below = vault.put(random_bytes(limit - TAG_SIZE - 1), DICOM, NOW_MS, kind="blob")
        at_limit = vault.put(random_bytes(limit - TAG_SIZE), DICOM, NOW_MS, kind="blob")
        # Assert
        assert not self.is_stored_outside_row(backend, just_below)
        assert self.is_stored_outside_row(backend, at_limit)
        assert vault.decrypt(just_below.object_id) == random_bytes(limit - TAG_SIZE - 1)
        assert vault.decrypt(at_limit.object_id) == random_bytes(limit - TAG_SIZE)

    @pytest.mark.parametrize(
        "plaintext",
        [
            b"",
            "Zoë Łukasiewicz — 東京 🏥 \u200b\ufeff".encode(),
            bytes(range(256)) * 4,
            b"\x00" * 100,
            b"line one\r\nline two\n\x00\xff",
        ],
        ids=["empty", "unicode", "all-byte-values", "nuls", "line-endings"],
    )
    def test_bytes_come_back_exactly(self, vault: Vault, plaintext: bytes) -> None:
        # Execute
        stored = vault.put(plaintext, "application/octet-stream", NOW_MS)
        # Assert
        assert vault.decrypt(stored.object_id) == plaintext
        assert stored.size == len(plaintext)

    def test_every_object_has_its_own_data_key(self, vault: Vault) -> None:
        # Prepare
        plaintext = b'{"resourceType":"Patient","gender":"female"}'
        # Execute
        first = vault.put(plaintext, FHIR, NOW_MS)
        second = vault.put(plaintext, FHIR, NOW_MS)
        # Assert
        assert first.object_id != second.object_id
        assert first.content_hash == second.content_hash
        assert first.nonce != second.nonce
        assert first.wrapped_key != second.wrapped_key
        assert vault.read_ciphertext(first.object_id) != vault.read_ciphertext(second.object_id)
        assert first.ciphertext_hash != second.ciphertext_hash

    # ---- tampering with storage -----------------------------------------------------------

    @pytest.mark.parametrize("size", [300, ONE_MIB], ids=["inline", "outside-row"])
    def test_a_changed_ciphertext_byte_is_refused_naming_the_object(
        self, vault: Vault, backend: VaultBackend, size: int
    ) -> None:
        # Prepare
        stored = vault.put(random_bytes(size), DICOM, NOW_MS)
        altered = flip_one_byte(vault.read_ciphertext(stored.object_id))
        self.replace_stored_ciphertext(backend, stored, altered)
        expected = (
            f"object {stored.object_id}: ciphertext hash mismatch: "
            f"stored {stored.ciphertext_hash.hex()}, computed {sha256(altered).hex()}"
        )
        # Execute / Assert
        deliver = lambda object_id: vault.deliver(object_id, Recipient().public)  # noqa: E731
        for read in (vault.decrypt, vault.read_ciphertext, deliver):
            with pytest.raises(VaultIntegrityError) as caught:
                read(stored.object_id)
            assert str(caught.value) == expected
            assert caught.value.object_id == stored.object_id

    @pytest.mark.parametrize("size", [300, ONE_MIB], ids=["inline", "outside-row"])
    def test_a_changed_ciphertext_with_a_rewritten_hash_fails_authentication(
        self, vault: Vault, backend: VaultBackend, size: int
    ) -> None:
        # Prepare
        stored = vault.put(random_bytes(size), DICOM, NOW_MS)
        self.replace_stored_ciphertext(
            backend, stored, flip_one_byte(vault.read_ciphertext(stored.object_id)), rewrite_hash=True
        )
        # Execute / Assert
        with pytest.raises(VaultIntegrityError, match=rf"^object {stored.object_id}: ciphertext does not authenticate"):
            vault.decrypt(stored.object_id)

    def test_a_truncated_ciphertext_is_refused(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        stored = vault.put(b"short record", FHIR, NOW_MS)
        self.replace_stored_ciphertext(backend, stored, b"\x01\x02", rewrite_hash=True)
        # Execute / Assert
        with pytest.raises(VaultIntegrityError, match=rf"^object {stored.object_id}: malformed ciphertext"):
            vault.decrypt(stored.object_id)

    def test_a_lost_blob_is_named(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        stored = vault.put(random_bytes(ONE_MIB), DICOM, NOW_MS, kind="blob")
        self.remove_stored_blob(backend, stored.ciphertext_hash)
        # Execute / Assert
        with pytest.raises(VaultIntegrityError, match=rf"^object {stored.object_id}: .* missing"):
            vault.decrypt(stored.object_id)

    def test_a_changed_media_type_fails_authentication(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        stored = vault.put(b"%PDF-1.7 discharge letter", "application/pdf", NOW_MS)
        self.set_stored_column(backend, stored.object_id, "media_type", "text/plain")
        # Execute / Assert
        with pytest.raises(VaultIntegrityError, match=rf"^object {stored.object_id}: ciphertext does not authenticate"):
            vault.decrypt(stored.object_id)

    def test_a_changed_wrapped_key_or_content_hash_is_refused(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        first = vault.put(b"record one", FHIR, NOW_MS)
        second = vault.put(b"record two", FHIR, NOW_MS)
        # Execute: a wrapped key moved to another row, a content hash rewritten
        self.set_stored_column(backend, first.object_id, "wrapped_key", second.wrapped_key)
        self.set_stored_column(backend, second.object_id, "content_hash", sha256(b"record three"))
        # Assert
        with pytest.raises(VaultIntegrityError, match=rf"^object {first.object_id}: data key cannot be unwrapped"):
            vault.decrypt(first.object_id)
        with pytest.raises(VaultIntegrityError, match=rf"^object {second.object_id}: plaintext hash mismatch"):
            vault.decrypt(second.object_id)

    def test_a_changed_kind_is_named(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        stored = vault.put(b"record", FHIR, NOW_MS)
        self.set_stored_column(backend, stored.object_id, "kind", "secret")
        # Execute / Assert
        with pytest.raises(VaultIntegrityError, match=rf"^object {stored.object_id}: stored kind 'secret'"):
            vault.get(stored.object_id)

    # ---- the scrub when a vault opens -----------------------------------------------------

    def test_a_sound_vault_opens_after_hashing_every_ciphertext(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        small = vault.put(b"record", FHIR, NOW_MS)
        large = vault.put(random_bytes(ONE_MIB), DICOM, NOW_MS, kind="blob")
        # Execute
        reopened = Vault(backend, ORG, MASTER_KEY)
        # Assert
        report = reopened.opening_scrub
        assert report is not None and report.ok and report.unreferenced_blobs == []
        assert report.objects == 2
        assert report.bytes == small.size + large.size + 2 * TAG_SIZE
        assert Vault(backend, ORG, MASTER_KEY, scrub_on_open=False).opening_scrub is None

    @pytest.mark.parametrize("size", [300, ONE_MIB], ids=["inline", "outside-row"])
    def test_a_vault_with_a_changed_ciphertext_is_refused_when_it_opens(
        self, vault: Vault, backend: VaultBackend, size: int
    ) -> None:
        # Prepare
        stored = vault.put(random_bytes(size), DICOM, NOW_MS)
        vault.put(b"an intact record", FHIR, NOW_MS)
        altered = flip_one_byte(vault.read_ciphertext(stored.object_id))
        self.replace_stored_ciphertext(backend, stored, altered)
        # Execute / Assert
        with pytest.raises(VaultIntegrityError) as caught:
            Vault(backend, ORG, MASTER_KEY)
        assert caught.value.object_id == stored.object_id
        assert str(caught.value).startswith(
            f"object {stored.object_id}: ciphertext hash mismatch: "
            f"stored {stored.ciphertext_hash.hex()}, computed {sha256(altered).hex()}"
        )
        assert "which will not serve" in str(caught.value)

    def test_a_vault_with_a_lost_blob_is_refused_when_it_opens(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        stored = vault.put(random_bytes(ONE_MIB), DICOM, NOW_MS, kind="blob")
        self.remove_stored_blob(backend, stored.ciphertext_hash)
        # Execute / Assert
        with pytest.raises(VaultIntegrityError, match=rf"^object {stored.object_id}: its ciphertext is missing"):
            Vault(backend, ORG, MASTER_KEY)

    def test_a_scrub_names_every_broken_object_and_lists_unreferenced_blobs(
        self, vault: Vault, backend: VaultBackend
    ) -> None:
        # Prepare
        first = vault.put(b"first record", FHIR, NOW_MS)
        vault.put(b"intact record", FHIR, NOW_MS)
        second = vault.put(random_bytes(ONE_MIB), DICOM, NOW_MS, kind="blob")
        for stored in (first, second):
            self.replace_stored_ciphertext(backend, stored, flip_one_byte(vault.read_ciphertext(stored.object_id)))
        leftover = random_bytes(ONE_MIB, seed=8)
        self.write_stored_blob(backend, sha256(leftover), leftover)
        # Execute
        report = scrub(backend)
        # Assert
        assert [fault.object_id for fault in report.faults] == sorted([first.object_id, second.object_id])
        assert report.objects == 3
        assert len(report.unreferenced_blobs) == 1 and sha256(leftover).hex()[2:] in report.unreferenced_blobs[0]
        refusal = report.refusal()
        assert refusal is not None and "1 more object(s) are broken too" in str(refusal)

    # ---- keys -----------------------------------------------------------------------------

    def test_a_wrong_master_key_cannot_unwrap(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        stored = vault.put(b"record", FHIR, NOW_MS)
        impostor = Vault(backend, ORG, OTHER_MASTER_KEY)
        # Execute / Assert
        with pytest.raises(VaultIntegrityError, match=rf"^object {stored.object_id}: data key cannot be unwrapped"):
            impostor.decrypt(stored.object_id)
        with pytest.raises(VaultIntegrityError, match="data key cannot be unwrapped"):
            impostor.deliver(stored.object_id, Recipient().public)

    def test_a_record_is_bound_to_its_organisation(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        stored = vault.put(b"record", FHIR, NOW_MS)
        other_org = Vault(backend, "hospital-b", MASTER_KEY)
        # Execute / Assert
        with pytest.raises(VaultIntegrityError, match="ciphertext does not authenticate"):
            other_org.decrypt(stored.object_id)

    # ---- delivery -------------------------------------------------------------------------

    @pytest.mark.parametrize("size", [300, ONE_MIB], ids=["record", "blob"])
    def test_a_delivery_opens_for_its_recipient_only(self, vault: Vault, size: int) -> None:
        # Prepare
        plaintext = random_bytes(size)
        stored = vault.put(plaintext, DICOM, NOW_MS)
        alice, bob = Recipient(), Recipient()
        # Execute
        delivery = vault.deliver(stored.object_id, alice.public)
        received = SealedDelivery.from_dict(decode(encode(delivery.to_dict())))
        # Assert
        assert received == delivery
        assert received.org_id == ORG and received.ciphertext_hash == stored.ciphertext_hash
        assert (
            open_delivery(
                received,
                alice.private,
                expected_content_hash=stored.content_hash,
                expected_ciphertext_hash=stored.ciphertext_hash,
            )
            == plaintext
        )
        with pytest.raises(KeyDeliveryError, match=rf"^object {stored.object_id}: this delivery is sealed to another"):
            open_delivery(received, bob.private)

    @pytest.mark.parametrize("which", ["content", "ciphertext"])
    def test_open_delivery_with_a_wrong_expected_hash_fails(self, vault: Vault, which: str) -> None:
        # Prepare
        stored = vault.put(b"record as registered", FHIR, NOW_MS)
        alice = Recipient()
        delivery = vault.deliver(stored.object_id, alice.public)
        wrong = {f"expected_{which}_hash": sha256(b"record as the ledger knows it")}
        # Execute / Assert
        what = "plaintext" if which == "content" else "ciphertext"
        with pytest.raises(VaultIntegrityError, match=rf"^object {stored.object_id}: {what} hash mismatch: expected"):
            open_delivery(delivery, alice.private, **wrong)

    def test_a_delivery_altered_in_transit_is_refused(self, vault: Vault) -> None:
        # Prepare
        stored = vault.put(b"record", FHIR, NOW_MS)
        alice = Recipient()
        delivery = vault.deliver(stored.object_id, alice.public)
        changed = flip_one_byte(delivery.ciphertext)
        fields = delivery.to_dict()
        byte_changed = SealedDelivery.from_dict(fields | {"ciphertext": changed})
        hash_rewritten = SealedDelivery.from_dict(fields | {"ciphertext": changed, "ciphertext_hash": sha256(changed)})
        relabelled = SealedDelivery.from_dict(fields | {"media_type": "text/plain"})
        # Execute / Assert
        with pytest.raises(VaultIntegrityError, match="ciphertext hash mismatch: delivered"):
            open_delivery(byte_changed, alice.private)
        with pytest.raises(VaultIntegrityError, match="ciphertext does not authenticate"):
            open_delivery(hash_rewritten, alice.private)
        with pytest.raises(VaultIntegrityError, match="ciphertext does not authenticate"):
            open_delivery(relabelled, alice.private)

    # ---- concurrency, persistence, absence ------------------------------------------------

    def test_concurrent_puts_from_threads(self, vault: Vault) -> None:
        # Prepare
        threads_count, puts_per_thread = 8, 12
        results: dict[int, list[tuple[str, bytes]]] = {}
        errors: list[BaseException] = []
        start = threading.Barrier(threads_count)

        def writer(number: int) -> None:
            try:
                start.wait()
                mine = []
                for index in range(puts_per_thread):
                    # One object per thread goes outside the row, so blob writes race too.
                    plaintext = random_bytes(400_000 if index == 0 else 200, seed=number * 1000 + index)
                    mine.append((vault.put(plaintext, DICOM, NOW_MS + index).object_id, plaintext))
                results[number] = mine
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=writer, args=(number,)) for number in range(threads_count)]
        # Execute
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        # Assert
        assert errors == []
        written = [entry for entries in results.values() for entry in entries]
        assert sorted(vault.list_ids()) == sorted(object_id for object_id, _ in written)
        assert len(written) == threads_count * puts_per_thread
        for object_id, plaintext in written:
            assert vault.decrypt(object_id) == plaintext

    def test_a_reopened_backend_holds_everything(self, open_backend: BackendOpener) -> None:
        # Prepare
        first = open_backend()
        small = Vault(first, ORG, MASTER_KEY).put(b"small record", FHIR, NOW_MS)
        large = Vault(first, ORG, MASTER_KEY).put(random_bytes(ONE_MIB), DICOM, NOW_MS, kind="blob")
        first.close()
        # Execute
        reopened = Vault(open_backend(), ORG, MASTER_KEY)
        # Assert
        assert reopened.list_ids() == sorted([small.object_id, large.object_id])
        assert reopened.get(small.object_id) == small and reopened.get(large.object_id) == large
        assert reopened.decrypt(small.object_id) == b"small record"
        assert reopened.decrypt(large.object_id) == random_bytes(ONE_MIB)

    def test_a_missing_object_is_named(self, vault: Vault) -> None:
        # Prepare
        missing = "0123456789abcdef0123456789abcdef"
        # Execute / Assert
        for action in (
            vault.get,
            vault.decrypt,
            vault.read_ciphertext,
            vault.delete,
            lambda object_id: vault.deliver(object_id, Recipient().public),
        ):
            with pytest.raises(ObjectNotFound, match=rf"^object {missing} is not in ") as caught:
                action(missing)
            assert caught.value.object_id == missing
        assert not vault.exists(missing)

    def test_exists_list_and_delete(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        small = vault.put(b"record", FHIR, NOW_MS)
        large = vault.put(random_bytes(ONE_MIB), DICOM, NOW_MS, kind="blob")
        # Execute
        vault.delete(large.object_id)
        # Assert
        assert vault.exists(small.object_id) and not vault.exists(large.object_id)
        assert vault.list_ids() == [small.object_id]
        assert self.stored_blob(backend, large.ciphertext_hash) is None
        with pytest.raises(ObjectNotFound):
            vault.decrypt(large.object_id)
        assert vault.decrypt(small.object_id) == b"record"

    def test_an_object_id_is_stored_once(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        stored = vault.put(random_bytes(ONE_MIB), DICOM, NOW_MS, kind="blob")
        ciphertext = vault.read_ciphertext(stored.object_id)
        # Execute / Assert
        with pytest.raises(VaultBackendError, match=f"object {stored.object_id} already exists"):
            backend.put(stored, ciphertext)
        assert vault.decrypt(stored.object_id) == random_bytes(ONE_MIB)

    def test_a_backend_refuses_a_ciphertext_that_does_not_match_its_row(
        self, vault: Vault, backend: VaultBackend
    ) -> None:
        # Prepare
        stored = vault.put(b"record", FHIR, NOW_MS)
        other = dataclasses.replace(stored, object_id="ab" * 16)
        # Execute / Assert
        with pytest.raises(VaultBackendError, match="does not match its ciphertext_hash"):
            backend.put(other, b"not the ciphertext")
        assert not backend.exists("ab" * 16)


class TestSQLiteVault(VaultSuite):
    @pytest.fixture
    def open_backend(self, tmp_path: Path) -> Iterator[BackendOpener]:
        opened: list[VaultBackend] = []

        def opener() -> VaultBackend:
            opened.append(open_backend(f"sqlite://{tmp_path / 'vault'}"))
            return opened[-1]

        yield opener
        for backend in opened:
            backend.close()

    @staticmethod
    def _sqlite(backend: VaultBackend) -> SQLiteVaultBackend:
        assert isinstance(backend, SQLiteVaultBackend)
        return backend

    def set_stored_column(self, backend: VaultBackend, object_id: str, column: str, value: Any) -> None:
        with sqlite3.connect(self._sqlite(backend).database_path) as connection:
            connection.execute(f"UPDATE objects SET {column}=? WHERE object_id=?", (value, object_id))

    def read_stored_column(self, backend: VaultBackend, object_id: str, column: str) -> Any:
        with sqlite3.connect(self._sqlite(backend).database_path) as connection:
            return connection.execute(f"SELECT {column} FROM objects WHERE object_id=?", (object_id,)).fetchone()[0]

    def stored_blob(self, backend: VaultBackend, ciphertext_hash: bytes) -> bytes | None:
        path = self._sqlite(backend).blob_path(ciphertext_hash)
        return path.read_bytes() if path.exists() else None

    def write_stored_blob(self, backend: VaultBackend, ciphertext_hash: bytes, data: bytes) -> None:
        path = self._sqlite(backend).blob_path(ciphertext_hash)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)

    def remove_stored_blob(self, backend: VaultBackend, ciphertext_hash: bytes) -> None:
        self._sqlite(backend).blob_path(ciphertext_hash).unlink()

    def test_a_read_only_backend_scrubs_but_writes_nothing(self, vault: Vault, backend: VaultBackend) -> None:
        # Prepare
        stored = vault.put(b"record", FHIR, NOW_MS)
        directory = self._sqlite(backend).directory
        # Execute
        read_only = SQLiteVaultBackend(directory, read_only=True)
        try:
            report = scrub(read_only)
            with pytest.raises(VaultBackendError, match="readonly database"):
                read_only.put(dataclasses.replace(stored, object_id="ab" * 16), vault.read_ciphertext(stored.object_id))
        finally:
            read_only.close()
        # Assert
        assert report.ok and report.objects == 1
        with pytest.raises(VaultBackendError, match="no vault database at"):
            SQLiteVaultBackend(directory / "elsewhere", read_only=True)
        assert not (directory / "elsewhere").exists()

    def test_blob_files_are_content_addressed(self, vault: Vault, backend: VaultBackend) -> None:
        # Execute
        stored = vault.put(random_bytes(ONE_MIB), DICOM, NOW_MS, kind="blob")
        # Assert
        hex_hash = stored.ciphertext_hash.hex()
        path = self._sqlite(backend).directory / "blobs" / hex_hash[:2] / hex_hash[2:]
        assert sha256(path.read_bytes()) == stored.ciphertext_hash
        assert path.stat().st_mode & 0o077 == 0


class TestPostgresVault(VaultSuite):
    @pytest.fixture
    def open_backend(self, postgres_dsn: str, postgres_schema: str) -> Iterator[BackendOpener]:
        self.dsn, self.schema = postgres_dsn, postgres_schema
        opened: list[VaultBackend] = []

        def opener() -> VaultBackend:
            opened.append(open_backend(postgres_dsn, schema=postgres_schema))
            return opened[-1]

        yield opener
        for backend in opened:
            backend.close()

    def _execute(self, query: str, params: tuple[Any, ...], **names: str) -> Any:
        table_names = {name: sql.Identifier(self.schema, table) for name, table in names.items()}
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            cursor = connection.execute(sql.SQL(query).format(**table_names), params)
            return cursor.fetchone() if cursor.description else None

    def set_stored_column(self, backend: VaultBackend, object_id: str, column: str, value: Any) -> None:
        assert isinstance(backend, PostgresVaultBackend)
        query = f"UPDATE {{objects}} SET {column} = %s WHERE object_id = %s"
        self._execute(query, (value, object_id), objects="objects")

    def read_stored_column(self, backend: VaultBackend, object_id: str, column: str) -> Any:
        row = self._execute(f"SELECT {column} FROM {{objects}} WHERE object_id = %s", (object_id,), objects="objects")
        return row[0]

    def stored_blob(self, backend: VaultBackend, ciphertext_hash: bytes) -> bytes | None:
        row = self._execute("SELECT data FROM {blobs} WHERE ciphertext_hash = %s", (ciphertext_hash,), blobs="blobs")
        return None if row is None else bytes(row[0])

    def write_stored_blob(self, backend: VaultBackend, ciphertext_hash: bytes, data: bytes) -> None:
        query = (
            "INSERT INTO {blobs} (ciphertext_hash, data) VALUES (%s, %s) "
            "ON CONFLICT (ciphertext_hash) DO UPDATE SET data = EXCLUDED.data"
        )
        self._execute(query, (ciphertext_hash, data), blobs="blobs")

    def remove_stored_blob(self, backend: VaultBackend, ciphertext_hash: bytes) -> None:
        self._execute("DELETE FROM {blobs} WHERE ciphertext_hash = %s", (ciphertext_hash,), blobs="blobs")

    def test_the_description_names_the_server_but_not_the_password(self, backend: VaultBackend) -> None:
        # Assert
        assert backend.description.startswith("postgresql://")
        assert self.schema in backend.description
        password = psycopg.conninfo.conninfo_to_dict(self.dsn).get("password")
        assert password and str(password) not in backend.description

    def test_an_unreachable_server_is_a_backend_error(self) -> None:
        # Execute / Assert
        with pytest.raises(VaultBackendError, match=r"cannot open vault postgresql://nobody@127\.0\.0\.1:1/none"):
            PostgresVaultBackend("postgresql://nobody:secret@127.0.0.1:1/none", connect_timeout_s=2)
