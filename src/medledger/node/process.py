"""A peer as its own process: one organisation's ledger, following the etcd orderer, exchanging
attestations through etcd, catching up from other peers, and serving its REST API.

`medledger network up` starts one of these per organisation (`medledger node run`). A peer that
is behind, or behind a compaction of the orderer, fetches the missing batches from another peer
over REST and commits each only if it reproduces the block hash a quorum attested.
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import uvicorn

from medledger.api import create_app
from medledger.contracts.default import default_registry
from medledger.core.encoding import decode
from medledger.core.identity import MemberIdentity, OrgKind, load_identity
from medledger.node.attestation_board import EtcdAttestationBoard, quorum_hash
from medledger.node.gateway import EmbeddedGateway
from medledger.node.network import GENESIS_FILE, NETWORK_FILE, open_vault_service
from medledger.node.peer import Peer
from medledger.node.service import LedgerService
from medledger.ordering.cutter import CutterConfig
from medledger.ordering.etcd import BatchCompacted, EtcdKV, EtcdOrderer
from medledger.ordering.orderer import OrderedBatch, OrderingError
from medledger.ordering.solo import wall_clock_ms
from medledger.sdk.client import Credentials
from medledger.sdk.rest import signed_headers

log = logging.getLogger(__name__)

ATTESTATION_WINDOW = 64
"""How many recent heights a peer polls for other organisations' attestations."""
COMPACT_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class Deployment:
    """How a network runs as processes (the `deployment` section of network.json)."""

    orderer: str
    """``etcd``."""
    etcd_client_ports: tuple[int, ...]
    """Client ports of the etcd members on 127.0.0.1."""
    etcd_peer_ports: tuple[int, ...]
    """Raft peer ports of the etcd members."""
    peer_ports: dict[str, int]
    """Organisation id -> its peer's REST port."""
    host: str = "127.0.0.1"

    @property
    def endpoints(self) -> list[str]:
        return [f"http://{self.host}:{port}" for port in self.etcd_client_ports]

    def peer_url(self, org_id: str) -> str:
        return f"http://{self.host}:{self.peer_ports[org_id]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "orderer": self.orderer,
            "etcd_client_ports": list(self.etcd_client_ports),
            "etcd_peer_ports": list(self.etcd_peer_ports),
            "peer_ports": dict(self.peer_ports),
            "host": self.host,
        }

    @classmethod
    def load(cls, data_dir: Path) -> Deployment:
        config = json.loads((Path(data_dir) / NETWORK_FILE).read_text())
        section = config.get("deployment")
        if section is None:
            raise OrderingError(f"{data_dir} is not set up to run as processes (create it with `medledger network up`)")
        return cls(
            section["orderer"],
            tuple(section["etcd_client_ports"]),
            tuple(section["etcd_peer_ports"]),
            dict(section["peer_ports"]),
            section.get("host", "127.0.0.1"),
        )


class PeerProcess:
    """Everything one organisation's peer process runs."""

    def __init__(self, data_dir: Path, org_id: str) -> None:
        self.data_dir = Path(data_dir)
        self.org_id = org_id
        self.deployment = Deployment.load(self.data_dir)
        config = json.loads((self.data_dir / NETWORK_FILE).read_text())
        self.channel: str = config["channel"]
        self.orgs = [org["org_id"] for org in config["orgs"]]
        kinds = {org["org_id"]: OrgKind(org["kind"]) for org in config["orgs"]}
        genesis = decode((self.data_dir / GENESIS_FILE).read_bytes())
        self.identity: MemberIdentity = load_identity(self.data_dir / "keys" / org_id, "peer")
        self.peer = Peer(org_id, self.data_dir / "peers" / org_id, self.identity, default_registry())
        self.peer.bootstrap(genesis, genesis["created_ms"])
        self.orderer = EtcdOrderer(
            self.deployment.endpoints,
            self.channel,
            CutterConfig(**config["cutter"]),
            orderer_id=f"etcd/{org_id}",
            first_number=1,
        )
        self.board = EtcdAttestationBoard(EtcdKV(self.deployment.endpoints), self.channel)
        self.peer.on_attestation(self._publish)
        self.stop_event = threading.Event()
        vault = None
        if kinds[org_id] is OrgKind.HOSPITAL:
            gateway = EmbeddedGateway(self.channel, self.orderer, self.peer, wall_clock_ms)
            vault = open_vault_service(self.data_dir, org_id, gateway, wall_clock_ms)
        self.service = LedgerService(self.peer, self.orderer, wall_clock_ms, vault)
        self._seen: set[tuple[int, str]] = set()

    def _publish(self, attestation: Any) -> None:
        try:
            self.board.publish(attestation)
        except OrderingError as exc:  # the next commit publishes again; others re-read the window
            log.warning("%s: cannot publish attestation of block %d: %s", self.org_id, attestation.block_number, exc)

    # following the orderer -------------------------------------------------------------------
    def follow(self) -> None:
        while not self.stop_event.is_set():
            height = self.peer.store.height()
            try:
                batch = self.orderer.read(height, timeout=0.5)
                attested = None
            except BatchCompacted:
                batch, attested = self._fetch_from_peers(height)
            except OrderingError as exc:
                log.warning("%s: orderer unavailable (%s); retrying", self.org_id, exc)
                self.stop_event.wait(0.5)
                continue
            if batch is None:
                continue
            self.peer.apply_batch(batch, attested_hash=attested)
            try:
                self.orderer.report_progress(self.org_id, self.peer.store.height())
            except OrderingError as exc:
                log.warning("%s: cannot report progress: %s", self.org_id, exc)

    def _fetch_from_peers(self, number: int) -> tuple[OrderedBatch | None, bytes | None]:
        """Batch `number` from another peer, with the hash the quorum attested for it."""
        attested = quorum_hash(self.peer, self.board.fetch(number))
        if attested is None:
            self.stop_event.wait(0.5)  # not attested by a quorum yet: wait for it
            return None, None
        credentials = Credentials.of_member(self.identity)
        for org_id in self.orgs:
            if org_id == self.org_id:
                continue
            path = f"/v1/batches/{number}"
            try:
                response = httpx.get(
                    self.deployment.peer_url(org_id) + path,
                    headers=signed_headers(credentials, "GET", path, b"", wall_clock_ms()),
                    timeout=10,
                )
            except httpx.HTTPError:
                continue
            if response.status_code != 200:
                continue
            fields = decode(base64.b64decode(response.json()["batch"]))
            log.warning("%s: caught up block %d from %s (etcd compacted it)", self.org_id, number, org_id)
            return OrderedBatch(fields[0], fields[1], tuple(fields[2]), fields[3]), attested
        self.stop_event.wait(0.5)
        return None, None

    def exchange_attestations(self) -> None:
        """Read other organisations' attestations of recent blocks into this peer."""
        last_compaction = time.monotonic()
        while not self.stop_event.wait(0.25):
            height = self.peer.store.height()
            for number in range(max(0, height - ATTESTATION_WINDOW), height + 1):
                try:
                    found = self.board.fetch(number)
                except OrderingError:
                    break
                for attestation in found:
                    key = (attestation.block_number, attestation.org_id)
                    if key not in self._seen and attestation.org_id != self.org_id:
                        self._seen.add(key)
                        self.peer.receive_attestation(attestation)
            if height > 0 and height % 16 == 0:
                self.peer.flush_attestations()
            if time.monotonic() - last_compaction > COMPACT_EVERY_S:
                last_compaction = time.monotonic()
                try:
                    self.orderer.compact(self.orgs)
                except OrderingError as exc:
                    log.warning("%s: compaction failed: %s", self.org_id, exc)

    # running ------------------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until SIGTERM or SIGINT; then stop following, flush and close."""
        threads = [
            threading.Thread(target=self.follow, name=f"follow-{self.org_id}", daemon=True),
            threading.Thread(target=self.exchange_attestations, name=f"attest-{self.org_id}", daemon=True),
        ]
        for thread in threads:
            thread.start()
        port = self.deployment.peer_ports[self.org_id]
        server = uvicorn.Server(
            uvicorn.Config(create_app(self.service), host=self.deployment.host, port=port, log_level="warning")
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            server.should_exit = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        server.run()
        self.stop_event.set()
        for thread in threads:
            thread.join(timeout=10)
        self.orderer.close()
        self.peer.close()
