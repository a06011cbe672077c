"""`medledger network up|status|down`, `medledger node run` and `medledger orderer run`: the network
as processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medledger.cli.output import console
from medledger.node.deployment import ProcessNetwork

network_app = typer.Typer(
    help="Run the network as processes: the orderer (a 3-node etcd cluster, or one solo orderer process) and one "
    "peer per organisation.",
    no_args_is_help=True,
)
node_app = typer.Typer(help="One organisation's peer process (started by `network up`).", no_args_is_help=True)
orderer_app = typer.Typer(
    help="The solo orderer process (started by `network up --orderer solo`).", no_args_is_help=True
)

DataDir = Annotated[Path, typer.Option("--data-dir", help="The network's data directory.")]
DEFAULT_DIR = Path("network-data")


@network_app.command("up")
def network_up(
    data_dir: DataDir = DEFAULT_DIR,
    orderer: Annotated[
        str | None,
        typer.Option(
            "--orderer",
            help="etcd (Raft, replicated) or solo (one orderer process); a new network defaults to etcd, an "
            "existing one runs on the orderer it was created with.",
        ),
    ] = None,
    orgs: Annotated[int, typer.Option("--orgs", min=3, max=32, help="Organisations, for a new network.")] = 5,
    peer_port_base: Annotated[
        int, typer.Option("--peer-port-base", min=1024, max=60000, help="Peers serve on BASE+1, BASE+2, ...")
    ] = 8700,
    orderer_port: Annotated[
        int | None,
        typer.Option("--orderer-port", min=1024, max=65535, help="The solo orderer's port (default: the peer base)."),
    ] = None,
    etcd_port_base: Annotated[int, typer.Option("--etcd-port-base", min=1024, max=32000)] = 23790,
) -> None:
    """Create the network in DATA_DIR if needed, then start the orderer and every peer process."""
    network = ProcessNetwork.open_or_create(
        data_dir,
        orderer,
        org_count=orgs,
        etcd_client_base=etcd_port_base,
        etcd_peer_base=etcd_port_base + 10,
        peer_port_base=peer_port_base,
        orderer_port=orderer_port,
    )
    with console.status(f"starting the {network.deployment.orderer} orderer and the peers..."):
        network.up()
    _print_status(network)


@network_app.command("status")
def network_status(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Each peer's height, state root and lag, and the orderer: the solo process or the etcd leader."""
    _print_status(ProcessNetwork(data_dir))


def _print_status(network: ProcessNetwork) -> None:
    peers, orderer = network.status()
    top = max((p.height or 0 for p in peers), default=0)
    table = Table(title=f"network {network.data_dir}")
    for column in ("organisation", "pid", "url", "height", "lag", "state root", "state"):
        table.add_column(column)
    for peer in peers:
        state = "[green]serving[/]" if peer.height is not None else f"[red]down[/] {peer.error or ''}"
        table.add_row(
            peer.org_id,
            str(peer.pid or "-"),
            peer.url,
            str(peer.height or "-"),
            "-" if peer.height is None else str(top - peer.height),
            (peer.state_root or "-")[:16],
            state,
        )
    console.print(table)
    console.print(_orderer_line(orderer))


def _orderer_line(orderer: dict[str, Any]) -> str:
    if orderer.get("orderer") == "solo":
        where = f"solo orderer at {orderer['url']}"
        if "height" in orderer:
            return f"{where}: [green]ordering[/], pid {orderer.get('pid') or '-'}, next batch {orderer['height']}"
        state = "running but not answering" if orderer.get("running") else "not running"
        return f"{where}: [red]{state}[/] ({orderer.get('error')})"
    if not orderer.get("running"):
        return "etcd: not running"
    leader = orderer.get("leader")
    if leader is None:
        return f"etcd: [red]{orderer.get('error')}[/]"
    return f"etcd: leader is member {leader} of {len(orderer.get('endpoints', []))}"


@network_app.command("down")
def network_down(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Stop the peers, then the orderer (for etcd: the followers, then the leader)."""
    ProcessNetwork(data_dir).down()
    console.print("network stopped")


@node_app.command("run")
def node_run(
    data_dir: DataDir = DEFAULT_DIR,
    org: Annotated[str, typer.Option("--org", help="The organisation whose peer this is.")] = "",
) -> None:
    """Run one peer in the foreground until SIGTERM."""
    from medledger.node.process import PeerProcess

    PeerProcess(data_dir, org).run()


@orderer_app.command("run")
def orderer_run(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Run the network's solo orderer in the foreground until SIGTERM (port and cutter from network.json)."""
    from medledger.node.process import OrdererProcess

    OrdererProcess(data_dir).run()
