"""Tamper evidence of a data directory: changing any single stored byte of a block, transaction,
receipt, state row, superseded state value, attestation or meta row makes `medledger verify` fail
and name the place, and restoring the byte makes it pass again."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.core.identity import Role
from medledger.ledger.errors import IntegrityError
from medledger.ledger.integrity import check_at_start_up
from medledger.ledger.sqlite_store import SQLiteLedgerStore
from medledger.node.network import EmbeddedNetwork
from medledger.node.verification import verify_directory
from medledger.ordering.cutter import CutterConfig
from medledger.sdk import LedgerClient, PatientWallet
from tests.conftest import ManualClock, member_client

TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "blocks": ("number",),
    "receipts": ("block_number", "tx_index"),
    "state": ("key",),
    "attestations": ("block_number", "org_id"),
    "meta": ("key",),
    "state_history": ("key", "block_number"),
}
"""Primary key columns of each ledger table: how a mutated row is found again to restore it."""

MUTATED_COLUMNS: dict[str, tuple[str, ...]] = {
    "blocks": ("hash", "header", "body", "number"),
    "receipts": ("tx_id", "receipt", "consumed", "tx_index", "block_number"),
    "state": ("key", "value", "block_number", "tx_index"),
    "attestations": ("attestation", "block_number", "org_id"),
    "meta": ("key", "value"),
    "state_history": ("key", "value", "block_number", "tx_index"),
}

PEER = "st-mary"


@dataclass(frozen=True, slots=True)
class Mutation:
    """One changed stored value: the row it is in, the column, and the original and tampered values."""

    table: str
    row: dict[str, Any]
    column: str
    original: Any
    tampered: Any
    position: int | None = None
    """The flipped byte, for byte and text columns; None for an integer increased by one."""

    def describe(self) -> str:
        where = ", ".join(f"{k}={_short(v)}" for k, v in self.row.items() if k in TABLE_KEYS[self.table])
        if self.position is None:
            return f"{self.table}({where}).{self.column}: {self.original} + 1"
        return f"{self.table}({where}).{self.column}: byte {self.position} flipped"


def _short(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()[:24] + ("…" if len(value) > 12 else "")
    return repr(value)[:40]


def _build_data_dir(data_dir: Path) -> None:
    """A small network: two registrars, a few patients, two dozen records (one of them retired, so
    its first entry is a superseded value), one rejection, one replay."""
    network = EmbeddedNetwork.create(data_dir, clock=ManualClock(), cutter=CutterConfig(max_tx=100, time_to_cut_ms=20))
    network.start()
    try:
        mary, _ = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
        city, _ = member_client(network, "city-general", "registrar", Role.REGISTRAR)
        wallets = [PatientWallet.generate() for _ in range(4)]
        enrolments = [
            mary.send(mary.prepare("identity", "register_patient", w.enrolment_args(network.channel))) for w in wallets
        ]
        for future in enrolments:
            LedgerClient.wait(future)
        futures = []
        for index in range(24):
            client = (mary, city)[index % 2]
            args = {
                "patient": wallets[index % len(wallets)].pseudonym,
                "resource_type": "Observation",
                "clinical_date": "2025-12-31",
                "content_hash": hashlib.sha256(b"record %d" % index).digest(),
                "locator": f"vault://records/{index}",
            }
            futures.append(client.send(client.prepare("records", "register", args)))
        unknown = {**args, "patient": "0" * 32}
        rejected = mary.send(mary.prepare("records", "register", unknown))
        replayed = city.prepare("records", "register", {**args, "locator": "vault://records/replayed"})
        first, second = city.send(replayed), city.send(replayed)
        for future in [*futures, first, second]:
            LedgerClient.wait(future)
        assert not LedgerClient.wait(rejected, check=False).is_valid
        (registered,) = LedgerClient.wait(futures[0]).events
        retire = {"record_id": registered.attributes["record_id"], "reason": "entered for the wrong patient"}
        LedgerClient.wait(mary.send(mary.prepare("records", "retire", retire)))
    finally:
        network.stop()


@pytest.fixture(scope="module")
def pristine_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory built once for this module; tests work on copies of it."""
    data_dir = tmp_path_factory.mktemp("tamper") / "net"
    _build_data_dir(data_dir)
    return data_dir


@pytest.fixture
def network_copy(pristine_network: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "net"
    shutil.copytree(pristine_network, copy)
    return copy


def _flip(value: bytes | str, position: int) -> bytes | str:
    raw = value.encode() if isinstance(value, str) else value
    flipped = raw[:position] + bytes([raw[position] ^ 0x01]) + raw[position + 1 :]
    return flipped.decode() if isinstance(value, str) else flipped


def _pick(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First, middle and last rows (fewer when the table is that small)."""
    indexes = sorted({0, len(rows) // 2, len(rows) - 1})
    return [rows[i] for i in indexes]


def _mutations(db: sqlite3.Connection) -> Iterator[Mutation]:
    """Every planned single-value change: bytes flipped at the first, middle and last position, integers + 1."""
    for table, keys in TABLE_KEYS.items():
        cursor = db.execute(f"SELECT * FROM {table} ORDER BY {', '.join(keys)}")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        assert rows, f"table {table} is empty"
        for row in _pick(rows):
            for column in MUTATED_COLUMNS[table]:
                original = row[column]
                if isinstance(original, int):
                    yield Mutation(table, row, column, original, original + 1)
                    continue
                assert isinstance(original, bytes | str), (table, column, original)
                size = len(original.encode() if isinstance(original, str) else original)
                for position in sorted({0, size // 2, size - 1}):
                    yield Mutation(table, row, column, original, _flip(original, position), position)


def _write(db: sqlite3.Connection, mutation: Mutation, value: Any, current: Any) -> None:
    """Set the mutated column of the mutation's row to `value`; `current` is what the column holds now."""
    keys = TABLE_KEYS[mutation.table]
    where = " AND ".join(f"{k}=?" for k in keys)
    params = [current if k == mutation.column else mutation.row[k] for k in keys]
    cursor = db.execute(f"UPDATE {mutation.table} SET {mutation.column}=? WHERE {where}", [value, *params])
    assert cursor.rowcount == 1, f"{mutation.describe()}: {cursor.rowcount} rows updated"


def _expected_place(mutation: Mutation) -> list[str]:
    """Patterns of which the fault must match at least one: where the tampered byte is."""
    row, table = mutation.row, mutation.table
    if table == "blocks":
        return [rf"\bblock {row['number']}\b"]
    if table == "receipts":
        return [rf"\bblock {row['block_number']}\b"]
    if table == "state":
        keys = {row["key"], mutation.tampered if mutation.column == "key" else row["key"]}
        return [rf"state row {re.escape(repr(k))}" for k in keys]
    if table == "attestations":
        return [r"\battestation\b"]
    if table == "state_history":
        keys = {row["key"], mutation.tampered if mutation.column == "key" else row["key"]}
        return [rf"state history row {re.escape(repr(k))}" for k in keys]
    return [r"\bmeta\b", r"\bschema version\b"]


def test_every_single_value_change_is_caught_and_named(network_copy: Path) -> None:
    # Prepare
    peer_dir = network_copy / "peers" / PEER
    assert verify_directory(peer_dir).ok
    db = sqlite3.connect(peer_dir / "ledger.sqlite", isolation_level=None)
    mutations = list(_mutations(db))
    missed: list[str] = []
    unnamed: list[str] = []
    unrestored: list[str] = []
    crashed: list[str] = []
    skipped = 0
    # Execute
    try:
        for mutation in mutations:
            try:
                _write(db, mutation, mutation.tampered, mutation.original)
            except sqlite3.IntegrityError:
                skipped += 1  # the change would break a UNIQUE or PRIMARY KEY constraint: SQLite refuses it
                continue
            try:
                report = verify_directory(peer_dir)
            except Exception as exc:  # verify must report every fault, never raise
                crashed.append(f"{mutation.describe()}: {type(exc).__name__}: {exc}")
            else:
                if report.ok:
                    missed.append(mutation.describe())
                elif not any(re.search(p, report.fault or "") for p in _expected_place(mutation)):
                    unnamed.append(f"{mutation.describe()}: {report.fault}")
            try:
                _write(db, mutation, mutation.original, mutation.tampered)
            except (sqlite3.IntegrityError, AssertionError) as exc:
                unrestored.append(f"{mutation.describe()}: cannot restore: {exc}")
                break
            restored = verify_directory(peer_dir)
            if not restored.ok:
                unrestored.append(f"{mutation.describe()}: still failing after restore: {restored.fault}")
                break
    finally:
        db.close()
    # Assert
    problems = {
        "verify raised instead of reporting": crashed,
        "changes verify did not notice": missed,
        "faults that do not name the changed place": unnamed,
        "restoring the value did not make verify pass": unrestored,
    }
    found = [f"{title}:\n  " + "\n  ".join(lines) for title, lines in problems.items() if lines]
    if found:
        pytest.fail("\n".join(found), pytrace=False)
    assert len(mutations) >= 100
    assert skipped <= len(mutations) // 10, f"{skipped} of {len(mutations)} mutations skipped"


NOT_COMMITTED_BY_HEADERS = {("state", "tx_index"), ("state_history", "tx_index")}
"""Stored values no block header commits to: only the full replay of `medledger verify` checks them."""


def _expected_start_up_place(mutation: Mutation) -> list[str]:
    """Patterns of which the start-up fault must match one: the block the value belongs to (or the
    block a changed number points at), or the state row itself."""
    row, table = mutation.row, mutation.table
    if table == "meta":
        return [r"\bmeta\b"]
    number = row["number"] if table == "blocks" else row["block_number"]
    places = [rf"\bblock {number}\b", rf"\bblock {number + 1}\b"]
    if table in ("state", "state_history"):
        places += [rf"state (history )?row {re.escape(repr(row['key']))}"]
    return places


def test_every_single_value_change_the_headers_commit_to_is_caught_at_start_up(network_copy: Path) -> None:
    """The start-up check executes nothing, yet every stored value that a block header commits to
    (bodies, receipts and their columns, state rows, superseded values) is hashed against it."""
    # Prepare
    path = network_copy / "peers" / PEER / "ledger.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    mutations = [
        m for m in _mutations(db) if m.table != "attestations" and (m.table, m.column) not in NOT_COMMITTED_BY_HEADERS
    ]
    missed: list[str] = []
    unnamed: list[str] = []
    skipped = 0
    # Execute
    try:
        for mutation in mutations:
            try:
                _write(db, mutation, mutation.tampered, mutation.original)
            except sqlite3.IntegrityError:
                skipped += 1
                continue
            store = SQLiteLedgerStore(path, read_only=True)
            try:
                check_at_start_up(store)
            except IntegrityError as fault:
                if not any(re.search(p, str(fault)) for p in _expected_start_up_place(mutation)):
                    unnamed.append(f"{mutation.describe()}: {fault}")
            else:
                missed.append(mutation.describe())
            finally:
                store.close()
            _write(db, mutation, mutation.original, mutation.tampered)
        store = SQLiteLedgerStore(path, read_only=True)
        try:
            restored = check_at_start_up(store)
        finally:
            store.close()
    finally:
        db.close()
    # Assert
    assert missed == [], "changes start-up did not notice:\n  " + "\n  ".join(missed)
    assert unnamed == [], "faults that do not name the changed place:\n  " + "\n  ".join(unnamed)
    assert restored.superseded_rows == 2 and restored.state_rows > 0
    assert skipped <= len(mutations) // 10, f"{skipped} of {len(mutations)} mutations skipped"


def test_verify_command_fails_on_a_changed_byte_and_passes_once_restored(network_copy: Path) -> None:
    # Prepare
    runner = CliRunner()
    ledger = network_copy / "peers" / "city-general" / "ledger.sqlite"
    db = sqlite3.connect(ledger, isolation_level=None)
    try:
        number, body = db.execute("SELECT number, body FROM blocks ORDER BY number DESC LIMIT 1").fetchone()
        sound = runner.invoke(app, ["verify", str(network_copy)])
        # Execute
        db.execute("UPDATE blocks SET body=? WHERE number=?", (_flip(body, len(body) // 2), number))
        broken = runner.invoke(app, ["verify", str(network_copy)])
        db.execute("UPDATE blocks SET body=? WHERE number=?", (body, number))
        restored = runner.invoke(app, ["verify", str(network_copy)])
    finally:
        db.close()
    # Assert
    assert sound.exit_code == 0, sound.output
    assert "OK" in sound.output
    assert broken.exit_code == 1, broken.output
    assert "FAILED" in broken.output
    assert re.search(rf"city-general: block {number}\b", " ".join(broken.output.split())), broken.output
    assert restored.exit_code == 0, restored.output


def test_verify_names_block_0_when_the_genesis_configuration_is_changed(network_copy: Path) -> None:
    # Prepare
    peer_dir = network_copy / "peers" / PEER
    db = sqlite3.connect(peer_dir / "ledger.sqlite", isolation_level=None)
    (body,) = db.execute("SELECT body FROM blocks WHERE number=0").fetchone()
    position = body.index(b"orgs")  # the genesis map key naming the founding organisations
    # Execute
    db.execute("UPDATE blocks SET body=? WHERE number=0", (_flip(body, position),))
    try:
        report = verify_directory(peer_dir)
        command = CliRunner().invoke(app, ["verify", str(peer_dir)])
    finally:
        db.execute("UPDATE blocks SET body=? WHERE number=0", (body,))
        db.close()
    # Assert
    assert not report.ok
    assert re.search(r"\bblock 0\b", report.fault or ""), report.fault
    assert isinstance(command.exception, SystemExit) and command.exit_code == 1, command.exception
    assert verify_directory(peer_dir).ok


def test_verify_leaves_the_ledger_it_checks_unchanged(network_copy: Path) -> None:
    # Prepare
    peer_dir = network_copy / "peers" / PEER
    db = sqlite3.connect(peer_dir / "ledger.sqlite", isolation_level=None)
    db.execute("UPDATE meta SET key='rchema_version' WHERE key='schema_version'")
    before = db.execute("SELECT * FROM meta ORDER BY key").fetchall()
    # Execute
    report = verify_directory(peer_dir)
    after = db.execute("SELECT * FROM meta ORDER BY key").fetchall()
    db.close()
    # Assert
    assert not report.ok
    assert after == before, "verify wrote to the ledger it was checking"
