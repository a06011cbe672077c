"""A network run as processes on this machine: a 3-node etcd cluster and one peer process per
organisation, started by `medledger network up`, watched by `status`, stopped by `down`.

The data directory records everything needed to find them again: network.json holds the
ports (its `deployment` section), processes.json the running peers' pids, etcd/ the cluster's
data and state. Nothing is installed by hand: the etcd binary comes with the project's set-up.
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
from medledger.node.process import Deployment
from medledger.ordering.cutter import CutterConfig
from medledger.ordering.etcd_cluster import EtcdCluster

PROCESSES_FILE = "processes.json"
CLUSTER_STATE = "etcd/cluster.json"


class DeploymentError(MedledgerError):
    """The process network could not be started, reached or stopped; the message says which part."""


def organisations(count: int) -> list[OrgSpec]:
    """The default five, then more hospitals."""
    if count < 3:
        raise DeploymentError("a network needs at least 3 organisations")
    orgs = list(DEFAULT_ORGANISATIONS[:count])
    orgs += [OrgSpec(f"hospital-{i}", OrgKind.HOSPITAL, f"Hospital {i}") for i in range(len(orgs) + 1, count + 1)]
    return orgs


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
        cutter: CutterConfig | None = None,
    ) -> ProcessNetwork:
        if orderer != "etcd":
            raise DeploymentError(
                f"orderer {orderer!r} cannot be shared by separate peer processes; use --orderer etcd "
                "(the solo orderer runs the embedded network: `medledger demo`)"
            )
        orgs = organisations(org_count)
        EmbeddedNetwork.create(data_dir, orgs, cutter=cutter or CutterConfig(max_tx=500, time_to_cut_ms=50))
        config = json.loads((Path(data_dir) / NETWORK_FILE).read_text())
        deployment = Deployment(
            orderer,
            tuple(etcd_client_base + i for i in range(1, 4)),
            tuple(etcd_peer_base + i for i in range(1, 4)),
            {org.org_id: peer_port_base + i for i, org in enumerate(orgs, 1)},
        )
        config["deployment"] = deployment.to_dict()
        (Path(data_dir) / NETWORK_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return cls(data_dir)

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

    # peers --------------------------------------------------------------------------------------------
    def _pids(self) -> dict[str, int]:
        path = self.data_dir / PROCESSES_FILE
        return {k: int(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}

    def _save_pids(self, pids: dict[str, int]) -> None:
        (self.data_dir / PROCESSES_FILE).write_text(json.dumps(pids, indent=2) + "\n")

    def start_peer(self, org_id: str) -> int:
        """Start (or restart) one organisation's peer process; returns its pid."""
        log_dir = self.data_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        with open(log_dir / f"{org_id}.log", "ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "medledger.cli.main",
                    "node",
                    "run",
                    "--data-dir",
                    str(self.data_dir),
                    "--org",
                    org_id,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        pids = self._pids()
        pids[org_id] = process.pid
        self._save_pids(pids)
        return process.pid

    def kill_peer(self, org_id: str, sig: int = signal.SIGKILL) -> None:
        pid = self._pids().get(org_id)
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
                    raise DeploymentError(f"peer {org_id} exited; see {self.data_dir / 'logs' / (org_id + '.log')}")
                if time.monotonic() > deadline:
                    raise DeploymentError(f"peer {org_id} did not answer on {self.deployment.peer_url(org_id)}")
                time.sleep(0.1)

    # the whole network ---------------------------------------------------------------------------------
    def up(self, timeout: float = 60.0) -> None:
        """Start the etcd cluster (unless running) and every peer not already running; wait until served."""
        if self._attached_cluster() is None:
            cluster = self.cluster()
            cluster.start()
            cluster.save_state(self.data_dir / CLUSTER_STATE)
        running = {org for org, pid in self._pids().items() if _alive(pid)}
        for org_id in self.deployment.peer_ports:
            if org_id not in running:
                self.start_peer(org_id)
        self.wait_until_serving(timeout=timeout)

    def status(self) -> tuple[list[PeerProcessStatus], dict[str, Any]]:
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
        cluster = self._attached_cluster()
        etcd: dict[str, Any] = {"running": cluster is not None}
        if cluster is not None:
            try:
                etcd["leader"] = cluster.leader()
                etcd["endpoints"] = cluster.endpoints
            except MedledgerError as exc:
                etcd["error"] = str(exc)
        return peers, etcd

    def down(self, timeout: float = 15.0) -> None:
        """Stop the peers (SIGTERM, then SIGKILL after `timeout`), then etcd followers, then its leader."""
        pids = {org: pid for org, pid in self._pids().items() if _alive(pid)}
        for pid in pids.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        (self.data_dir / PROCESSES_FILE).unlink(missing_ok=True)
        cluster = self._attached_cluster()
        if cluster is not None:
            cluster.stop()
            (self.data_dir / CLUSTER_STATE).unlink(missing_ok=True)
