"""Entry point of the `medledger` command. Each command decodes its arguments, calls the node or
SDK, and renders the result; errors are printed as one clear line, never as a traceback."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from medledger.core.errors import MedledgerError

app = typer.Typer(
    name="medledger",
    help="medledger: a consortium ledger for safe medical data sharing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the network keeps its data.")] = Path("demo-data"),
    records: Annotated[int, typer.Option("--records", min=1, max=1_000_000, help="Records to register.")] = 1000,
    fresh: Annotated[bool, typer.Option("--fresh", help="Wipe DATA_DIR's network first.")] = False,
) -> None:
    """Run the embedded 5-organisation network: enrol members and patients, register records, report."""
    from medledger.cli.demo import run_demo

    run_demo(console, data_dir, records, fresh)


@app.command()
def verify(
    data_dir: Annotated[Path, typer.Argument(help="A network data directory, or one peer's directory.")],
) -> None:
    """Re-check a data directory end to end; exit 1 and name the first broken place if unsound."""
    from medledger.cli.verify import run_verify

    raise typer.Exit(run_verify(console, data_dir))


@app.command()
def version() -> None:
    """Print the medledger version."""
    from medledger import __version__

    console.print(__version__)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except MedledgerError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
