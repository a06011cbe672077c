"""Verification of a data directory: each peer's ledger end to end, agreement between peers, then
each organisation's vault.

A directory is either a network (network.json, peers/<org>/ledger.sqlite and vaults/<org>/) or a
single peer directory holding ledger.sqlite. A vault is scrubbed (every stored ciphertext against
the hash its row records), then its rows are compared with the record index on the ledger: every
record entry that points into the vault must find its object there, with the ciphertext and
plaintext hashes the ledger registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medledger.contracts.default import default_registry
from medledger.contracts.identity import IdentityResolver
from medledger.contracts.records.contract import CURRENT, record_key
from medledger.core.encoding import decode_unchecked
from medledger.core.errors import MedledgerError
from medledger.ledger.errors import IntegrityError, StoreError
from medledger.ledger.integrity import VerificationReport, verify_ledger
from medledger.ledger.sqlite_store import SQLiteLedgerStore
from medledger.node.network import NETWORK_FILE
from medledger.vault import LocatorError, parse_locator, scrub
from medledger.vault.sqlite_backend import DATABASE_NAME, SQLiteVaultBackend

LEDGER_FILE = "ledger.sqlite"
VAULTS_DIRECTORY = "vaults"

Progress = Callable[[str, int, int], None]
"""Called with (what is being verified, steps done, steps in all)."""


@dataclass
class VaultReport:
    """What verifying one organisation's vault found."""

    org_id: str
    """The organisation running the vault."""
    objects: int = 0
    """Objects whose ciphertext was hashed."""
    bytes: int = 0
    """Ciphertext bytes hashed."""
    records: int = 0
    """Record entries on the ledger that point into this vault, each checked against it."""
    unregistered_objects: list[str] = field(default_factory=list)
    """Objects no record entry points at (stored, but never registered on the ledger)."""
    removed_objects: list[str] = field(default_factory=list)
    """Objects of superseded or retired records that the vault no longer holds (deleted)."""
    unreferenced_blobs: list[str] = field(default_factory=list)
    """Out-of-row ciphertexts no row points at (left by an interrupted store; never served)."""
    fault: str | None = None
    """The first broken object, named; None when the vault is sound."""

    @property
    def ok(self) -> bool:
        return self.fault is None


@dataclass
class DirectoryReport:
    """The outcome of verifying every ledger in a directory."""

    root: Path
    peers: dict[str, VerificationReport] = field(default_factory=dict)
    vaults: dict[str, VaultReport] = field(default_factory=dict)
    fault: str | None = None
    """The first fault, with the peer or vault it is in; None when everything is sound."""

    @property
    def ok(self) -> bool:
        return self.fault is None


def ledger_paths(root: Path) -> dict[str, Path]:
    """Peer name -> ledger file for a network or single-peer directory."""
    root = Path(root)
    if (root / LEDGER_FILE).is_file():
        return {root.name: root / LEDGER_FILE}
    if (root / NETWORK_FILE).is_file():
        peers_dir = root / "peers"
        found = sorted(peers_dir.glob(f"*/{LEDGER_FILE}")) if peers_dir.is_dir() else []
        return {path.parent.name: path for path in found}
    return {}


def vault_paths(root: Path) -> dict[str, Path]:
    """Organisation -> vault directory, for the vaults of a network directory."""
    vaults_dir = Path(root) / VAULTS_DIRECTORY
    if not (Path(root) / NETWORK_FILE).is_file() or not vaults_dir.is_dir():
        return {}
    return {path.parent.name: path.parent for path in sorted(vaults_dir.glob(f"*/{DATABASE_NAME}"))}


def verify_directory(root: Path, progress: Progress | None = None) -> DirectoryReport:
    """Verify each ledger under `root`, check that all peers agree on the chain they share, then
    verify each vault against its own hashes and the ledger's record index."""
    report = DirectoryReport(Path(root))
    paths = ledger_paths(root)
    if not paths:
        report.fault = f"{root}: no medledger ledger here (expected {NETWORK_FILE} with peers/, or {LEDGER_FILE})"
        return report
    for name, path in paths.items():
        try:
            store = SQLiteLedgerStore(path, read_only=True)
        except StoreError as exc:
            report.fault = f"peer {name}: {exc}"
            return report
        try:
            callback = None if progress is None else (lambda done, total, n=name: progress(n, done, total))
            peer_report = verify_ledger(store, default_registry(), IdentityResolver(), callback)
        finally:
            store.close()
        report.peers[name] = peer_report
        if peer_report.fault is not None:
            report.fault = f"peer {name}: {peer_report.fault}"
            return report
    report.fault = _disagreement(report.peers)
    if report.fault is None:
        _verify_vaults(report, paths, progress)
    return report


def _verify_vaults(report: DirectoryReport, ledgers: dict[str, Path], progress: Progress | None) -> None:
    # The vault's own organisation's ledger, else the tallest: verified ledgers agree on what they share.
    tallest = max(report.peers, key=lambda name: report.peers[name].blocks)
    for org_id, directory in vault_paths(report.root).items():
        ledger = ledgers[org_id if org_id in ledgers else tallest]
        callback = None if progress is None else (lambda done, total, o=org_id: progress(f"vault {o}", done, total))
        vault_report = verify_vault(org_id, directory, ledger, callback)
        report.vaults[org_id] = vault_report
        if vault_report.fault is not None:
            report.fault = f"vault {org_id}: {vault_report.fault}"
            return


def verify_vault(
    org_id: str, directory: Path, ledger: Path, progress: Callable[[int, int], None] | None = None
) -> VaultReport:
    """Scrub the vault in `directory`, then check it against the record entries of the (verified)
    ledger at `ledger`; never raises for bad data, reports the first fault instead."""
    report = VaultReport(org_id)
    try:
        entries = _record_entries(ledger)
        backend = SQLiteVaultBackend(directory, read_only=True)
    except MedledgerError as exc:
        report.fault = str(exc)
        return report
    try:
        scrubbed = scrub(backend, progress)
        report.objects, report.bytes = scrubbed.objects, scrubbed.bytes
        report.unreferenced_blobs = scrubbed.unreferenced_blobs
        if scrubbed.faults:
            more = len(scrubbed.faults) - 1
            report.fault = str(scrubbed.faults[0]) + (f" (and {more} more broken object(s))" if more else "")
            return report
        _compare_with_ledger(backend, entries, report)
    except MedledgerError as exc:
        report.fault = str(exc)
    finally:
        backend.close()
    return report


def _record_entries(ledger: Path) -> list[dict[str, Any]]:
    store = SQLiteLedgerStore(ledger, read_only=True)
    try:
        return [decode_unchecked(value) for _, value in store.scan_state(record_key(""))]
    finally:
        store.close()


def _compare_with_ledger(backend: SQLiteVaultBackend, entries: list[dict[str, Any]], report: VaultReport) -> None:
    held = set(backend.list_ids())
    pointed_at: set[str] = set()
    for entry in entries:
        try:
            locator = parse_locator(entry["locator"])
        except LocatorError:
            continue  # not a record kept in a vault
        if locator.org_id != report.org_id:
            continue
        report.records += 1
        object_id = locator.object_id
        pointed_at.add(object_id)
        where = f"object {object_id} (record {entry['record_id']}, {entry['status']})"
        if object_id not in held:
            if entry["status"] == CURRENT:
                report.fault = f"{where}: is missing from the vault"
                return
            report.removed_objects.append(object_id)
            continue
        stored = backend.get(object_id)
        registered = entry["ciphertext_hash"]
        if registered is not None and stored.ciphertext_hash != registered:
            report.fault = (
                f"{where}: ciphertext hash {stored.ciphertext_hash.hex()} in the vault, "
                f"{registered.hex()} registered on the ledger"
            )
            return
        if stored.content_hash != entry["content_hash"]:
            report.fault = (
                f"{where}: plaintext hash {stored.content_hash.hex()} in the vault, "
                f"{entry['content_hash'].hex()} registered on the ledger"
            )
            return
    report.unregistered_objects = sorted(held - pointed_at)


def _disagreement(peers: dict[str, VerificationReport]) -> str | None:
    """Peers may be at different heights, but the blocks they share must be the same."""
    reports = list(peers.items())
    genesis = {r.genesis_hash for _, r in reports}
    if len(genesis) > 1:
        return "peers do not share a genesis block: they belong to different networks"
    tallest_name, tallest = max(reports, key=lambda item: item[1].blocks)
    for name, peer in reports:
        if peer.blocks == tallest.blocks and peer.last_hash != tallest.last_hash:
            return str(IntegrityError(f"peer {name} block {peer.blocks - 1}", f"differs from peer {tallest_name}'s"))
    return None
