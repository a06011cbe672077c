"""`medledger verify DIR`: render a DirectoryReport."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from medledger.node.verification import verify_directory


def run_verify(console: Console, data_dir: Path) -> int:
    with Progress(console=console, transient=True) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(peer: str, done: int, total: int) -> None:
            if peer not in tasks:
                tasks[peer] = progress.add_task(f"verifying {peer}", total=total)
            progress.update(tasks[peer], completed=done)

        report = verify_directory(data_dir, advance)
    if report.peers:
        table = Table(title=f"medledger verify {data_dir}")
        for column in ("peer", "blocks", "transactions", "valid", "state rows", "attestations", "state root", "result"):
            table.add_column(column)
        for name, peer in report.peers.items():
            table.add_row(
                name,
                str(peer.blocks),
                str(peer.transactions),
                str(peer.valid_transactions),
                str(peer.state_rows),
                str(peer.attestations),
                (peer.state_root or b"").hex()[:16],
                "[green]sound[/]" if peer.ok else "[red]BROKEN[/]",
            )
        console.print(table)
    if report.ok:
        console.print(
            f"[green]OK[/]: {len(report.peers)} ledger(s) verified: every block hash, link, signature, "
            "receipt, Merkle root, state row and attestation checks out, and the peers agree."
        )
        return 0
    console.print(f"[bold red]FAILED[/]: {report.fault}")
    return 1
