"""Many threads parse arguments of schemas they meet for the first time, with the interpreter switching
threads as often as it can.

    python -m tests.contracts.concurrent_schemas ROUNDS (registered|unregistered)

Each round defines a fresh argument schema (40 constrained fields and a nested Struct), then four
threads start `parse_args` on it at once; "registered" registers it as a contract function first.
Prints the number of rounds parsed; a crash of msgspec's type cache kills the process instead.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Annotated, Any

import msgspec

from medledger.contracts.framework import Args, Contract, ContractError, parse_args

FIELDS = 40
THREADS = 4


def fresh_schema(number: int) -> type[Args]:
    """A schema msgspec has not seen: a nested Struct and FIELDS pattern-checked strings."""
    namespace: dict[str, Any] = {"msgspec": msgspec, "Annotated": Annotated, "Args": Args}
    fields = "\n".join(
        f"    f{i}: Annotated[str, msgspec.Meta(pattern=r'^[a-z]{{1,{i + 2}}}$')] = 'a'" for i in range(FIELDS)
    )
    source = (
        f"class Inner{number}(msgspec.Struct, frozen=True):\n{fields}\n"
        f"class Schema{number}(Args, frozen=True):\n    inner: Inner{number}\n{fields}\n"
    )
    # A new class each round, so msgspec's per-class cache starts empty; compiled without this module's
    # `from __future__ import annotations`, so the field types are types, not strings to resolve.
    exec(compile(source, f"<schema {number}>", "exec", dont_inherit=True), namespace)
    schema: type[Args] = namespace[f"Schema{number}"]
    return schema


def parse_at_once(schema: type[Args]) -> None:
    """THREADS threads parse `schema` arguments at the same moment, some valid, some not."""
    barrier = threading.Barrier(THREADS)

    def parse() -> None:
        barrier.wait()
        valid_and_refused: tuple[dict[str, Any], ...] = ({"inner": {}}, {"inner": {"f0": "Z"}})
        for args in valid_and_refused:
            with contextlib.suppress(ContractError):  # the second is refused: both paths run
                parse_args(schema, args, "test.parse")

    threads = [threading.Thread(target=parse) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main(rounds: int, registered: bool) -> None:
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    contract = Contract("test")
    for number in range(rounds):
        schema = fresh_schema(number)
        if registered:
            contract.function(f"f{number}", schema)(lambda state, ctx, args: None)
        parse_at_once(schema)
    print(f"parsed {rounds} rounds")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] == "registered")
