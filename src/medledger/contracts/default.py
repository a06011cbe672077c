"""The contracts a medledger network runs, wired into one registry."""

from __future__ import annotations

from medledger.contracts.access import ACCESS
from medledger.contracts.audit import AUDIT
from medledger.contracts.consent import CONSENT
from medledger.contracts.framework import ContractRegistry
from medledger.contracts.identity import IDENTITY, apply_genesis
from medledger.contracts.records import RECORDS


def default_registry() -> ContractRegistry:
    return ContractRegistry([IDENTITY, RECORDS, CONSENT, ACCESS, AUDIT], genesis=apply_genesis)
