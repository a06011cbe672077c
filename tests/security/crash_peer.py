"""A peer process for the crash loop: open a Peer on a data directory and commit pre-signed batches.

    python crash_peer.py WORKDIR

WORKDIR holds `plan.cbor` (the genesis configuration, the peer's organisation and the batches, as
canonical CBOR), `keys/` (the peer's identity) and `peer/` (the ledger, created on first run). The
process prints `ready <height>` once the peer is open (its start-up check passed), `committed <n>`
after each block is durable, and `done` when every batch is committed. The crash test kills it with
SIGKILL at random moments and checks the ledger after each kill.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medledger.contracts.default import default_registry
from medledger.core.encoding import decode
from medledger.core.identity import load_identity
from medledger.node.peer import Peer
from medledger.ordering.orderer import OrderedBatch

PLAN_FILE = "plan.cbor"
KEYS_DIRECTORY = "keys"
LEDGER_DIRECTORY = "peer"
ORDERER_ID = "crash-test"


def run(work: Path) -> None:
    plan = decode((work / PLAN_FILE).read_bytes())
    identity = load_identity(work / KEYS_DIRECTORY, "peer")
    peer = Peer(plan["org_id"], work / LEDGER_DIRECTORY, identity, default_registry())
    peer.bootstrap(plan["genesis"], plan["genesis"]["created_ms"])
    print(f"ready {peer.store.height()}", flush=True)
    for number, timestamp_ms, transactions in plan["batches"]:
        if number < peer.store.height():
            continue
        peer.apply_batch(OrderedBatch(number, timestamp_ms, tuple(transactions), ORDERER_ID))
        print(f"committed {number}", flush=True)
    peer.close()
    print("done", flush=True)


if __name__ == "__main__":
    run(Path(sys.argv[1]))
