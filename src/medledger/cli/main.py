"""Entry point of the `medledger` command. Each command decodes its arguments, calls the node or
SDK, and renders the result; errors are printed as one clear line, never as a traceback."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from medledger.cli.bench import bench
from medledger.cli.network import network_app, node_app, orderer_app
from medledger.cli.output import console, errors
from medledger.cli.sharing import access_app, audit_app, consent_app, patient_app, record_app
from medledger.core.errors import MedledgerError

app = typer.Typer(
    name="medledger",
    help="medledger: a consortium ledger for safe medical data sharing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


app.command()(bench)
app.add_typer(patient_app, name="patient")
app.add_typer(record_app, name="record")
app.add_typer(consent_app, name="consent")
app.add_typer(access_app, name="access")
app.add_typer(audit_app, name="audit")
app.add_typer(network_app, name="network")
app.add_typer(node_app, name="node")
app.add_typer(orderer_app, name="orderer")


@app.command()
def serve(
    org: Annotated[str, typer.Option("--org", help="Whose node to serve, e.g. st-mary.")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The network's data directory.")] = Path("demo-data"),
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8700,
) -> None:
    """Run the embedded network and serve ORG's node REST API (OpenAPI at /docs) until interrupted."""
    import uvicorn

    from medledger.api import create_app
    from medledger.node.network import EmbeddedNetwork
    from medledger.node.service import LedgerService

    with EmbeddedNetwork(data_dir) as network:
        spec = network.org(org)
        assert network.orderer is not None
        vault = network.vault_service(org) if spec.kind.value == "hospital" else None
        service = LedgerService(network.peers[org], network.orderer, network.clock, vault)
        console.print(f"serving {org}'s node on http://{host}:{port} (OpenAPI: /docs); Ctrl-C stops")
        uvicorn.run(create_app(service), host=host, port=port, log_level="warning")


@app.command()
def version() -> None:
    """Print the medledger version."""
    from medledger import __version__

    console.print(__version__)


LOG_LEVEL_VARIABLE = "MEDLEDGER_LOG_LEVEL"
"""Environment variable naming the log level (debug, info, warning, error; default warning). A deployment's
processes inherit it: `MEDLEDGER_LOG_LEVEL=info medledger network up ...` logs each peer's ordering and
catch-up steps to logs/<org>.log."""
LOG_LEVELS = ("debug", "info", "warning", "error")


def configure_logging() -> None:
    """Log at the level MEDLEDGER_LOG_LEVEL names, each line with its time; refuse a level not known."""
    name = os.environ.get(LOG_LEVEL_VARIABLE, "warning").strip().lower()
    if name not in LOG_LEVELS:
        errors.print(f"[bold red]error:[/] {LOG_LEVEL_VARIABLE}={name!r} is not one of {', '.join(LOG_LEVELS)}")
        sys.exit(2)
    logging.basicConfig(level=name.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def main() -> None:
    configure_logging()
    try:
        app()
    except MedledgerError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except OSError as exc:  # a full disk, a missing or unwritable path: one line, never a traceback
        errors.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
