"""Tampering with a stopped network's files: a block, the transactions in it, a record's index entry,
an audit entry, a receipt, and a vault ciphertext. Each change must be caught when the node starts
(EmbeddedNetwork.start opens each Peer, whose constructor runs `check_at_start_up`, and each vault,
which scrubs its ciphertexts when it opens), by `medledger verify`
(medledger.node.verification.verify_directory, which the command renders), and, for vault bytes,
when the record is delivered.

What start-up checks: `check_at_start_up` executes nothing but hashes every stored byte the block
headers commit to: each header and link, each body against its transaction root, every block's
receipts against its receipts root, and the state rows and superseded values each block wrote
against its state root. A vault re-hashes every stored ciphertext against its row. The limits: a
state row's transaction index and the attestations are checked by `medledger verify` only (the
headers do not commit to them); a vault host that re-encrypts a record and rewrites every stored
hash is caught only against the ledger (by `medledger verify` and at delivery), not when the vault
opens; and whoever can rewrite a whole chain of headers consistently is caught only by the other
organisations' attestations.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from medledger.contracts.default import default_registry
from medledger.core.encoding import decode, decode_unchecked, encode
from medledger.core.hashing import sha256
from medledger.core.identity import MemberIdentity, load_identity
from medledger.ledger.errors import IntegrityError
from medledger.ledger.receipts import Receipt
from medledger.node.network import EmbeddedNetwork
from medledger.node.peer import Peer
from medledger.node.verification import verify_directory
from medledger.sdk.records import sign_delivery_request
from medledger.vault import Vault, VaultIntegrityError, load_or_create_master_key, open_backend
from medledger.vault.crypto import encrypt_record, new_data_key, wrap_data_key
from medledger.vault.sqlite_backend import DATABASE_NAME
from tests.conftest import ManualClock
from tests.security.attacks import AttackClass, AttackLog
from tests.security.world import VAULT_ORG, build_world

TAMPER = AttackClass.TAMPER
PEER = VAULT_ORG
EXTRA_BLOCKS = 14
"""Blocks committed after the scenario, so the oldest receipts are beyond start-up's 16-block window."""


@dataclass(frozen=True)
class Scenario:
    """A stopped network directory and the ids the attacks aim at."""

    data_dir: Path
    alice: str
    """Alice's pseudonym: her record was delivered, so her trail holds an access.delivery entry."""
    record_id: str
    """Alice's recent record (delivered once)."""
    locator: str
    """Where St Mary's vault keeps it."""
    doctor: MemberIdentity
    """City General's clinician, who holds a permit for the record."""
    decision_id: str
    """That permit (still valid: the scenario's clock never moves)."""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """The record-sharing world with one delivery and some more blocks, stopped; built once per module."""
    data_dir = tmp_path_factory.mktemp("tamper") / "net"
    world = build_world(data_dir, ManualClock())
    try:
        decision = world.request(world.doctor, world.alice.recent.record_id)
        world.deliver(world.sign(world.doctor, decision["decision_id"], world.alice.recent.record_id))
        for _ in range(EXTRA_BLOCKS):
            world.commit_a_block()
    finally:
        world.network.stop()
    return Scenario(
        data_dir,
        world.alice.wallet.pseudonym,
        world.alice.recent.record_id,
        world.alice.recent.locator,
        world.doctor,
        decision["decision_id"],
    )


@pytest.fixture
def scenario(pristine: Scenario, tmp_path: Path) -> Scenario:
    """A private copy of the pristine directory to damage."""
    copy = tmp_path / "net"
    shutil.copytree(pristine.data_dir, copy)
    return replace(pristine, data_dir=copy)


@pytest.fixture
def ledger_db(scenario: Scenario) -> Iterator[sqlite3.Connection]:
    """A raw connection to St Mary's ledger file, as an attacker with disk access has."""
    db = sqlite3.connect(scenario.data_dir / "peers" / PEER / "ledger.sqlite", isolation_level=None)
    yield db
    db.close()


def start_peer(data_dir: Path, org_id: str = PEER) -> None:
    """Open the peer exactly as EmbeddedNetwork.start does; raises what start-up raises."""
    identity = load_identity(data_dir / "keys" / org_id, "peer")
    peer = Peer(org_id, data_dir / "peers" / org_id, identity, default_registry())
    peer.close()


def start_up_fault(data_dir: Path, org_id: str = PEER) -> IntegrityError | None:
    """The IntegrityError start-up raises for the peer's ledger, or None when the peer starts."""
    try:
        start_peer(data_dir, org_id)
    except IntegrityError as fault:
        return fault
    return None


def verify_fault(data_dir: Path) -> str:
    """The fault `medledger verify` reports for the directory (empty when it verifies)."""
    report = verify_directory(data_dir)
    return report.fault or ""


def height(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT MAX(number) FROM blocks").fetchone()[0]) + 1


def flip(value: bytes, position: int) -> bytes:
    return value[:position] + bytes([value[position] ^ 0x01]) + value[position + 1 :]


def test_the_untouched_directory_starts_and_verifies(scenario: Scenario, ledger_db: sqlite3.Connection) -> None:
    """The control: without tampering, start-up and verify both pass, and the chain is long enough
    that its first receipts are outside start-up's window."""
    # Execute
    start_peer(scenario.data_dir)
    fault = verify_fault(scenario.data_dir)
    # Assert
    assert fault == ""
    assert height(ledger_db) > 16 + 3


@pytest.mark.parametrize("column", ["header", "body"])
def test_a_changed_block_is_caught_at_start_up_and_by_verify(
    scenario: Scenario, ledger_db: sqlite3.Connection, attacks: AttackLog, column: str
) -> None:
    # Prepare
    number = height(ledger_db) // 2
    (value,) = ledger_db.execute(f"SELECT {column} FROM blocks WHERE number=?", (number,)).fetchone()
    ledger_db.execute(f"UPDATE blocks SET {column}=? WHERE number=?", (flip(value, len(value) // 2), number))
    attacks.tried(TAMPER, f"one byte of block {column} changed, caught at start-up")
    attacks.tried(TAMPER, f"one byte of block {column} changed, caught by medledger verify")
    # Execute
    with pytest.raises(IntegrityError) as at_start:
        start_peer(scenario.data_dir)
    fault = verify_fault(scenario.data_dir)
    # Assert
    assert at_start.value.location == f"block {number}"
    assert f"peer {PEER}: block {number}" in fault


def test_reordered_blocks_and_reordered_transactions_are_caught(
    scenario: Scenario, ledger_db: sqlite3.Connection, attacks: AttackLog
) -> None:
    # Prepare: two adjacent blocks swap their bodies; in a third block the transactions are reversed
    rows = ledger_db.execute("SELECT number, body FROM blocks WHERE number > 0 ORDER BY number").fetchall()
    multi = next((n, body) for n, body in rows if len(decode(body)) > 1)
    first, second = rows[-3], rows[-2]
    attacks.tried(TAMPER, "two blocks' bodies swapped, caught at start-up and by verify")
    attacks.tried(TAMPER, "transactions re-ordered inside a block, caught at start-up and by verify")
    # Execute
    ledger_db.execute("UPDATE blocks SET body=? WHERE number=?", (second[1], first[0]))
    ledger_db.execute("UPDATE blocks SET body=? WHERE number=?", (first[1], second[0]))
    with pytest.raises(IntegrityError) as swapped_at_start:
        start_peer(scenario.data_dir)
    swapped_fault = verify_fault(scenario.data_dir)
    ledger_db.execute("UPDATE blocks SET body=? WHERE number=?", (first[1], first[0]))
    ledger_db.execute("UPDATE blocks SET body=? WHERE number=?", (second[1], second[0]))
    ledger_db.execute("UPDATE blocks SET body=? WHERE number=?", (encode(list(reversed(decode(multi[1])))), multi[0]))
    with pytest.raises(IntegrityError) as reordered_at_start:
        start_peer(scenario.data_dir)
    reordered_fault = verify_fault(scenario.data_dir)
    # Assert
    assert swapped_at_start.value.location == f"block {first[0]}"
    assert f"block {first[0]}" in swapped_fault
    assert reordered_at_start.value.location == f"block {multi[0]}"
    assert f"block {multi[0]}" in reordered_fault


def _rewrite_record(db: sqlite3.Connection, record_id: str) -> None:
    key = f"records/entry/{record_id}"
    (raw,) = db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
    entry = decode_unchecked(raw)
    entry["content_hash"] = bytes(32)  # what a vault host would do to pass off other content
    db.execute("UPDATE state SET value=? WHERE key=?", (encode(entry), key))


def _delivery_audit_key(db: sqlite3.Connection, patient: str) -> str:
    rows = db.execute("SELECT key, value FROM state WHERE key LIKE ?", (f"audit/patient/{patient}/%",)).fetchall()
    return next(str(key) for key, value in rows if decode_unchecked(value)["event"] == "access.delivery")


def _rewrite_old_receipt(db: sqlite3.Connection) -> int:
    (raw,) = db.execute("SELECT receipt FROM receipts WHERE block_number=2 AND tx_index=0").fetchone()
    receipt = Receipt.decode(raw)
    forged = Receipt(receipt.tx_id, receipt.code, "rewritten", receipt.events, receipt.reads, receipt.writes)
    db.execute("UPDATE receipts SET receipt=? WHERE block_number=2 AND tx_index=0", (forged.encode(),))
    return 2


def test_a_changed_record_entry_is_caught_by_verify(
    scenario: Scenario, ledger_db: sqlite3.Connection, attacks: AttackLog
) -> None:
    # Prepare
    _rewrite_record(ledger_db, scenario.record_id)
    attacks.tried(TAMPER, "a record's content hash rewritten in the state table, caught by verify")
    # Execute
    fault = verify_fault(scenario.data_dir)
    # Assert
    assert f"state row 'records/entry/{scenario.record_id}'" in fault


def test_a_deleted_or_changed_audit_entry_is_caught_by_verify(
    scenario: Scenario, ledger_db: sqlite3.Connection, attacks: AttackLog
) -> None:
    # Prepare: the cover-up of a delivery: its audit entry changed, then deleted
    key = _delivery_audit_key(ledger_db, scenario.alice)
    (raw,) = ledger_db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
    entry = decode_unchecked(raw)
    entry["agent"]["org"] = "health-authority"
    attacks.tried(TAMPER, "an access.delivery audit entry rewritten to blame another organisation, caught by verify")
    attacks.tried(TAMPER, "an access.delivery audit entry deleted, caught by verify")
    # Execute
    ledger_db.execute("UPDATE state SET value=? WHERE key=?", (encode(entry), key))
    changed = verify_fault(scenario.data_dir)
    ledger_db.execute("DELETE FROM state WHERE key=?", (key,))
    deleted = verify_fault(scenario.data_dir)
    # Assert
    assert f"state row {key!r}" in changed and "value differs" in changed
    assert f"state row {key!r}" in deleted and "missing" in deleted


def test_a_changed_receipt_is_caught_by_verify_and_a_recent_one_at_start_up(
    scenario: Scenario, ledger_db: sqlite3.Connection, attacks: AttackLog
) -> None:
    # Prepare
    last = height(ledger_db) - 1
    (raw,) = ledger_db.execute("SELECT receipt FROM receipts WHERE block_number=? AND tx_index=0", (last,)).fetchone()
    receipt = Receipt.decode(raw)
    forged = Receipt(receipt.tx_id, receipt.code, "rewritten", receipt.events, receipt.reads, receipt.writes)
    attacks.tried(TAMPER, "the receipt of the latest block rewritten, caught at start-up")
    attacks.tried(TAMPER, "an old receipt rewritten, caught by verify")
    # Execute
    ledger_db.execute("UPDATE receipts SET receipt=? WHERE block_number=? AND tx_index=0", (forged.encode(), last))
    with pytest.raises(IntegrityError) as recent_at_start:
        start_peer(scenario.data_dir)
    ledger_db.execute("UPDATE receipts SET receipt=? WHERE block_number=? AND tx_index=0", (raw, last))
    old = _rewrite_old_receipt(ledger_db)
    fault = verify_fault(scenario.data_dir)
    # Assert
    assert recent_at_start.value.location == f"block {last}"
    assert f"block {old} transaction 0" in fault


def _written_by(db: sqlite3.Connection, key: str) -> int:
    """The block that last wrote a state row."""
    (number,) = db.execute("SELECT block_number FROM state WHERE key=?", (key,)).fetchone()
    return int(number)


def test_a_changed_record_entry_is_caught_at_start_up(
    scenario: Scenario, ledger_db: sqlite3.Connection, attacks: AttackLog
) -> None:
    # Prepare
    number = _written_by(ledger_db, f"records/entry/{scenario.record_id}")
    _rewrite_record(ledger_db, scenario.record_id)
    attacks.tried(TAMPER, "a record's content hash rewritten in the state table, caught at start-up")
    # Execute
    fault = start_up_fault(scenario.data_dir)
    # Assert
    assert fault is not None, "the peer started on a ledger with a rewritten record entry"
    assert fault.location == f"block {number}" and "state_root" in fault.problem


def test_a_deleted_audit_entry_is_caught_at_start_up(
    scenario: Scenario, ledger_db: sqlite3.Connection, attacks: AttackLog
) -> None:
    # Prepare
    key = _delivery_audit_key(ledger_db, scenario.alice)
    number = _written_by(ledger_db, key)
    ledger_db.execute("DELETE FROM state WHERE key=?", (key,))
    attacks.tried(TAMPER, "an access.delivery audit entry deleted, caught at start-up")
    # Execute
    fault = start_up_fault(scenario.data_dir)
    # Assert
    assert fault is not None, "the peer started on a ledger with a deleted audit entry"
    assert fault.location == f"block {number}" and "state_root" in fault.problem


def test_a_changed_old_receipt_is_caught_at_start_up(
    scenario: Scenario, ledger_db: sqlite3.Connection, attacks: AttackLog
) -> None:
    # Prepare
    number = _rewrite_old_receipt(ledger_db)
    attacks.tried(TAMPER, "an old receipt rewritten, caught at start-up")
    # Execute
    fault = start_up_fault(scenario.data_dir)
    # Assert
    assert fault is not None, f"the peer started on a ledger with a rewritten receipt of block {number}"
    assert fault.location == f"block {number}" and "receipts_root" in fault.problem


# The vault -------------------------------------------------------------------------------------


@dataclass
class VaultFiles:
    """St Mary's vault as its host sees it: the database, the master key, the object of the record."""

    db: sqlite3.Connection
    directory: Path
    master_key_path: Path
    object_id: str

    def open_vault(self, *, scrub_on_open: bool = True) -> Vault:
        """Open the vault as the node does at start-up (open_vault_service)."""
        backend = open_backend(f"sqlite:///{self.directory.resolve()}")
        try:
            return Vault(backend, PEER, load_or_create_master_key(self.master_key_path), scrub_on_open=scrub_on_open)
        except VaultIntegrityError:
            backend.close()
            raise


@pytest.fixture
def vault_files(scenario: Scenario) -> Iterator[VaultFiles]:
    directory = scenario.data_dir / "vaults" / PEER
    db = sqlite3.connect(directory / DATABASE_NAME, isolation_level=None)
    object_id = scenario.locator.rsplit("/", 1)[1]
    yield VaultFiles(db, directory, scenario.data_dir / "keys" / PEER / "vault-master.key", object_id)
    db.close()


def _flip_ciphertext(files: VaultFiles) -> None:
    (ciphertext,) = files.db.execute("SELECT ciphertext FROM objects WHERE object_id=?", (files.object_id,)).fetchone()
    assert ciphertext is not None, "the record's ciphertext is stored in its row"
    files.db.execute(
        "UPDATE objects SET ciphertext=? WHERE object_id=?", (flip(ciphertext, len(ciphertext) // 2), files.object_id)
    )


def test_a_changed_vault_ciphertext_is_refused_at_delivery(vault_files: VaultFiles, attacks: AttackLog) -> None:
    # Prepare: opened without its scrub, like a vault whose bytes are changed while it runs
    _flip_ciphertext(vault_files)
    vault = vault_files.open_vault(scrub_on_open=False)
    attacks.tried(TAMPER, "one byte of a stored vault ciphertext changed, refused when delivered")
    # Execute / Assert
    try:
        with pytest.raises(VaultIntegrityError) as caught:
            vault.deliver(vault_files.object_id, bytes(range(1, 33)))
    finally:
        vault.backend.close()
    assert vault_files.object_id in str(caught.value) and "hash mismatch" in str(caught.value)


def test_a_vault_host_that_re_encrypts_consistently_is_caught_by_the_on_chain_hash(
    scenario: Scenario, vault_files: VaultFiles, attacks: AttackLog
) -> None:
    """The host holds the master key, so it can replace a record with other content and make every
    stored hash match; only the hashes registered on the ledger give it away."""
    # Prepare: other content, encrypted under a new data key wrapped with the real master key
    forged = b'{"resourceType":"Observation","status":"cancelled"}'
    data_key = new_data_key()
    nonce, ciphertext = encrypt_record(forged, data_key, org_id=PEER, media_type="application/fhir+json")
    wrapped = wrap_data_key(data_key, load_or_create_master_key(vault_files.master_key_path), vault_files.object_id)
    vault_files.db.execute(
        "UPDATE objects SET ciphertext=?, ciphertext_hash=?, content_hash=?, nonce=?, wrapped_key=?, size=? "
        "WHERE object_id=?",
        (ciphertext, sha256(ciphertext), sha256(forged), nonce, wrapped, len(forged), vault_files.object_id),
    )
    clock = ManualClock()
    network = EmbeddedNetwork(scenario.data_dir, clock=clock)
    network.start()
    attacks.tried(TAMPER, "vault host replaces a record and all its stored hashes, caught by the ledger's hash")
    try:
        service = network.vault_service(PEER)
        doctor = scenario.doctor
        signed = sign_delivery_request(
            scenario.decision_id, scenario.record_id, doctor.certificate.cert_id, doctor.key, clock()
        )
        # Execute
        host_view = service.vault.decrypt(vault_files.object_id)
        with pytest.raises(VaultIntegrityError) as caught:
            service.deliver(signed)
    finally:
        network.stop()
    # Assert: the vault's own checks pass; the comparison with the ledger does not
    assert host_view == forged
    assert "registered on the ledger" in str(caught.value)


def test_a_vault_host_that_re_encrypts_consistently_is_caught_by_verify(
    scenario: Scenario, vault_files: VaultFiles, attacks: AttackLog
) -> None:
    # Prepare: as above, a forged record under every stored hash the host can rewrite
    forged = b'{"resourceType":"Observation","status":"cancelled"}'
    data_key = new_data_key()
    nonce, ciphertext = encrypt_record(forged, data_key, org_id=PEER, media_type="application/fhir+json")
    wrapped = wrap_data_key(data_key, load_or_create_master_key(vault_files.master_key_path), vault_files.object_id)
    vault_files.db.execute(
        "UPDATE objects SET ciphertext=?, ciphertext_hash=?, content_hash=?, nonce=?, wrapped_key=?, size=? "
        "WHERE object_id=?",
        (ciphertext, sha256(ciphertext), sha256(forged), nonce, wrapped, len(forged), vault_files.object_id),
    )
    attacks.tried(TAMPER, "vault host replaces a record and all its stored hashes, caught by medledger verify")
    # Execute
    fault = verify_fault(scenario.data_dir)
    # Assert
    assert fault.startswith(f"vault {PEER}: object {vault_files.object_id} (record {scenario.record_id}, current)")
    assert "registered on the ledger" in fault


def test_a_changed_vault_ciphertext_is_caught_by_verify(
    scenario: Scenario, vault_files: VaultFiles, attacks: AttackLog
) -> None:
    # Prepare
    _flip_ciphertext(vault_files)
    attacks.tried(TAMPER, "one byte of a stored vault ciphertext changed, caught by medledger verify")
    # Execute
    fault = verify_fault(scenario.data_dir)
    # Assert
    assert fault.startswith(f"vault {PEER}: object {vault_files.object_id}: ciphertext hash mismatch")


def test_a_changed_vault_ciphertext_is_caught_when_the_vault_starts(
    vault_files: VaultFiles, attacks: AttackLog
) -> None:
    # Prepare
    _flip_ciphertext(vault_files)
    attacks.tried(TAMPER, "one byte of a stored vault ciphertext changed, caught when the vault opens")
    # Execute
    try:
        vault_files.open_vault().backend.close()
    except VaultIntegrityError as refused:
        fault: VaultIntegrityError | None = refused
    else:
        fault = None
    # Assert
    assert fault is not None, "the vault opened with a changed ciphertext"
    assert fault.object_id == vault_files.object_id and "ciphertext hash mismatch" in fault.problem
