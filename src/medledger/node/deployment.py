"""A network run as processes on this machine: the orderer (a 3-node etcd cluster, or one solo
orderer process) and one peer process per organisation, started by `medledger network up`,
watched by `status`, stopped by `down`.

The data directory records everything needed to find them again: network.json holds the
ports (its `deployment` section), processes.json the running processes' pids, etcd/ the
cluster's data and state, orderer/ the solo orderer's batch log and attestation relay. Nothing
is installed by hand: the etcd binary comes with the project's set-up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from medledger.core.errors import MedledgerError
from medledger.core.identity import OrgKind
from medledger.node.network import DEFAULT_ORGANISATIONS, NETWORK_FILE, EmbeddedNetwork, OrgSpec
from medledger.node.process import ORDERERS, Deployment, DeploymentError
from medledger.ordering.cutter import CutterConfig
from medledger.ordering.etcd_cluster import EtcdCluster, port_is_free

__all__ = ["Deployment", "DeploymentError", "PeerProcessStatus", "ProcessNetwork", "organisations"]

PROCESSES_FILE = "processes.json"
CLUSTER_STATE = "etcd/cluster.json"
ORDERER_PROCESS = "orderer"
"""The solo orderer's entry in processes.json (beside the organisations' ids, which it never is)."""


def organisations(count: int) -> list[OrgSpec]:
    """The default five, then more hospitals."""
    if count < 3:
        raise DeploymentError("a network needs at least 3 organisations")
    orgs = list(DEFAULT_ORGANISATIONS[:count])
    orgs += [OrgSpec(f"hospital-{i}", OrgKind.HOSPITAL, f"Hospital {i}") for i in range(len(orgs) + 1, count + 1)]
    return orgs


DEPLOYED_CUTTER = CutterConfig(max_tx=500, time_to_cut_ms=200)
"""Batches of the process deployment: cut at 500 transactions or 200 ms after the first one arrived.
Every block costs each peer process a fixed amount (an etcd read and watch, an fsynced SQLite commit,
a signed attestation written through Raft) whatever its size, so on shared cores fewer, larger blocks
carry more transactions: on this project's 2-core benchmark machine, with 50 ms the deployment kept
up with 150 tx/s but not 200 (p99 1.6 s); with 200 ms, 200 tx/s at p99 563 ms and 250 at p99 1.35 s.
(Fabric's default batch timeout is 2 s.)"""


@dataclass(frozen=True, slots=True)
class PeerProcessStatus:
    """What `network status` shows for one peer."""

    org_id: str
    pid: int | None
    alive: bool
    height: int | None
    state_root: str | None
    url: str
    error: str | None = None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a dead child of ours is a zombie until reaped, and still answers kill(0)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


class ProcessNetwork:
    """The process deployment of a network data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.deployment = Deployment.load(self.data_dir)

    @classmethod
    def create(
        cls,
        data_dir: Path,
        org_count: int = 5,
        *,
        orderer: str = "etcd",
        etcd_client_base: int = 23790,
        etcd_peer_base: int = 23800,
        peer_port_base: int = 8700,
        orderer_port: int | None = None,
        cutter: CutterConfig | None = None,
    ) -> ProcessNetwork:
        """A new network in `data_dir`: peers on ports peer_port_base + 1, + 2, ...; the solo orderer on
        `orderer_port` (default: peer_port_base itself); etcd members on the etcd bases + 1, + 2, + 3."""
        if orderer not in ORDERERS:
            raise DeploymentError(f"unknown orderer {orderer!r}: choose one of {', '.join(ORDERERS)}")
        orgs = organisations(org_count)
        peer_ports = {org.org_id: peer_port_base + i for i, org in enumerate(orgs, 1)}
        if orderer == "solo":
            orderer_port = peer_port_base if orderer_port is None else orderer_port
            if orderer_port in peer_ports.values():
                raise DeploymentError(
                    f"orderer port {orderer_port} is also a peer's port ({min(peer_ports.values())}.."
                    f"{max(peer_ports.values())}); choose another orderer port or peer port base"
                )
            deployment = Deployment(orderer, (), (), peer_ports, orderer_port=orderer_port)
        else:
            deployment = Deployment(
                orderer,
                tuple(etcd_client_base + i for i in range(1, 4)),
                tuple(etcd_peer_base + i for i in range(1, 4)),
                peer_ports,
            )
        EmbeddedNetwork.create(data_dir, orgs, cutter=cutter or DEPLOYED_CUTTER)
        config = json.loads((Path(data_dir) / NETWORK_FILE).read_text())
        config["deployment"] = deployment.to_dict()
        (Path(data_dir) / NETWORK_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return cls(data_dir)

    @classmethod
    def open_or_create(cls, data_dir: Path, orderer: str | None = None, **create_args: Any) -> ProcessNetwork:
        """The network in `data_dir`, created first (on `orderer`, default etcd) if the directory holds none;
        DeploymentError if it exists but runs on another orderer than the one asked for."""
        if not (Path(data_dir) / NETWORK_FILE).exists():
            return cls.create(data_dir, orderer=orderer or "etcd", **create_args)
        network = cls(data_dir)
        if orderer is not None and orderer != network.deployment.orderer:
            raise DeploymentError(
                f"{data_dir} holds a network on the {network.deployment.orderer} orderer, not {orderer}; leave out "
                "--orderer to start it, or choose another --data-dir for a new network"
            )
        return network

    # the etcd cluster ---------------------------------------------------------------------------
    def cluster(self) -> EtcdCluster:
        d = self.deployment
        return EtcdCluster(
            self.data_dir / "etcd",
            size=len(d.etcd_client_ports),
            client_port_base=d.etcd_client_ports[0] - 1,
            peer_port_base=d.etcd_peer_ports[0] - 1,
        )

    def _attached_cluster(self) -> EtcdCluster | None:
        state = self.data_dir / CLUSTER_STATE
        return EtcdCluster.attach(state) if state.exists() else None

    # processes ------------------------------------------------------------------------------------
    def _pids(self) -> dict[str, int]:
        path = self.data_dir / PROCESSES_FILE
        return {k: int(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}

    def _save_pids(self, pids: dict[str, int]) -> None:
        (self.data_dir / PROCESSES_FILE).write_text(json.dumps(pids, indent=2) + "\n")

    def _peer_pids(self) -> dict[str, int]:
        return {name: pid for name, pid in self._pids().items() if name != ORDERER_PROCESS}

    def _spawn(self, name: str, command: list[str]) -> int:
        """Start `medledger <command>` in its own session, logging to logs/<name>.log; record its pid."""
        log_dir = self.data_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        with open(log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "medledger.cli.main", *command, "--data-dir", str(self.data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        pids = self._pids()
        pids[name] = process.pid
        self._save_pids(pids)
        return process.pid

    def _log_tail(self, name: str) -> str:
        """The last line of a process's log, to name why it stopped."""
        path = self.data_dir / "logs" / f"{name}.log"
        try:
            lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        return f"{lines[-1].strip()} (see {path})" if lines else f"see {path}"

    @staticmethod
    def _stop(pids: list[int], timeout: float) -> None:
        """SIGTERM each process, then SIGKILL whichever still runs after `timeout`."""
        pids = [pid for pid in pids if _alive(pid)]
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    # the solo orderer -------------------------------------------------------------------------------
    def start_orderer(self) -> int:
        """Start (or restart) the solo orderer process; returns its pid."""
        if self.deployment.orderer != "solo":
            raise DeploymentError(f"{self.data_dir} runs on {self.deployment.orderer}, not on a solo orderer process")
        port = self.deployment.orderer_port
        assert port is not None  # Deployment checks it for solo
        if not port_is_free(port, self.deployment.host):
            raise DeploymentError(
                f"the orderer's port {port} on {self.deployment.host} is taken by another program; stop it, or "
                "create the network with another --orderer-port"
            )
        return self._spawn(ORDERER_PROCESS, ["orderer", "run"])

    def kill_orderer(self, sig: int = signal.SIGKILL) -> None:
        pid = self._pids().get(ORDERER_PROCESS)
        if pid is not None and _alive(pid):
            os.kill(pid, sig)

    def orderer_status(self) -> dict[str, Any]:
        """Where the solo orderer serves, whether it runs, and its height (or why it cannot be read)."""
        pid = self._pids().get(ORDERER_PROCESS)
        status: dict[str, Any] = {
            "orderer": "solo",
            "url": self.deployment.orderer_url,
            "pid": pid,
            "running": _alive(pid),
        }
        try:
            response = httpx.get(self.deployment.orderer_url + "/v1/status", timeout=2)
            status["height"] = int(response.json()["height"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            status["error"] = f"no answer from {self.deployment.orderer_url}: {str(exc) or type(exc).__name__}"
        return status

    def wait_until_ordering(self, timeout: float = 30.0) -> None:
        """Wait until the solo orderer answers; DeploymentError naming why if it exits or stays silent."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.deployment.orderer_url + "/v1/status", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if not _alive(self._pids().get(ORDERER_PROCESS)):
                raise DeploymentError(f"the orderer exited: {self._log_tail(ORDERER_PROCESS)}")
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"the orderer did not answer on {self.deployment.orderer_url} within {timeout:.0f} s; "
                    f"{self._log_tail(ORDERER_PROCESS)}"
                )
            time.sleep(0.05)

    # peers --------------------------------------------------------------------------------------------
    def start_peer(self, org_id: str) -> int:
        """Start (or restart) one organisation's peer process; returns its pid."""
        if org_id not in self.deployment.peer_ports:
            raise DeploymentError(f"no organisation {org_id!r} in this network")
        return self._spawn(org_id, ["node", "run", "--org", org_id])

    def kill_peer(self, org_id: str, sig: int = signal.SIGKILL) -> None:
        pid = self._peer_pids().get(org_id)
        if pid is not None and _alive(pid):
            os.kill(pid, sig)

    def wait_until_serving(self, org_ids: list[str] | None = None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for org_id in org_ids or list(self.deployment.peer_ports):
            while True:
                try:
                    if httpx.get(self.deployment.peer_url(org_id) + "/v1/status", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if not _alive(self._pids().get(org_id)):
                    raise DeploymentError(f"peer {org_id} exited: {self._log_tail(org_id)}")
                if time.monotonic() > deadline:
                    raise DeploymentError(f"peer {org_id} did not answer on {self.deployment.peer_url(org_id)}")
                time.sleep(0.1)

    # the whole network ---------------------------------------------------------------------------------
    def up(self, timeout: float = 60.0) -> None:
        """Start the orderer (etcd cluster or solo process) unless it runs, then every peer not already
        running; wait until all serve."""
        if self.deployment.orderer == "solo":
            if not _alive(self._pids().get(ORDERER_PROCESS)):
                self.start_orderer()
            self.wait_until_ordering(timeout=timeout)
        elif self._attached_cluster() is None:
            cluster = self.cluster()
            cluster.start()
            cluster.save_state(self.data_dir / CLUSTER_STATE)
        running = {org for org, pid in self._peer_pids().items() if _alive(pid)}
        for org_id in self.deployment.peer_ports:
            if org_id not in running:
                self.start_peer(org_id)
        self.wait_until_serving(timeout=timeout)

    def status(self) -> tuple[list[PeerProcessStatus], dict[str, Any]]:
        """Each peer's status, and the orderer's: the solo process (`orderer_status`), or the etcd cluster
        (`running`, and its `leader` and `endpoints` or an `error`)."""
        pids = self._pids()
        peers = []
        for org_id in self.deployment.peer_ports:
            url = self.deployment.peer_url(org_id)
            pid = pids.get(org_id)
            try:
                answer = httpx.get(url + "/v1/status", timeout=2).json()
                peers.append(PeerProcessStatus(org_id, pid, _alive(pid), answer["height"], answer["state_root"], url))
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                peers.append(
                    PeerProcessStatus(org_id, pid, _alive(pid), None, None, url, str(exc) or type(exc).__name__)
                )
        if self.deployment.orderer == "solo":
            return peers, self.orderer_status()
        cluster = self._attached_cluster()
        etcd: dict[str, Any] = {"orderer": "etcd", "running": cluster is not None}
        if cluster is not None:
            try:
                etcd["leader"] = cluster.leader()
                etcd["endpoints"] = cluster.endpoints
            except MedledgerError as exc:
                etcd["error"] = str(exc)
        return peers, etcd

    def down(self, timeout: float = 15.0) -> None:
        """Stop the peers (SIGTERM, then SIGKILL after `timeout`), then the orderer: the solo process the
        same way, or the etcd followers, then the leader."""
        self._stop(list(self._peer_pids().values()), timeout)
        orderer = self._pids().get(ORDERER_PROCESS)
        if orderer is not None:
            self._stop([orderer], timeout)
        (self.data_dir / PROCESSES_FILE).unlink(missing_ok=True)
        cluster = self._attached_cluster()
        if cluster is not None:
            cluster.stop()
            (self.data_dir / CLUSTER_STATE).unlink(missing_ok=True)
