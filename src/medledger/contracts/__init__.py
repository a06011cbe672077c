"""Contracts: the framework and the contracts the ledger runs.

Each contract is a package beside this one with pure functions `apply(state, ctx, args)`.
`default_registry()` wires the contracts a medledger network runs by default.
"""

from medledger.contracts.framework import (
    Args,
    Authorisation,
    Contract,
    ContractError,
    ContractFunction,
    ContractQuery,
    ContractRegistry,
    parse_args,
)

__all__ = [
    "Args",
    "Authorisation",
    "Contract",
    "ContractError",
    "ContractFunction",
    "ContractQuery",
    "ContractRegistry",
    "parse_args",
]
