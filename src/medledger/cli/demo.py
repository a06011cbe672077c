"""`medledger demo`: run the foundation scenario with progress bars and print its summary."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from medledger.cli.sharing import render_trail
from medledger.demo import DemoSummary, run_foundation_scenario
from medledger.demo.sharing import SharingSummary


def run_demo(console: Console, data_dir: Path, records: int, fresh: bool) -> None:
    console.print(f"[bold]medledger demo[/]: embedded network in [cyan]{data_dir}[/], {records} records")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bars:
        tasks: dict[str, TaskID] = {}

        def advance(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bars.add_task(phase, total=total)
            bars.update(tasks[phase], completed=done, total=total)

        summary = run_foundation_scenario(data_dir, records, fresh=fresh, progress=advance)
    render_summary(console, summary)


def render_summary(console: Console, summary: DemoSummary) -> None:
    orgs = Table(title="organisations")
    for column in ("organisation", "kind", "name", "height", "state root", "diverged peers seen"):
        orgs.add_column(column)
    by_org = {s.org_id: s for s in summary.statuses}
    for org_id, kind, name in summary.organisations:
        status = by_org[org_id]
        orgs.add_row(
            org_id, kind, name, str(status.height), status.state_root.hex()[:16], ", ".join(status.diverged) or "none"
        )
    console.print(orgs)
    facts = Table(title="summary", show_header=False)
    facts.add_column("what")
    facts.add_column("value")
    facts.add_row("organisations", str(len(summary.organisations)))
    facts.add_row("members enrolled (this run)", str(summary.members_enrolled))
    facts.add_row("patients enrolled (this run)", str(summary.patients_enrolled))
    facts.add_row("records registered", f"{summary.records_registered} ({summary.records_rejected} rejected)")
    facts.add_row("blocks", str(summary.blocks))
    facts.add_row("transactions", str(summary.transactions))
    facts.add_row("committed per second (records)", f"{summary.committed_per_second:,.0f}")
    agree = "[green]yes[/]" if summary.peers_agree else "[red]NO[/]"
    facts.add_row("all peers hold the same state root", agree)
    facts.add_row("inclusion proof", summary.proof_checked)
    data_dir = summary.data_dir
    facts.add_row("data", f"{data_dir}/peers/<org>/ledger.sqlite (one ledger per organisation)")
    facts.add_row("keys", f"{data_dir}/keys/<org>/ (CA, admin, peer and staff keys)")
    facts.add_row("orderer log", f"{data_dir}/orderer/orderer.sqlite")
    facts.add_row("check it", f"medledger verify {data_dir}")
    console.print(facts)
    if summary.sharing is not None:
        render_sharing(console, summary.sharing)


def render_sharing(console: Console, sharing: SharingSummary) -> None:
    steps = Table(title=f"record sharing for patient {sharing.patient}")
    for column in ("who", "what", "outcome", "reason"):
        steps.add_column(column)
    for step in sharing.steps:
        colour = "green" if step.outcome.startswith(("ok", "permit", "verified")) else "red"
        steps.add_row(step.who, step.what, f"[{colour}]{step.outcome}[/]", step.reason)
    console.print(steps)
    console.print(render_trail(sharing.trail, f"the patient's audit trail ({len(sharing.trail)} entries)"))
