"""Errors of the ledger layer.

MedledgerError (core)
└── LedgerError
    ├── TransactionRejected     a transaction refused with a named reason code
    ├── StoreError              the block store or world state cannot be read or written
    └── IntegrityError          stored data that does not match what the chain proves
"""

from __future__ import annotations

from medledger.core.errors import MedledgerError


class LedgerError(MedledgerError):
    """Root of ledger errors."""


class TransactionRejected(LedgerError):
    """A transaction refused with a reason code (e.g. BAD_SIGNATURE) and a sentence saying why."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class StoreError(LedgerError):
    """The block store could not be opened, read or written."""


class IntegrityError(LedgerError):
    """Stored data disagrees with what the chain proves; `location` names the first broken place."""

    def __init__(self, location: str, problem: str) -> None:
        super().__init__(f"{location}: {problem}")
        self.location = location
        self.problem = problem
