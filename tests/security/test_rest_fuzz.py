"""The REST API fuzzed from its own published OpenAPI document with schemathesis, in-process over
ASGI: for every operation, schema-conforming and schema-violating requests, sent unsigned or signed
by a registrar, an auditor or a patient. No request may crash a handler or get a 500; every 4xx
carries an `error` (or FastAPI's `detail`) saying what was wrong.

Signing needs the exact bytes the server sees, so a small ASGI middleware in front of the app signs
requests that carry `X-Fuzz-As: <who>` the way a client would (addressed to St Mary's node, with a
fresh nonce), and leaves the others as generated.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from starlette.requests import Request
from starlette.testclient import TestClient

from medledger.api import create_app
from medledger.core.identity import Role
from medledger.node.network import EmbeddedNetwork
from medledger.node.service import QUERY_RULES, LedgerService
from medledger.ordering.cutter import CutterConfig
from medledger.sdk import Credentials, PatientWallet
from medledger.sdk.rest import signed_headers
from tests.conftest import ManualClock, member_client
from tests.security.attacks import AttackClass, AttackLog

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

EXAMPLES_PER_OPERATION = 50
SIGNER_HEADER = "x-fuzz-as"
CALLERS = (None, "registrar", "auditor", "patient")
NODE = "st-mary"
"""The organisation whose node is fuzzed; signed requests are addressed to it."""


def _published_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the OpenAPI document the app publishes."""
    document = create_app(cast(LedgerService, None)).openapi()
    return sorted((method.upper(), path) for path, item in document["paths"].items() for method in item)


OPERATIONS = _published_operations()


class SigningMiddleware:
    """Signs a request as the caller its `X-Fuzz-As` header names, over the exact path and body."""

    def __init__(self, app: AsgiApp, callers: dict[str, Credentials], clock: Callable[[], int]) -> None:
        self.app = app
        self.callers = callers
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != SIGNER_HEADER.encode()]
        who = dict(scope["headers"]).get(SIGNER_HEADER.encode())
        if who is None:
            await self.app(scope, receive, send)
            return
        body, messages = b"", []
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = Request(scope).url
        path = url.path + (f"?{url.query}" if url.query else "")
        signed = signed_headers(self.callers[who.decode()], scope["method"], path, body, self.clock(), node=NODE)
        kept = [(k, v) for k, v in headers if not k.lower().startswith(b"x-medledger-")]
        scope = {**scope, "headers": kept + [(k.lower().encode(), v.encode()) for k, v in signed.items()]}

        async def replay() -> Message:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        await self.app(scope, replay, send)


@dataclass
class FuzzedApi:
    schema: Any
    """The schemathesis schema loaded from the app's /openapi.json."""
    app: SigningMiddleware
    """The app behind the signing middleware."""
    network: EmbeddedNetwork
    patient: str
    """An enrolled patient's pseudonym."""


@pytest.fixture(scope="module")
def fuzzed_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedApi]:
    """St Mary's node (with its vault) on a running network, behind the signing middleware."""
    clock = ManualClock()
    network = EmbeddedNetwork.create(
        tmp_path_factory.mktemp("rest-fuzz") / "net", clock=clock, cutter=CutterConfig(max_tx=100, time_to_cut_ms=5)
    )
    network.start()
    try:
        registrar_client, registrar = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
        _, auditor = member_client(network, "health-authority", "auditor", Role.AUDITOR)
        patient = PatientWallet.generate()
        registrar_client.submit("identity", "register_patient", patient.enrolment_args(network.channel))
        assert network.orderer is not None
        service = LedgerService(network.peers[NODE], network.orderer, clock, network.vault_service(NODE))
        callers = {
            "registrar": Credentials.of_member(registrar),
            "auditor": Credentials.of_member(auditor),
            "patient": Credentials.of_patient(patient),
        }
        app = SigningMiddleware(cast(AsgiApp, create_app(service)), callers, clock)
        yield FuzzedApi(schemathesis.openapi.from_asgi("/openapi.json", app), app, network, patient.pseudonym)
    finally:
        network.stop()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_request_crashes_the_api_or_gets_a_500(
    fuzzed_api: FuzzedApi, attacks: AttackLog, method: str, path: str
) -> None:
    # Prepare
    operation = fuzzed_api.schema[path][method]
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))
    tried = 0

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, who=st.sampled_from(CALLERS))
    def fuzz(case: Any, who: str | None) -> None:
        nonlocal tried
        tried += 1
        response = case.call(headers={} if who is None else {SIGNER_HEADER: who})
        assert response.status_code < 500, f"{method} {path} answered {response.status_code}: {response.text[:300]}"
        if response.status_code >= 400:
            body = json.loads(response.text)
            assert isinstance(body, dict) and (body.get("error") or body.get("detail")), response.text[:300]

    # Execute / Assert
    fuzz()
    attacks.tried(AttackClass.FUZZ, f"REST {method} {path} (schemathesis)", times=tried)


QUERY_FIELDS = (
    "patient", "record_id", "decision_id", "requester", "id", "at_ms", "active_at", "events", "limit",
    "org_id", "member_id", "role", "purpose", "action", "resource_type",
)  # fmt: skip
"""Argument names the contract queries take; the fuzz mixes them with names no query takes."""
HEX = st.sampled_from("0123456789abcdef")
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=20)
    | st.text(HEX, min_size=32, max_size=32)
    | st.text(HEX, min_size=64, max_size=64),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def test_every_readable_query_answers_random_arguments_without_a_500(fuzzed_api: FuzzedApi, attacks: AttackLog) -> None:
    # Prepare: each (contract, query) of the read-rules table, with random arguments, by random callers
    queries = sorted(QUERY_RULES)
    arguments = st.dictionaries(st.one_of(st.sampled_from(QUERY_FIELDS), st.text(max_size=8)), JSON_VALUES, max_size=5)
    tried = 0

    @settings(
        max_examples=EXAMPLES_PER_OPERATION * 4, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(query=st.sampled_from(queries), args=arguments, who=st.sampled_from(CALLERS), own=st.booleans())
    def fuzz(query: tuple[str, str], args: dict[str, Any], who: str | None, own: bool) -> None:
        nonlocal tried
        tried += 1
        if own:
            args = {**args, "patient": fuzzed_api.patient}
        headers = {"Content-Type": "application/json"} | ({} if who is None else {SIGNER_HEADER: who})
        response = client.post(f"/v1/queries/{query[0]}/{query[1]}", content=json.dumps(args).encode(), headers=headers)
        assert response.status_code < 500, f"{query} {args}: {response.status_code} {response.text[:300]}"
        if response.status_code >= 400:
            assert response.json().get("error") or response.json().get("detail"), response.text[:300]

    # Execute / Assert
    with TestClient(cast(Any, fuzzed_api.app)) as client:
        fuzz()
    attacks.tried(AttackClass.FUZZ, "REST POST /v1/queries for every readable query, random arguments", times=tried)
