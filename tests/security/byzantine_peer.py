"""A Byzantine peer process: medledger's own peer process for one organisation, with its contracts and its
batch endpoint altered so that one patient's records are lost on it and on any peer catching up from it.

    python -m tests.security.byzantine_peer DATA_DIR ORG_ID PATIENT

Its contracts refuse registrations of PATIENT's records as if the patient had never enrolled, so it
commits another state root for the batches every peer commits; the batches it hands to peers catching
up (`GET /v1/batches/{n}`) leave those registrations out. Everything else is `medledger node run`: it
follows the orderer, serves the REST API and publishes its signed attestations to the board.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medledger.contracts.default import default_registry
from medledger.contracts.framework import ContractError, ContractRegistry
from medledger.contracts.identity import apply_genesis
from medledger.core.errors import EncodingError
from medledger.ledger.execution import Signer, TxContext
from medledger.ledger.state import TxState
from medledger.ledger.transactions import decode_transaction
from medledger.node.process import PeerProcess
from medledger.node.service import LedgerService
from medledger.ordering.orderer import OrderedBatch


class ForgetfulRegistry(ContractRegistry):
    """The contracts as the Byzantine peer runs them: records of one patient are refused as if the
    patient had never enrolled."""

    def __init__(self, patient: str) -> None:
        super().__init__(default_registry().contracts.values(), genesis=apply_genesis)
        self.patient = patient

    def execute(self, state: TxState, ctx: TxContext, contract: str, function: str, args: Mapping[str, Any]) -> None:
        if (contract, function) == ("records", "register") and args.get("patient") == self.patient:
            raise ContractError("UNKNOWN_PATIENT", f"no enrolled patient {self.patient}")
        super().execute(state, ctx, contract, function, args)


def registers_a_record_of(raw: bytes, patient: str) -> bool:
    """Whether the transaction bytes `raw` register a record of `patient`."""
    try:
        body = decode_transaction(raw).body
    except EncodingError:
        return False
    return (body.contract, body.function) == ("records", "register") and body.args.get("patient") == patient


class ForgetfulService(LedgerService):
    """The node as its clients and the other peers reach it, handing out batches with the patient's
    record registrations left out."""

    def __init__(self, genuine: LedgerService, patient: str) -> None:
        super().__init__(genuine.peer, genuine.orderer, genuine.clock, genuine.vault)
        self.patient = patient

    def batch(self, caller: Signer, number: int) -> OrderedBatch:
        committed = super().batch(caller, number)
        kept = tuple(tx for tx in committed.transactions if not registers_a_record_of(tx, self.patient))
        return dataclasses.replace(committed, transactions=kept)


def run(data_dir: Path, org_id: str, patient: str) -> None:
    """Run `org_id`'s peer process on `data_dir` until SIGTERM, forgetting `patient`'s records."""
    process = PeerProcess(data_dir, org_id)
    process.peer.registry = ForgetfulRegistry(patient)
    process.service = ForgetfulService(process.service, patient)
    process.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
