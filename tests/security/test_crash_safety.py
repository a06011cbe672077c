"""Crash safety: a peer process is killed with SIGKILL at random moments, 50 times, while it opens
its ledger and commits pre-signed batches (tests/security/crash_peer.py). After every kill the data
directory must pass SQLite's integrity check and `medledger verify` (verify_directory), hold every
block the process acknowledged as committed, and let the next process start and carry on; when a run
completes, its last block must be the one an uninterrupted run produces.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medledger.contracts.default import default_registry
from medledger.core.encoding import encode
from medledger.core.identity import MemberIdentity, OrgCA, OrgKind, Role, save_identity
from medledger.ledger.sqlite_store import SQLiteLedgerStore
from medledger.ledger.transactions import TransactionBody, new_nonce, sign_transaction
from medledger.node.peer import Peer
from medledger.node.verification import verify_directory
from medledger.ordering.orderer import OrderedBatch
from medledger.sdk import PatientWallet
from tests.conftest import START_MS
from tests.security.attacks import AttackClass, AttackLog
from tests.security.crash_peer import KEYS_DIRECTORY, LEDGER_DIRECTORY, ORDERER_ID, PLAN_FILE

HELPER = Path(__file__).with_name("crash_peer.py")
KILLS = 50
BATCHES = 30
PATIENTS_PER_BATCH = 4
"""Each batch enrols this many patients and registers a record for each patient of the batch before."""
CHANNEL = "crash-channel"
SEED = int(os.environ.get("MEDLEDGER_CRASH_SEED", "20260101"))
"""Fixed, so a failure replays; set MEDLEDGER_CRASH_SEED to explore other kill points."""
COMMITTED = re.compile(r"committed (\d+)")
"""What the peer process prints once a block is durable: the acknowledgement the test holds it to."""
EARLY_KILL_SHARE = 0.2
"""Share of kills aimed at start-up (opening and checking the ledger, or creating block 0)."""


@dataclass
class Plan:
    """What the peer process commits: the founding configuration and the batches."""

    org_id: str
    genesis: dict[str, Any]
    batches: list[tuple[int, int, list[bytes]]]

    def encode(self) -> bytes:
        return encode(
            {
                "org_id": self.org_id,
                "genesis": self.genesis,
                "batches": [[number, ts, transactions] for number, ts, transactions in self.batches],
            }
        )


@dataclass
class CrashCounts:
    """What the loop observed."""

    kills: int = 0
    during_start_up: int = 0
    runs_completed: int = 0
    acknowledged: int = 0
    """Blocks the processes reported committed, summed over the runs."""
    verified: int = 0
    lost: list[str] = field(default_factory=list)


def _signed(member: MemberIdentity, contract: str, function: str, args: dict[str, Any], at_ms: int) -> bytes:
    body = TransactionBody(
        CHANNEL, contract, function, args, f"member:{member.certificate.cert_id}", new_nonce(), at_ms
    )
    return sign_transaction(body, member.key).encoded


def build_plan(keys: Path) -> Plan:
    """Two hospitals; St Mary's registrar enrols patients and registers their records, batch by batch."""
    genesis_orgs = []
    identities: dict[str, MemberIdentity] = {}
    for org_id in ("st-mary", "city-general"):
        ca = OrgCA.create(org_id, OrgKind.HOSPITAL, START_MS)
        members = {role: ca.enrol(role.value, role, START_MS) for role in (Role.ADMIN, Role.PEER, Role.REGISTRAR)}
        identities.update({f"{org_id}/{role.value}": member for role, member in members.items()})
        genesis_orgs.append(
            {
                "org_id": org_id,
                "kind": OrgKind.HOSPITAL.value,
                "ca_certificate": ca.certificate_der,
                "members": [m.certificate.der for m in members.values()],
            }
        )
    save_identity(keys, identities["st-mary/peer"])
    registrar = identities["st-mary/registrar"]
    batches: list[tuple[int, int, list[bytes]]] = []
    previous: list[PatientWallet] = []
    for number in range(1, BATCHES + 1):
        at = START_MS + number * 1000
        wallets = [PatientWallet.generate() for _ in range(PATIENTS_PER_BATCH)]
        transactions = [
            _signed(registrar, "identity", "register_patient", w.enrolment_args(CHANNEL), at) for w in wallets
        ]
        transactions += [
            _signed(
                registrar,
                "records",
                "register",
                {
                    "patient": w.pseudonym,
                    "resource_type": "Observation",
                    "clinical_date": "2025-12-01",
                    "content_hash": os.urandom(32),
                    "locator": f"vault://st-mary/{os.urandom(16).hex()}",
                },
                at,
            )
            for w in previous
        ]
        batches.append((number, at, transactions))
        previous = wallets
    genesis = {"channel": CHANNEL, "rules": {}, "created_ms": START_MS, "orgs": genesis_orgs}
    return Plan("st-mary", genesis, batches)


def reference_run(plan: Plan, keys: Path, directory: Path) -> bytes:
    """The last block hash of an uninterrupted run of the same plan, in this process."""
    from medledger.core.identity import load_identity

    peer = Peer(plan.org_id, directory, load_identity(keys, "peer"), default_registry())
    try:
        peer.bootstrap(plan.genesis, plan.genesis["created_ms"])
        for number, ts, transactions in plan.batches:
            peer.apply_batch(OrderedBatch(number, ts, tuple(transactions), ORDERER_ID))
        last = peer.store.last_block()
        assert last is not None
        return last.hash
    finally:
        peer.close()


def check_directory(ledger_dir: Path, acknowledged_height: int) -> tuple[int, bytes | None]:
    """Integrity-check and verify the ledger a killed process left; return (height, last block hash)."""
    path = ledger_dir / "ledger.sqlite"
    if not path.exists():
        assert acknowledged_height == 0, f"blocks up to {acknowledged_height - 1} were acknowledged, no ledger file"
        return 0, None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (result,) = db.execute("PRAGMA integrity_check").fetchone()
    finally:
        db.close()
    assert result == "ok", f"SQLite integrity check: {result}"
    store = SQLiteLedgerStore(path, read_only=True)
    try:
        height = store.height()
        last = store.last_block()
    finally:
        store.close()
    assert height >= acknowledged_height, f"acknowledged {acknowledged_height} blocks, the ledger holds {height}"
    report = verify_directory(ledger_dir)
    assert report.ok, f"medledger verify after a kill: {report.fault}"
    return height, None if last is None else last.hash


def test_sigkill_at_random_points_never_leaves_a_half_written_ledger(tmp_path: Path, attacks: AttackLog) -> None:
    # Prepare
    work = tmp_path / "work"
    keys = work / KEYS_DIRECTORY
    plan = build_plan(keys)
    (work / PLAN_FILE).write_bytes(plan.encode())
    expected_last_hash = reference_run(plan, keys, tmp_path / "reference")
    ledger_dir = work / LEDGER_DIRECTORY
    rng = random.Random(SEED)
    counts = CrashCounts()
    acknowledged_height = 0
    attacks.tried(AttackClass.CRASH, f"SIGKILL of a committing peer at a random moment (seed {SEED})", times=KILLS)
    # Execute / Assert (each kill is checked before the next process starts)
    while counts.kills < KILLS:
        process = subprocess.Popen(
            [sys.executable, str(HELPER), str(work)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdout is not None
        first = b""
        early = rng.random() < EARLY_KILL_SHARE
        if early:
            time.sleep(rng.uniform(0.15, 0.45))
        else:
            first = process.stdout.readline()
            time.sleep(rng.uniform(0.0, 0.03))
        process.kill()
        rest, errors = process.communicate(timeout=30)
        lines = (first + rest).decode().split("\n")[:-1]  # complete lines only: a kill may cut the last
        assert process.returncode in (0, -9), f"the peer process failed on its own:\n{errors.decode()}"
        completed = "done" in lines
        if not completed:
            counts.kills += 1
            counts.during_start_up += not any(line.startswith("ready") for line in lines)
        committed = [int(match[1]) for line in lines if (match := COMMITTED.fullmatch(line))]
        counts.acknowledged += len(committed)
        if committed:
            acknowledged_height = max(committed) + 1
        height, last_hash = check_directory(ledger_dir, acknowledged_height)
        counts.verified += 1
        if completed:
            assert height == BATCHES + 1
            assert last_hash == expected_last_hash, "the interrupted runs did not produce the uninterrupted chain"
            counts.runs_completed += 1
            shutil.rmtree(ledger_dir)
            acknowledged_height = 0
    # Assert: a last, uninterrupted run carries the chain to its end, identical to the reference
    resumed = ledger_dir.exists()
    finished = subprocess.run([sys.executable, str(HELPER), str(work)], capture_output=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr.decode()
    height, last_hash = check_directory(ledger_dir, acknowledged_height)
    assert (height, last_hash) == (BATCHES + 1, expected_last_hash), "the interrupted chain ended differently"
    counts.runs_completed += resumed
    attacks.note(
        AttackClass.CRASH,
        f"{counts.kills} SIGKILLs ({counts.during_start_up} during start-up), {counts.verified} directories "
        f"integrity-checked and verified, {counts.acknowledged} blocks acknowledged, 0 lost, "
        f"{counts.runs_completed} interrupted chains carried to their end, identical to an uninterrupted run",
    )
