"""The contract framework: registration, dispatch, argument schemas, authorisation, events.

A contract is a named set of pure functions `apply(state, ctx, args)` that validate, then
write, then emit. Arguments are declared as frozen msgspec Structs and checked strictly
before the function runs; who may call a function (member roles, patients) is declared
beside it, so the dispatcher rejects an unauthorised signer before any contract code runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from medledger.core.identity import Role
from medledger.ledger.errors import TransactionRejected
from medledger.ledger.execution import Signer, SignerKind, TxContext
from medledger.ledger.receipts import RejectionCode
from medledger.ledger.state import StateReader, TxState

ArgsT = TypeVar("ArgsT", bound=msgspec.Struct)


class ContractError(TransactionRejected):
    """A contract's named refusal: `code` is UPPER_SNAKE (e.g. RECORD_EXISTS), `reason` a sentence."""


class Args(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every argument schema: frozen, and unknown fields are an error."""


@dataclass(frozen=True, slots=True)
class Authorisation:
    """Who may call a function."""

    roles: frozenset[Role] | None
    """Member roles allowed; None: any member; empty: no member."""
    patients: bool = False
    """Whether a patient (signing with their wallet key) may call it."""

    def check(self, signer: Signer, qualified_name: str) -> None:
        if signer.kind is SignerKind.PATIENT:
            if not self.patients:
                raise ContractError(RejectionCode.ROLE_NOT_PERMITTED, f"{qualified_name} cannot be called by a patient")
            return
        if self.roles is not None and signer.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles)) or "no member"
            raise ContractError(
                RejectionCode.ROLE_NOT_PERMITTED,
                f"{qualified_name} needs role {allowed}; signer has role {signer.role}",
            )


@dataclass(frozen=True, slots=True)
class ContractFunction(Generic[ArgsT]):
    """One callable function of a contract."""

    name: str
    """Function name as it appears in transactions."""
    args_type: type[ArgsT]
    """Schema of its arguments."""
    apply: Callable[[TxState, TxContext, ArgsT], None]
    """The pure state transition."""
    authorisation: Authorisation
    """Who may call it."""


@dataclass(frozen=True, slots=True)
class ContractQuery:
    """A read-only function clients call on a peer's committed state."""

    name: str
    """Query name."""
    args_type: type[msgspec.Struct]
    """Schema of its arguments."""
    run: Callable[[TxState, Any], Any]
    """Reads state, returns a canonical-encodable value."""


_schema_lock = threading.Lock()
_prepared_schemas: set[type] = set()


def prepare_schema(schema: type[msgspec.Struct]) -> None:
    """Have msgspec build its type information for `schema` now, in one thread at a time.

    msgspec caches a Struct's field types on the class and publishes the cache entry before its
    fields are filled in; a second thread converting the same Struct meanwhile reads an empty
    field and crashes the process (segmentation fault, msgspec 0.22 without free threading). Every
    schema is therefore built once under this lock before any conversion uses it: at registration,
    or at the first `parse_args` of a schema that was never registered. A schema msgspec cannot
    handle fails here, at import, rather than at its first transaction."""
    if schema in _prepared_schemas:
        return
    with _schema_lock:
        if schema not in _prepared_schemas:
            msgspec.msgpack.Decoder(schema)
            _prepared_schemas.add(schema)


def parse_args(args_type: type[ArgsT], args: Mapping[str, Any], qualified_name: str) -> ArgsT:
    """Check `args` strictly against the schema; BAD_ARGUMENTS names the offending field."""
    prepare_schema(args_type)
    try:
        return msgspec.convert(dict(args), type=args_type, strict=True)
    except msgspec.ValidationError as exc:
        raise ContractError(RejectionCode.BAD_ARGUMENTS, f"{qualified_name}: {exc}") from exc


class Contract:
    """A named set of functions and queries."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.functions: dict[str, ContractFunction[Any]] = {}
        self.queries: dict[str, ContractQuery] = {}

    def function(
        self,
        name: str,
        args: type[ArgsT],
        *,
        roles: Iterable[Role] | None = None,
        patients: bool = False,
    ) -> Callable[[Callable[[TxState, TxContext, ArgsT], None]], Callable[[TxState, TxContext, ArgsT], None]]:
        """Register `apply(state, ctx, args)` as function `name` of this contract."""
        authorisation = Authorisation(None if roles is None else frozenset(roles), patients)

        def register(apply: Callable[[TxState, TxContext, ArgsT], None]) -> Callable[[TxState, TxContext, ArgsT], None]:
            if name in self.functions:
                raise ValueError(f"{self.name}.{name} registered twice")
            prepare_schema(args)
            self.functions[name] = ContractFunction(name, args, apply, authorisation)
            return apply

        return register

    def query(
        self, name: str, args: type[ArgsT]
    ) -> Callable[[Callable[[TxState, ArgsT], Any]], Callable[[TxState, ArgsT], Any]]:
        """Register a read-only query."""

        def register(run: Callable[[TxState, ArgsT], Any]) -> Callable[[TxState, ArgsT], Any]:
            prepare_schema(args)
            self.queries[name] = ContractQuery(name, args, run)
            return run

        return register


GenesisHook = Callable[[TxState, Mapping[str, Any], int], None]


class ContractRegistry:
    """Dispatches transactions to contract functions: implements the ledger's ContractDispatcher."""

    def __init__(self, contracts: Iterable[Contract], genesis: GenesisHook) -> None:
        self.contracts: dict[str, Contract] = {}
        for contract in contracts:
            if contract.name in self.contracts:
                raise ValueError(f"contract {contract.name!r} registered twice")
            self.contracts[contract.name] = contract
        self._genesis = genesis

    def lookup(self, contract: str, function: str) -> ContractFunction[Any]:
        found = self.contracts.get(contract)
        if found is None:
            raise ContractError(RejectionCode.UNKNOWN_CONTRACT, f"no contract named {contract!r}")
        fn = found.functions.get(function)
        if fn is None:
            raise ContractError(RejectionCode.UNKNOWN_FUNCTION, f"contract {contract!r} has no function {function!r}")
        return fn

    def execute(self, state: TxState, ctx: TxContext, contract: str, function: str, args: Mapping[str, Any]) -> None:
        fn = self.lookup(contract, function)
        qualified = f"{contract}.{function}"
        parsed = parse_args(fn.args_type, args, qualified)
        fn.authorisation.check(ctx.signer, qualified)
        fn.apply(state, ctx, parsed)

    def apply_genesis(self, state: TxState, config: Mapping[str, Any], timestamp_ms: int) -> None:
        self._genesis(state, config, timestamp_ms)

    def query(self, reader: StateReader, contract: str, name: str, args: Mapping[str, Any]) -> Any:
        """Run a read-only query against committed state."""
        found = self.contracts.get(contract)
        if found is None:
            raise ContractError(RejectionCode.UNKNOWN_CONTRACT, f"no contract named {contract!r}")
        query = found.queries.get(name)
        if query is None:
            raise ContractError(RejectionCode.UNKNOWN_FUNCTION, f"contract {contract!r} has no query {name!r}")
        return query.run(TxState(reader), parse_args(query.args_type, args, f"{contract}.{name}"))
