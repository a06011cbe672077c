"""The embedded network: several organisations' peers and a solo orderer in one process.

This is the default deployment for the demo and most tests. Its data directory holds
everything a restart needs:

    network.json            channel, organisations, cutter settings
    genesis.cbor            the founding configuration (block 0 is derived from it)
    keys/<org>/             the organisation's CA, admin and peer keys (PEM, 0600)
    orderer/orderer.sqlite  the solo orderer's durable batch log
    peers/<org>/ledger.sqlite  each organisation's own copy of the ledger
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medledger.contracts.default import default_registry
from medledger.core.encoding import decode, encode
from medledger.core.errors import MedledgerError
from medledger.core.identity import (
    MemberIdentity,
    OrgCA,
    OrgKind,
    Role,
    load_identity,
    load_org_ca,
    save_identity,
    save_org_ca,
)
from medledger.node.delivery import VaultService
from medledger.node.gateway import EmbeddedGateway
from medledger.node.ingestion import RecordIngestor
from medledger.node.peer import Peer, PeerStatus
from medledger.ordering.cutter import CutterConfig
from medledger.ordering.solo import Clock, SoloOrderer, wall_clock_ms
from medledger.sdk import Credentials, LedgerClient
from medledger.vault import Vault, load_or_create_master_key, open_backend

NETWORK_FILE = "network.json"
GENESIS_FILE = "genesis.cbor"
DEFAULT_CHANNEL = "medledger"


class NetworkError(MedledgerError):
    """The network's data directory is missing, incomplete, or already holds a network."""


@dataclass(frozen=True, slots=True)
class OrgSpec:
    """An organisation taking part in the network."""

    org_id: str
    """Short id: lower case, digits and dashes."""
    kind: OrgKind
    """What it is: hospital, research institute, insurer, regulator, ..."""
    name: str
    """Its display name."""


DEFAULT_ORGANISATIONS: tuple[OrgSpec, ...] = (
    OrgSpec("st-mary", OrgKind.HOSPITAL, "St Mary's Hospital"),
    OrgSpec("city-general", OrgKind.HOSPITAL, "City General Hospital"),
    OrgSpec("northern-research", OrgKind.RESEARCH, "Northern Research Institute"),
    OrgSpec("mutual-health", OrgKind.INSURER, "Mutual Health Insurance"),
    OrgSpec("health-authority", OrgKind.REGULATOR, "National Health Authority"),
)


def open_vault_service(data_dir: Path, org_id: str, gateway: EmbeddedGateway, clock: Clock) -> VaultService:
    """A hospital's vault (SQLite + files under vaults/<org>/, master key in its keystore), serving
    against the gateway's peer and recording deliveries as the organisation's vault member."""
    keys = data_dir / "keys" / org_id
    directory = data_dir / "vaults" / org_id
    directory.mkdir(parents=True, exist_ok=True)
    backend = open_backend(f"sqlite:///{directory.resolve()}")
    try:
        vault = Vault(backend, org_id, load_or_create_master_key(keys / "vault-master.key"))
    except BaseException:  # e.g. refused by its opening scrub: release the database before reporting
        backend.close()
        raise
    recorder = LedgerClient(gateway, Credentials.of_member(load_identity(keys, "vault")))
    return VaultService(org_id, vault, gateway.peer, recorder, clock)


class EmbeddedNetwork:
    """All organisations' peers and a solo orderer in this process, over one data directory."""

    def __init__(self, data_dir: Path, *, clock: Clock = wall_clock_ms) -> None:
        self.data_dir = Path(data_dir)
        config_path = self.data_dir / NETWORK_FILE
        if not config_path.exists():
            raise NetworkError(f"{self.data_dir} holds no medledger network (no {NETWORK_FILE}); create one first")
        config = json.loads(config_path.read_text())
        self.channel: str = config["channel"]
        self.orgs = tuple(OrgSpec(o["org_id"], OrgKind(o["kind"]), o["name"]) for o in config["orgs"])
        self.cutter = CutterConfig(**config["cutter"])
        self.genesis_config: dict[str, Any] = decode((self.data_dir / GENESIS_FILE).read_bytes())
        self.clock = clock
        self.orderer: SoloOrderer | None = None
        self.peers: dict[str, Peer] = {}
        self._vaults: dict[str, VaultService] = {}

    # creation ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        data_dir: Path,
        orgs: Sequence[OrgSpec] = DEFAULT_ORGANISATIONS,
        *,
        channel: str = DEFAULT_CHANNEL,
        cutter: CutterConfig | None = None,
        clock: Clock = wall_clock_ms,
        rules: dict[str, int] | None = None,
    ) -> EmbeddedNetwork:
        """Make the organisations' CAs, admins and peers, and the founding configuration."""
        data_dir = Path(data_dir)
        if (data_dir / NETWORK_FILE).exists():
            raise NetworkError(f"{data_dir} already holds a network; open it, or choose an empty directory")
        if len({o.org_id for o in orgs}) != len(orgs):
            raise NetworkError("organisation ids must be unique")
        now = clock()
        genesis_orgs = []
        for org in orgs:
            keys = data_dir / "keys" / org.org_id
            ca = OrgCA.create(org.org_id, org.kind, now)
            admin = ca.enrol("admin", Role.ADMIN, now)
            peer = ca.enrol("peer", Role.PEER, now)
            members = [admin, peer]
            if org.kind is OrgKind.HOSPITAL:
                members.append(ca.enrol("vault", Role.VAULT, now))
            save_org_ca(keys, ca)
            for member in members:
                save_identity(keys, member)
            genesis_orgs.append(
                {
                    "org_id": org.org_id,
                    "kind": org.kind.value,
                    "ca_certificate": ca.certificate_der,
                    "members": [member.certificate.der for member in members],
                }
            )
        genesis = {"channel": channel, "rules": dict(rules or {}), "created_ms": now, "orgs": genesis_orgs}
        (data_dir / GENESIS_FILE).write_bytes(encode(genesis))
        config = {
            "channel": channel,
            "orgs": [{"org_id": o.org_id, "kind": o.kind.value, "name": o.name} for o in orgs],
            "cutter": asdict(cutter or CutterConfig()),
        }
        (data_dir / NETWORK_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return cls(data_dir, clock=clock)

    @classmethod
    def open_or_create(cls, data_dir: Path, *, fresh: bool = False, **create_args: Any) -> EmbeddedNetwork:
        data_dir = Path(data_dir)
        if fresh and data_dir.exists():
            if any(data_dir.iterdir()) and not (data_dir / NETWORK_FILE).exists():
                raise NetworkError(f"refusing to wipe {data_dir}: it is not a medledger network directory")
            shutil.rmtree(data_dir)
        if (data_dir / NETWORK_FILE).exists():
            return cls(data_dir, clock=create_args.get("clock", wall_clock_ms))
        return cls.create(data_dir, **create_args)

    # keys ------------------------------------------------------------------------------------
    def keys_dir(self, org_id: str) -> Path:
        return self.data_dir / "keys" / org_id

    def ca(self, org_id: str) -> OrgCA:
        return load_org_ca(self.keys_dir(org_id), org_id)

    def admin(self, org_id: str) -> MemberIdentity:
        return load_identity(self.keys_dir(org_id), "admin")

    def member_identity(self, org_id: str, name: str) -> MemberIdentity:
        """A member whose keys are in the organisation's keystore."""
        return load_identity(self.keys_dir(org_id), name)

    def org(self, org_id: str) -> OrgSpec:
        for org in self.orgs:
            if org.org_id == org_id:
                return org
        raise NetworkError(f"no organisation {org_id!r} in this network")

    # running -------------------------------------------------------------------------------
    def start(self) -> EmbeddedNetwork:
        """Open the orderer and every peer; peers catch up from the orderer's log, then follow it."""
        if self.orderer is not None:
            return self
        (self.data_dir / "orderer").mkdir(parents=True, exist_ok=True)
        self.orderer = SoloOrderer(self.data_dir / "orderer" / "orderer.sqlite", self.cutter, clock=self.clock)
        for org in self.orgs:
            self._start_peer(org.org_id)
        for peer in self.peers.values():
            peer.republish_attestations([0])
        return self

    def _start_peer(self, org_id: str) -> Peer:
        assert self.orderer is not None
        identity = load_identity(self.keys_dir(org_id), "peer")
        peer = Peer(org_id, self.data_dir / "peers" / org_id, identity, default_registry())
        peer.bootstrap(self.genesis_config, self.genesis_config["created_ms"])
        peer.on_attestation(self._broadcast)
        self.peers[org_id] = peer
        peer.start(self.orderer)
        return peer

    def _broadcast(self, attestation: Any) -> None:
        for org_id, peer in list(self.peers.items()):
            if org_id != attestation.org_id:
                peer.receive_attestation(attestation)

    def vault_service(self, org_id: str) -> VaultService:
        """The hospital's vault (SQLite + files under vaults/<org>/), serving against its own peer."""
        if org_id not in self._vaults:
            if self.org(org_id).kind is not OrgKind.HOSPITAL:
                raise NetworkError(f"{org_id} is not a hospital and keeps no vault")
            self._vaults[org_id] = open_vault_service(self.data_dir, org_id, self.gateway(org_id), self.clock)
        return self._vaults[org_id]

    def ingestor(self, org_id: str, registrar: MemberIdentity) -> RecordIngestor:
        """The hospital's ingestion desk, registering on the ledger as `registrar`."""
        client = LedgerClient(self.gateway(org_id), Credentials.of_member(registrar))
        return RecordIngestor(self.vault_service(org_id).vault, client, self.clock)

    def restart_peer(self, org_id: str) -> Peer:
        """Close one peer and open it again on its data directory (it catches up by itself)."""
        self.peers.pop(org_id).close()
        self._vaults.pop(org_id, None)
        return self._start_peer(org_id)

    def stop(self) -> None:
        """Stop taking transactions, let every peer commit what was ordered, then close everything."""
        if self.orderer is None:
            return
        self.orderer.drain()
        self.wait_until_synced()
        for service in self._vaults.values():
            service.vault.backend.close()
        self._vaults.clear()
        for peer in self.peers.values():
            peer.stop()
        for peer in self.peers.values():
            peer.close()
        self.peers.clear()
        self.orderer.close()
        self.orderer = None

    def __enter__(self) -> EmbeddedNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # clients and status -----------------------------------------------------------------------
    def gateway(self, org_id: str) -> EmbeddedGateway:
        """Submit through the orderer, read and wait on `org_id`'s peer."""
        if self.orderer is None:
            raise NetworkError("the network is not started")
        return EmbeddedGateway(self.channel, self.orderer, self.peers[org_id], self.clock)

    def wait_until_synced(self, timeout: float = 30.0) -> bool:
        """Wait until every peer has committed every batch cut so far."""
        if self.orderer is None:
            return False
        target = self.orderer.height()
        return all(peer.wait_for_height(target, timeout) for peer in self.peers.values())

    def statuses(self) -> list[PeerStatus]:
        return [peer.status() for peer in self.peers.values()]

    def iter_peers(self) -> Iterator[Peer]:
        yield from self.peers.values()
