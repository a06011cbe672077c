"""JSON read without loss and written in one canonical byte form, for FHIR resources.

`loads` keeps every number with a fraction or exponent as an `ExactDecimal` that remembers the token
it was written with ("1.50" stays "1.50", "1e2" stays "1e2"), keeps integers as `int`, keeps strings
exactly (no Unicode normalisation), and refuses what would be silently lost elsewhere: duplicate keys
(Python keeps the last), NaN and Infinity, lone UTF-16 surrogates, input that is not UTF-8.

`canonical_bytes` writes the one byte form medledger hashes: UTF-8, no insignificant whitespace, object
keys sorted by Unicode code point, arrays in their order, strings escaped only where JSON requires it
(quote, backslash, control characters; everything else is written as itself), numbers exactly as
received. No float is accepted anywhere: a float has already lost the decimal's precision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeAlias

from medledger.standards.errors import FhirSyntaxError, show_value

JsonValue: TypeAlias = "bool | int | str | Decimal | list[JsonValue] | dict[str, JsonValue] | None"
"""A JSON value as `loads` returns it; numbers with a fraction or exponent are `ExactDecimal`."""

JsonObject: TypeAlias = "dict[str, JsonValue]"

MAX_DEPTH = 100
"""Deepest nesting accepted. FHIR resources, even with contained resources and extensions, stay far below."""


class ExactDecimal(Decimal):
    """A JSON number that remembers the exact token it was written with.

    It compares and computes like a Decimal; `str()` and the canonical form give back `text` unchanged,
    where `str(Decimal("1e2"))` would give "1E+2" and a float would give 100.0.
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> ExactDecimal:
        """Build from a JSON number token (not checked here: `loads` only passes tokens of the grammar)."""
        self = super().__new__(cls, text)
        object.__setattr__(self, "text", text)
        return self

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"ExactDecimal({self.text!r})"

    def __reduce__(self) -> tuple[type[ExactDecimal], tuple[str]]:
        return (type(self), (self.text,))

    def __copy__(self) -> ExactDecimal:
        return self

    def __deepcopy__(self, memo: object) -> ExactDecimal:
        return self


def _parse_int(token: str) -> int | ExactDecimal:
    # "-0" is the one JSON integer token that int() would print differently; keep its text.
    return ExactDecimal(token) if token == "-0" else int(token)


def _refuse_constant(token: str) -> None:
    raise FhirSyntaxError(f"{token} is not a JSON number (RFC 8259 has no NaN or Infinity)", value=token)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FhirSyntaxError(
                f"duplicate JSON key {key!r} in one object (JSON parsers would silently keep only one)",
                field=key,
                value=key,
            )
        result[key] = value
    return result


def _child(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def _check_tree(value: Any, path: str, depth: int) -> None:
    """Refuse lone surrogates (not encodable as UTF-8) and nesting beyond MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise FhirSyntaxError(f"JSON nests deeper than {MAX_DEPTH} levels", field=path)
    if isinstance(value, str):
        _check_string(value, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_tree(item, _child(path, index), depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_string(key, path)
            _check_tree(item, _child(path, key), depth + 1)


def _check_string(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FhirSyntaxError(
            f"string holds a lone UTF-16 surrogate {text[exc.start]!r} that no UTF-8 text can carry",
            field=path,
            value=show_value(text),
        ) from exc


def decode_text(data: bytes | bytearray | memoryview | str) -> str:
    """The JSON text of `data`: bytes must be UTF-8 (one leading byte-order mark is tolerated)."""
    if isinstance(data, str):
        return data[1:] if data.startswith("\ufeff") else data
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FhirSyntaxError(
            f"input is not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} ({exc.reason}); "
            "FHIR JSON is always UTF-8",
        ) from exc
    return text[1:] if text.startswith("\ufeff") else text


def loads(data: bytes | bytearray | memoryview | str) -> JsonValue:
    """Parse JSON without loss (see the module docstring); raise FhirSyntaxError naming the fault."""
    text = decode_text(data)
    try:
        value = json.loads(
            text,
            parse_float=ExactDecimal,
            parse_int=_parse_int,
            parse_constant=_refuse_constant,
            object_pairs_hook=_no_duplicate_keys,
        )
    except FhirSyntaxError:
        raise
    except json.JSONDecodeError as exc:
        raise FhirSyntaxError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise FhirSyntaxError(f"JSON nests deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # e.g. an integer token longer than Python's int digit limit
        raise FhirSyntaxError(f"not acceptable JSON: {exc}") from exc
    _check_tree(value, "$", 0)
    return value  # type: ignore[no-any-return]


def from_python(value: object, path: str = "$", depth: int = 0) -> JsonValue:
    """Copy an already-parsed value into the exact tree form, refusing floats and non-JSON types.

    Mappings become dicts (keys must be str), tuples and lists become lists, a plain Decimal becomes an
    ExactDecimal of its `str()`. A float is refused: its decimal precision is already gone.
    """
    if depth > MAX_DEPTH:
        raise FhirSyntaxError(f"value nests deeper than {MAX_DEPTH} levels", field=path)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        _check_string(value, path)
        return value
    if isinstance(value, ExactDecimal):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise FhirSyntaxError(f"{value} is not a JSON number", field=path, value=str(value))
        return ExactDecimal(str(value))
    if isinstance(value, float):
        raise FhirSyntaxError(
            f"float {value!r} is not accepted: its decimal precision is already lost; "
            "pass bytes, or parse JSON with parse_float=decimal.Decimal",
            field=path,
            value=repr(value),
        )
    if isinstance(value, (list, tuple)):
        return [from_python(item, _child(path, index), depth + 1) for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        result: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise FhirSyntaxError(f"object key {key!r} is not a string", field=path, value=repr(key))
            _check_string(key, path)
            result[key] = from_python(item, _child(path, key), depth + 1)
        return result
    raise FhirSyntaxError(f"a {type(value).__name__} is not a JSON value", field=path, value=show_value(value))


def _encode(value: object, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FhirSyntaxError(f"value nests deeper than {MAX_DEPTH} levels")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise FhirSyntaxError(f"{value} is not a JSON number", value=str(value))
        out.append(str(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, Mapping):
        keys = list(value)
        if not all(isinstance(key, str) for key in keys):
            raise FhirSyntaxError("object keys must be strings")
        out.append("{")
        for index, key in enumerate(sorted(keys)):
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, float):
        raise FhirSyntaxError(f"float {value!r} cannot be written canonically: use decimal.Decimal", value=repr(value))
    else:
        raise FhirSyntaxError(f"a {type(value).__name__} is not a JSON value", value=show_value(value))


def canonical_bytes(value: object) -> bytes:
    """The canonical UTF-8 JSON bytes of `value` (see the module docstring for the rules)."""
    out: list[str] = []
    _encode(value, out, 0)
    text = "".join(out)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FhirSyntaxError("a string holds a lone UTF-16 surrogate that UTF-8 cannot carry") from exc
