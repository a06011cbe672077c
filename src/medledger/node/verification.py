"""Verification of a data directory: each peer's ledger end to end, then agreement between peers.

A directory is either a network (network.json and peers/<org>/ledger.sqlite) or a single
peer directory holding ledger.sqlite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medledger.contracts.default import default_registry
from medledger.contracts.identity import IdentityResolver
from medledger.ledger.errors import IntegrityError, StoreError
from medledger.ledger.integrity import VerificationReport, verify_ledger
from medledger.ledger.sqlite_store import SQLiteLedgerStore
from medledger.node.network import NETWORK_FILE

LEDGER_FILE = "ledger.sqlite"


@dataclass
class DirectoryReport:
    """The outcome of verifying every ledger in a directory."""

    root: Path
    peers: dict[str, VerificationReport] = field(default_factory=dict)
    fault: str | None = None
    """The first fault, with the peer it is in; None when everything is sound."""

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


def verify_directory(root: Path, progress: Callable[[str, int, int], None] | None = None) -> DirectoryReport:
    """Verify each ledger under `root`, then check that all peers agree on the chain they share."""
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
    return report


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
