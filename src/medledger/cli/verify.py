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
    if report.vaults:
        vaults = Table(title="vaults")
        for column in ("vault", "objects", "MB hashed", "records", "unregistered", "unreferenced blobs", "result"):
            vaults.add_column(column)
        for org_id, vault in report.vaults.items():
            vaults.add_row(
                org_id,
                str(vault.objects),
                f"{vault.bytes / 1e6:.1f}",
                str(vault.records),
                str(len(vault.unregistered_objects)),
                str(len(vault.unreferenced_blobs)),
                "[green]sound[/]" if vault.ok else "[red]BROKEN[/]",
            )
        console.print(vaults)
    if report.ok:
        console.print(
            f"[green]OK[/]: {len(report.peers)} ledger(s) verified: every block hash, link, signature, "
            "receipt, Merkle root, state row and attestation checks out, and the peers agree."
        )
        if report.vaults:
            console.print(
                f"[green]OK[/]: {len(report.vaults)} vault(s) verified: every stored ciphertext matches its hash, "
                "and every record on the ledger finds its object with the hashes it registered."
            )
        return 0
    console.print(f"[bold red]FAILED[/]: {report.fault}")
    return 1
