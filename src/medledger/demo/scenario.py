"""The foundation scenario: start the embedded network, enrol staff and patients, register records.

Everything goes through the SDK as a real client would: members are enrolled by their
organisation's admin, patients by a hospital registrar with their wallet's proof of
possession, and records by registrars, many in flight at once.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from medledger.contracts.records import record_id_for
from medledger.core.encoding import encode
from medledger.core.identity import MemberIdentity, OrgKind, Role, load_identity, save_identity
from medledger.demo.sharing import SharingSummary, run_sharing_scenario
from medledger.ledger.receipts import Receipt
from medledger.node.network import EmbeddedNetwork
from medledger.node.peer import PeerStatus
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from medledger.sdk.wallet import list_wallets, load_wallet, save_wallet

STAFF_BY_KIND: dict[OrgKind, tuple[tuple[str, Role], ...]] = {
    OrgKind.HOSPITAL: (("registrar", Role.REGISTRAR), ("dr-osei", Role.CLINICIAN), ("nurse-lind", Role.NURSE)),
    OrgKind.RESEARCH: (("researcher", Role.RESEARCHER),),
    OrgKind.INSURER: (("claims-officer", Role.CLAIMS_OFFICER),),
    OrgKind.REGULATOR: (("auditor", Role.AUDITOR),),
}
RESOURCE_TYPES = ("Observation", "DiagnosticReport", "Condition", "MedicationRequest", "Procedure", "ImagingStudy")
MAX_IN_FLIGHT = 2000

Progress = Callable[[str, int, int], None]
"""(phase, done, total)."""


@dataclass
class DemoSummary:
    """What the scenario did and where the network stands afterwards."""

    data_dir: Path
    organisations: list[tuple[str, str, str]]
    members_enrolled: int = 0
    patients_enrolled: int = 0
    records_registered: int = 0
    records_rejected: int = 0
    record_seconds: float = 0.0
    statuses: list[PeerStatus] = field(default_factory=list)
    blocks: int = 0
    transactions: int = 0
    proof_checked: str = ""
    sharing: SharingSummary | None = None

    @property
    def committed_per_second(self) -> float:
        return self.records_registered / self.record_seconds if self.record_seconds > 0 else 0.0

    @property
    def peers_agree(self) -> bool:
        return len({(s.height, s.block_hash, s.state_root) for s in self.statuses}) == 1

    @property
    def diverged(self) -> list[str]:
        return sorted({org for s in self.statuses for org in s.diverged})


def _staff(network: EmbeddedNetwork, summary: DemoSummary, progress: Progress) -> dict[str, list[MemberIdentity]]:
    """Enrol each organisation's staff (once: keys kept in the keystore are reused)."""
    staff: dict[str, list[MemberIdentity]] = {}
    plan = [(org, name, role) for org in network.orgs for name, role in STAFF_BY_KIND[org.kind]]
    for done, (org, name, role) in enumerate(plan, 1):
        keys = network.keys_dir(org.org_id)
        admin = LedgerClient(network.gateway(org.org_id), Credentials.of_member(network.admin(org.org_id)))
        if (keys / f"{name}.cert.pem").exists():
            identity = load_identity(keys, name)
        else:
            identity = network.ca(org.org_id).enrol(name, role, network.clock())
            admin.submit("identity", "register_member", {"certificate": identity.certificate.der})
            save_identity(keys, identity)
            summary.members_enrolled += 1
        staff.setdefault(org.org_id, []).append(identity)
        progress("enrolling staff", done, len(plan))
    return staff


def _wallets(network: EmbeddedNetwork, count: int) -> list[PatientWallet]:
    """The demo's patients' wallets (a real patient keeps theirs; the demo keeps them in wallets/)."""
    directory = network.data_dir / "wallets"
    wallets = [load_wallet(directory, pseudonym) for pseudonym in list_wallets(directory)[:count]]
    while len(wallets) < count:
        wallet = PatientWallet.generate()
        save_wallet(directory, wallet)
        wallets.append(wallet)
    return wallets


def _story_patient(network: EmbeddedNetwork, registrar: LedgerClient) -> PatientWallet:
    """A patient enrolled for the record-sharing story, so their trail shows just that story."""
    wallet = PatientWallet.generate()
    registrar.submit("identity", "register_patient", wallet.enrolment_args(network.channel))
    save_wallet(network.data_dir / "wallets", wallet)
    return wallet


def _enrol_patients(
    network: EmbeddedNetwork,
    registrars: list[LedgerClient],
    wallets: list[PatientWallet],
    summary: DemoSummary,
    progress: Progress,
) -> None:
    pending: list[Future[Receipt]] = []
    for index, wallet in enumerate(wallets):
        client = registrars[index % len(registrars)]
        if client.query("identity", "patient", id=wallet.pseudonym) is None:
            pending.append(
                client.send(client.prepare("identity", "register_patient", wallet.enrolment_args(network.channel)))
            )
    for done, future in enumerate(pending, 1):
        LedgerClient.wait(future)
        summary.patients_enrolled += 1
        progress("enrolling patients", done, len(pending))


def synthetic_record(rng: random.Random, patient: str, index: int) -> dict[str, object]:
    """A small FHIR-shaped record body standing in for real clinical content (never on the ledger)."""
    resource_type = RESOURCE_TYPES[index % len(RESOURCE_TYPES)]
    date = f"{rng.randint(2019, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return {
        "resourceType": resource_type,
        "subject": patient,
        "effectiveDate": date,
        "valueQuantity": {"value": str(rng.randint(30, 200)), "unit": "mg/dL"},
        "seq": index,
    }


def _register_records(
    registrars: dict[str, LedgerClient],
    wallets: list[PatientWallet],
    count: int,
    summary: DemoSummary,
    progress: Progress,
) -> str:
    rng = random.Random(20261129)
    orgs = sorted(registrars)
    in_flight: list[tuple[bytes, Future[Receipt]]] = []
    first_tx = b""
    done = 0
    started = time.perf_counter()

    def settle(batch: list[tuple[bytes, Future[Receipt]]]) -> None:
        nonlocal done
        for _, future in batch:
            receipt = LedgerClient.wait(future, check=False)
            if receipt.is_valid:
                summary.records_registered += 1
            else:
                summary.records_rejected += 1
            done += 1
            progress("registering records", done, count)

    for index in range(count):
        org = orgs[index % len(orgs)]
        wallet = wallets[rng.randrange(len(wallets))]
        content = synthetic_record(rng, wallet.pseudonym, index)
        tx = registrars[org].prepare(
            "records",
            "register",
            {
                "patient": wallet.pseudonym,
                "resource_type": content["resourceType"],
                "clinical_date": content["effectiveDate"],
                "content_hash": hashlib.sha256(encode(content)).digest(),
                "locator": f"vault://{org}/{index:08d}",
            },
        )
        first_tx = first_tx or tx.tx_id
        in_flight.append((tx.tx_id, registrars[org].send(tx)))
        if len(in_flight) >= MAX_IN_FLIGHT:
            settle(in_flight)
            in_flight = []
    settle(in_flight)
    summary.record_seconds = time.perf_counter() - started
    return first_tx.hex()


def run_foundation_scenario(
    data_dir: Path, records: int, *, fresh: bool = False, progress: Progress | None = None
) -> DemoSummary:
    """Run the whole scenario and return its summary; the network is stopped at the end."""
    report: Progress = progress or (lambda phase, done, total: None)
    network = EmbeddedNetwork.open_or_create(data_dir, fresh=fresh)
    summary = DemoSummary(Path(data_dir), [(o.org_id, o.kind.value, o.name) for o in network.orgs])
    with network:
        staff = _staff(network, summary, report)
        hospitals = [o.org_id for o in network.orgs if o.kind is OrgKind.HOSPITAL]
        registrars = {
            org: LedgerClient(network.gateway(org), Credentials.of_member(staff[org][0])) for org in hospitals
        }
        wallets = _wallets(network, max(10, records // 20))
        _enrol_patients(network, list(registrars.values()), wallets, summary, report)
        first_tx = _register_records(registrars, wallets, records, summary, report)
        network.wait_until_synced()
        client = next(iter(registrars.values()))
        proven = client.proof(bytes.fromhex(first_tx))
        record = client.query("records", "get", record_id=record_id_for(proven.tx_id))
        summary.proof_checked = (
            f"tx {first_tx[:16]}… is in block {proven.block_number} (record {record['record_id']}, "
            f"{record['resource_type']}); the proof checks against the attested block hash"
        )
        summary.sharing = run_sharing_scenario(network, staff, _story_patient(network, registrars["st-mary"]))
        network.wait_until_synced()
        summary.statuses = network.statuses()
        peer = next(network.iter_peers())
        summary.blocks = peer.store.height()
        summary.transactions = sum(len(b.transactions) for b in peer.store.blocks())
    return summary
