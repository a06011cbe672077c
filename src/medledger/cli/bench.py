"""`medledger bench`: run the benchmark harness with progress bars, print its table, and write the
JSON and the plot when asked. Registered in cli/main.py as a command; the work is in medledger.bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from medledger.cli.output import console

if TYPE_CHECKING:
    from medledger.bench import BenchReport


def bench(
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the figures as JSON to this file.", dir_okay=False)
    ] = None,
    plot_path: Annotated[
        Path | None, typer.Option("--plot", help="Draw TPS and latency against load to this PNG.", dir_okay=False)
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A reduced run (under 2 minutes), same figures.")] = False,
    work_dir: Annotated[
        Path | None, typer.Option("--work-dir", help="Where the scratch ledgers go (default: the system's temp).")
    ] = None,
    from_json: Annotated[
        Path | None,
        typer.Option(
            "--from-json",
            help="Measure nothing: show the table and targets of a run saved with --json (and --plot it again).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Measure the Ed25519 baseline, one peer's commit path, the embedded and replicated networks
    and ledger growth; print each figure beside the baseline of the same run."""
    from medledger.bench import BenchConfig, BenchReport, run_bench
    from medledger.bench.report import ReportFormatError

    for path, option in ((json_path, "--json"), (plot_path, "--plot")):
        if path is not None and not path.parent.is_dir():
            raise typer.BadParameter(f"{path.parent} is not a directory", param_hint=option)
    if from_json is not None:
        try:
            saved = BenchReport.from_json(json.loads(from_json.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ReportFormatError) as exc:
            raise typer.BadParameter(f"cannot read {from_json}: {exc}", param_hint="--from-json") from exc
        saved.render(console)
        _write(saved, json_path, plot_path)
        return
    if work_dir is not None:
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"cannot use {work_dir} for the scratch ledgers: {exc}"
            raise typer.BadParameter(message, param_hint="--work-dir") from exc
    config = BenchConfig.quick_run() if quick else BenchConfig.full()
    console.print(
        f"[bold]medledger bench[/]{' --quick' if quick else ''}: every figure is compared with this run's baseline"
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bars:
        tasks: dict[str, TaskID] = {}

        def advance(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bars.add_task(phase, total=total)
            bars.update(tasks[phase], completed=done, total=total)

        result = run_bench(config, work_dir=work_dir, progress=advance)
    result.render(console)
    _write(result, json_path, plot_path)


def _write(result: BenchReport, json_path: Path | None, plot_path: Path | None) -> None:
    if json_path is not None:
        json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        console.print(f"figures written to [cyan]{json_path}[/]")
    if plot_path is not None:
        result.plot(plot_path)
        console.print(f"plot written to [cyan]{plot_path}[/]")
