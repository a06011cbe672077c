"""A network's parts as their own processes: one organisation's peer (following the orderer,
exchanging attestations, catching up from other peers, serving its REST API), and the solo
orderer when the network does not use etcd.

`medledger network up` starts one peer per organisation (`medledger node run`) and, for
`--orderer solo`, the orderer first (`medledger orderer run`). With etcd, a peer that is behind
a compaction of the orderer fetches the missing batches from another peer over REST and commits
each only if it reproduces the block hash a quorum attested; the solo orderer keeps every batch.
"""

from __future__ import annotations

import base64
import gc
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
from medledger.core.errors import MedledgerError
from medledger.core.identity import MemberIdentity, OrgKind, load_identity
from medledger.ledger.errors import IntegrityError
from medledger.node.attestation_board import (
    AttestationBoard,
    EtcdAttestationBoard,
    RelayAttestationBoard,
    quorum_hash,
)
from medledger.node.gateway import EmbeddedGateway
from medledger.node.network import GENESIS_FILE, NETWORK_FILE, NetworkError, open_vault_service
from medledger.node.peer import Peer
from medledger.node.service import LedgerService
from medledger.ordering.cutter import CutterConfig
from medledger.ordering.etcd import BatchCompacted, EtcdKV, EtcdOrderer
from medledger.ordering.orderer import OrderedBatch, Orderer, OrderingError
from medledger.ordering.relay import AttestationRelay
from medledger.ordering.remote import RemoteAttestationRelay, RemoteOrderer
from medledger.ordering.solo import SoloOrderer, wall_clock_ms
from medledger.ordering.solo_server import OrdererServer, create_orderer_app
from medledger.sdk.client import Credentials
from medledger.sdk.rest import signed_headers

log = logging.getLogger(__name__)

CUTTER_STANDBY_STEP_S = 0.25
"""Every peer process runs a cutter; the n-th organisation's (from 0, in network.json's order) stands by
n steps before it writes a batch it has ready, so the first one writes nearly every batch and, if it
stops, the next takes over after one step per batch."""
ATTESTATION_WINDOW = 64
"""How many recent heights a peer polls for other organisations' attestations."""
COMPACT_EVERY_S = 5.0
PROGRESS_EVERY_S = 1.0
"""How often a busy peer reports its committed height to the etcd orderer (for compaction)."""
ORDERERS = ("etcd", "solo")
"""The orderers a process network runs on."""
ORDERER_DIR = "orderer"
"""The solo orderer's own directory under the network's: its batch log and attestation relay."""


class DeploymentError(MedledgerError):
    """The process network could not be started, reached or stopped; the message says which part."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """How a network runs as processes (the `deployment` section of network.json)."""

    orderer: str
    """``etcd`` or ``solo``."""
    etcd_client_ports: tuple[int, ...]
    """Client ports of the etcd members on 127.0.0.1 (none for solo)."""
    etcd_peer_ports: tuple[int, ...]
    """Raft peer ports of the etcd members (none for solo)."""
    peer_ports: dict[str, int]
    """Organisation id -> its peer's REST port."""
    host: str = "127.0.0.1"
    orderer_port: int | None = None
    """The solo orderer process's port (solo only)."""

    def __post_init__(self) -> None:
        if self.orderer not in ORDERERS:
            raise DeploymentError(f"unknown orderer {self.orderer!r}: choose one of {', '.join(ORDERERS)}")
        if self.orderer == "solo" and self.orderer_port is None:
            raise DeploymentError("a network on the solo orderer needs the orderer's port")
        if self.orderer == "etcd" and not self.etcd_client_ports:
            raise DeploymentError("a network on etcd needs the etcd members' client ports")

    @property
    def endpoints(self) -> list[str]:
        return [f"http://{self.host}:{port}" for port in self.etcd_client_ports]

    @property
    def orderer_url(self) -> str:
        """Where the solo orderer process serves."""
        return f"http://{self.host}:{self.orderer_port}"

    def peer_url(self, org_id: str) -> str:
        return f"http://{self.host}:{self.peer_ports[org_id]}"

    def to_dict(self) -> dict[str, Any]:
        section: dict[str, Any] = {
            "orderer": self.orderer,
            "etcd_client_ports": list(self.etcd_client_ports),
            "etcd_peer_ports": list(self.etcd_peer_ports),
            "peer_ports": dict(self.peer_ports),
            "host": self.host,
        }
        if self.orderer_port is not None:
            section["orderer_port"] = self.orderer_port
        return section

    @classmethod
    def load(cls, data_dir: Path) -> Deployment:
        path = Path(data_dir) / NETWORK_FILE
        if not path.is_file():
            raise NetworkError(
                f"{data_dir} holds no medledger network (no {NETWORK_FILE}); create one with `medledger network up`"
            )
        try:
            section = json.loads(path.read_text()).get("deployment")
        except (OSError, ValueError, AttributeError) as exc:
            raise NetworkError(f"{path} is not readable network settings: {exc}") from exc
        if section is None:
            raise DeploymentError(
                f"{data_dir} is not set up to run as processes (create it with `medledger network up`)"
            )
        try:
            return cls(
                section["orderer"],
                tuple(section["etcd_client_ports"]),
                tuple(section["etcd_peer_ports"]),
                dict(section["peer_ports"]),
                section.get("host", "127.0.0.1"),
                section.get("orderer_port"),
            )
        except (KeyError, TypeError) as exc:
            raise DeploymentError(f"the deployment section of {path} is incomplete: {exc}") from exc


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
        self.orderer: Orderer
        self.board: AttestationBoard
        self.etcd: EtcdOrderer | None = None
        """The etcd orderer, whose batches are compacted once every peer reported committing them."""
        self._etcd_kv: EtcdKV | None = None
        if self.deployment.orderer == "solo":
            self.orderer = RemoteOrderer(self.deployment.orderer_url)
            self.board = RelayAttestationBoard(RemoteAttestationRelay(self.deployment.orderer_url))
        else:
            self.etcd = EtcdOrderer(
                self.deployment.endpoints,
                self.channel,
                CutterConfig(**config["cutter"]),
                orderer_id=f"etcd/{org_id}",
                first_number=1,
                standby_s=CUTTER_STANDBY_STEP_S * self.orgs.index(org_id),
            )
            self.orderer = self.etcd
            self._etcd_kv = EtcdKV(self.deployment.endpoints)
            self.board = EtcdAttestationBoard(self._etcd_kv, self.channel)
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
        reported, reported_at = -1, 0.0
        while not self.stop_event.is_set():
            height = self.peer.executed_height()
            batch: OrderedBatch | None = None
            try:
                batch = self.orderer.read(height, timeout=0.5)
            except BatchCompacted:
                if not self._catch_up_from_peers(height):
                    self.stop_event.wait(0.5)
                    continue
            except OrderingError as exc:
                log.warning("%s: orderer unavailable (%s); retrying", self.org_id, exc)
                self.stop_event.wait(0.5)
                continue
            else:
                if batch is not None:
                    # The peer is alone in its process: the next block executes while this one is written.
                    self.peer.stage_batch(batch)
            if self.etcd is None:
                continue
            # Progress only decides compaction (every few seconds): report it at most once a PROGRESS_EVERY_S,
            # and when the peer is idle, rather than as one more fsynced etcd write per block.
            committed = self.peer.store.height()
            idle = batch is None and committed == self.peer.executed_height()
            if committed != reported and (idle or time.monotonic() - reported_at >= PROGRESS_EVERY_S):
                try:
                    self.etcd.report_progress(self.org_id, committed)
                    reported, reported_at = committed, time.monotonic()
                except OrderingError as exc:
                    log.warning("%s: cannot report progress: %s", self.org_id, exc)

    def _catch_up_from_peers(self, number: int) -> bool:
        """Commit block `number` from a batch another peer serves, if it reproduces the hash the quorum
        attested; a peer whose batch does not is named in the log and the next one is asked. False
        when no quorum attested the block yet or no peer served a batch that reproduces it."""
        attested = quorum_hash(self.peer, self.board.fetch(number))
        if attested is None:
            return False  # not attested by a quorum yet: wait for it
        for org_id in self.orgs:
            if org_id == self.org_id:
                continue
            batch = self._batch_from(org_id, number)
            if batch is None:
                continue
            try:
                self.peer.apply_batch(batch, attested_hash=attested)
            except (IntegrityError, ValueError) as exc:  # ValueError: a batch that cannot follow this chain
                log.error("%s: %s served a batch the quorum did not attest: %s", self.org_id, org_id, exc)
                continue
            log.warning("%s: caught up block %d from %s (etcd compacted it)", self.org_id, number, org_id)
            return True
        return False

    def _batch_from(self, org_id: str, number: int) -> OrderedBatch | None:
        """Batch `number` as `org_id`'s peer serves it over REST, or None if it does not (or not legibly)."""
        path = f"/v1/batches/{number}"
        credentials = Credentials.of_member(self.identity)
        try:
            response = httpx.get(
                self.deployment.peer_url(org_id) + path,
                headers=signed_headers(credentials, "GET", path, b"", wall_clock_ms(), node=org_id),
                timeout=10,
            )
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            fields = decode(base64.b64decode(response.json()["batch"], validate=True))
            batch = OrderedBatch(int(fields[0]), int(fields[1]), tuple(fields[2]), str(fields[3]))
            if batch.number != number:
                raise ValueError(f"it is numbered {batch.number}")
            return batch
        except (MedledgerError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.error("%s: %s served an unreadable batch %d: %s", self.org_id, org_id, number, exc)
            return None

    def exchange_attestations(self) -> None:
        """Read other organisations' attestations of recent blocks into this peer."""
        last_compaction = time.monotonic()
        others = [org_id for org_id in self.orgs if org_id != self.org_id]
        complete_below = 1  # every other organisation's attestation of each block below this has been read
        # (block 0, the genesis block, is the network's founding document: no peer attests it)
        while not self.stop_event.wait(0.25):
            height = self.peer.store.height()
            window_start = max(0, height - ATTESTATION_WINDOW)
            complete_below = max(complete_below, window_start)
            try:
                found = self.board.fetch_range(complete_below, height + 1)
            except OrderingError:
                found = []
            for attestation in found:
                key = (attestation.block_number, attestation.org_id)
                if key not in self._seen and attestation.org_id != self.org_id:
                    self._seen.add(key)
                    self.peer.receive_attestation(attestation)
            while complete_below < height and all((complete_below, org_id) in self._seen for org_id in others):
                complete_below += 1
            if len(self._seen) > 4 * ATTESTATION_WINDOW * len(self.orgs):  # forget what fell out of the window
                self._seen = {key for key in self._seen if key[0] >= window_start}
            if height > 0 and height % 16 == 0:
                self.peer.flush_attestations()
            if self.etcd is not None and time.monotonic() - last_compaction > COMPACT_EVERY_S:
                last_compaction = time.monotonic()
                try:
                    self.etcd.compact(self.orgs)
                except OrderingError as exc:
                    log.warning("%s: compaction failed: %s", self.org_id, exc)

    # running ------------------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until SIGTERM or SIGINT; then stop following, flush and close."""
        # Everything loaded so far (modules, the app, identities, caches) lives as long as the process: out of
        # the garbage collector's sight, full collections scan only what serving creates and pause the peer
        # for milliseconds instead of a large part of a second.
        gc.collect()
        gc.freeze()
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
        self.board.close()
        if self._etcd_kv is not None:
            self._etcd_kv.close()
        self.peer.close()


class OrdererProcess:
    """The solo orderer of a process network: its durable batch log and attestation relay (both under
    <network>/orderer/), served over HTTP on the deployment's orderer port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.deployment = Deployment.load(self.data_dir)
        if self.deployment.orderer != "solo":
            raise DeploymentError(f"{self.data_dir} runs the {self.deployment.orderer} orderer, not a solo one")
        config = json.loads((self.data_dir / NETWORK_FILE).read_text())
        directory = self.data_dir / ORDERER_DIR
        directory.mkdir(parents=True, exist_ok=True)
        assert self.deployment.orderer_port is not None  # Deployment checks it for solo
        self.server: OrdererServer | None = None
        self.orderer = SoloOrderer(directory / "orderer.sqlite", CutterConfig(**config["cutter"]))
        self.relay = AttestationRelay(directory / "attestations.sqlite")
        try:
            self.server = OrdererServer(
                create_orderer_app(self.orderer, self.relay), self.deployment.host, self.deployment.orderer_port
            )
        except OrderingError:
            self.close()
            raise

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT; then cut what is pending and close the log."""
        assert self.server is not None
        server = self.server

        def stop(signum: int, frame: FrameType | None) -> None:
            server.stop_soon()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("solo orderer serving on %s from height %d", server.url, self.orderer.height())
        try:
            server.run()
        finally:
            self.close()

    def close(self) -> None:
        self.orderer.close()
        self.relay.close()
