"""A session on an embedded network's data directory, acting as its named members and patients.

The CLI opens one per command: it starts the network, finds keys in the keystore (members in
keys/<org>/<name>, patients' wallets in wallets/), performs the operation, and stops.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from medledger.core.errors import MedledgerError
from medledger.core.identity import MemberIdentity, load_identity
from medledger.node.delivery import DeliveryRefused
from medledger.node.ingestion import RecordIngestor
from medledger.node.network import EmbeddedNetwork
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from medledger.sdk.records import VerifiedRecord, open_verified_record, sign_delivery_request
from medledger.sdk.wallet import load_wallet


class NetworkSession:
    """An opened, running embedded network with keystore look-ups."""

    def __init__(self, data_dir: Path) -> None:
        self.network = EmbeddedNetwork(Path(data_dir)).start()

    def __enter__(self) -> NetworkSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.network.stop()

    def member(self, org_id: str, name: str) -> MemberIdentity:
        self.network.org(org_id)
        keys = self.network.keys_dir(org_id)
        if not (keys / f"{name}.cert.pem").exists():
            known = sorted(p.name.removesuffix(".cert.pem") for p in keys.glob("*.cert.pem") if ".ca." not in p.name)
            raise MedledgerError(f"no member {name!r} in {org_id}'s keystore; known: {', '.join(known)}")
        return load_identity(keys, name)

    def member_client(self, org_id: str, name: str) -> LedgerClient:
        return LedgerClient(self.network.gateway(org_id), Credentials.of_member(self.member(org_id, name)))

    def wallet(self, pseudonym: str) -> PatientWallet:
        return load_wallet(self.network.data_dir / "wallets", pseudonym)

    def patient_client(self, pseudonym: str, via_org: str | None = None) -> LedgerClient:
        org = via_org or self.network.orgs[0].org_id
        return LedgerClient(self.network.gateway(org), Credentials.of_patient(self.wallet(pseudonym)))

    def ingestor(self, org_id: str, name: str) -> RecordIngestor:
        return self.network.ingestor(org_id, self.member(org_id, name))

    def query(self, contract: str, name: str, **args: Any) -> Any:
        return self.network.peers[self.network.orgs[0].org_id].query(contract, name, args)

    def fetch_record(self, org_id: str, name: str, decision_id: str) -> VerifiedRecord:
        """Ask the record's vault for it under an access decision, as member `name` of `org_id`."""
        member = self.member(org_id, name)
        client = LedgerClient(self.network.gateway(org_id), Credentials.of_member(member))
        decision = client.query("access", "decision", decision_id=decision_id)
        if decision is None:
            raise DeliveryRefused("UNKNOWN_PERMIT", f"no access decision {decision_id}")
        record = client.query("records", "get", record_id=decision["record_id"])
        self.network.wait_until_synced()
        vault = self.network.vault_service(record["source_org"])
        signed = sign_delivery_request(
            decision_id, decision["record_id"], member.certificate.cert_id, member.key, self.network.clock()
        )
        return open_verified_record(client, member.key, vault.deliver(signed), decision["record_id"])
