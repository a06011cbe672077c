"""`medledger network up|status|down` and `medledger node run`: the network as processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medledger.cli.output import console
from medledger.node.deployment import ProcessNetwork
from medledger.node.network import NETWORK_FILE

network_app = typer.Typer(
    help="Run the network as processes: a 3-node etcd cluster and one peer per organisation.", no_args_is_help=True
)
node_app = typer.Typer(help="One organisation's peer process (started by `network up`).", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="The network's data directory.")]
DEFAULT_DIR = Path("network-data")


@network_app.command("up")
def network_up(
    data_dir: DataDir = DEFAULT_DIR,
    orderer: Annotated[str, typer.Option("--orderer", help="etcd (Raft, replicated).")] = "etcd",
    orgs: Annotated[int, typer.Option("--orgs", min=3, max=32, help="Organisations, for a new network.")] = 5,
    peer_port_base: Annotated[int, typer.Option("--peer-port-base", min=1024, max=60000)] = 8700,
    etcd_port_base: Annotated[int, typer.Option("--etcd-port-base", min=1024, max=32000)] = 23790,
) -> None:
    """Create the network in DATA_DIR if needed, then start etcd and every peer process."""
    if not (data_dir / NETWORK_FILE).exists():
        ProcessNetwork.create(
            data_dir,
            orgs,
            orderer=orderer,
            etcd_client_base=etcd_port_base,
            etcd_peer_base=etcd_port_base + 10,
            peer_port_base=peer_port_base,
        )
    network = ProcessNetwork(data_dir)
    with console.status("starting etcd and the peers..."):
        network.up()
    _print_status(network)


@network_app.command("status")
def network_status(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Each peer's height, state root and lag, and the etcd leader."""
    _print_status(ProcessNetwork(data_dir))


def _print_status(network: ProcessNetwork) -> None:
    peers, etcd = network.status()
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
    if etcd.get("running"):
        leader = etcd.get("leader")
        console.print(
            f"etcd: leader is member {leader} of {len(etcd.get('endpoints', []))}"
            if leader is not None
            else f"etcd: [red]{etcd.get('error')}[/]"
        )
    else:
        console.print("etcd: not running")


@network_app.command("down")
def network_down(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Stop the peers, then the etcd followers, then the leader."""
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
