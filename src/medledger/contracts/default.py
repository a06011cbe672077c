"""The contracts a medledger network runs, wired into one registry."""

from __future__ import annotations

from medledger.contracts.framework import ContractRegistry
from medledger.contracts.identity import IDENTITY, apply_genesis
from medledger.contracts.records import RECORDS


def default_registry() -> ContractRegistry:
    return ContractRegistry([IDENTITY, RECORDS], genesis=apply_genesis)
