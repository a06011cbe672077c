"""A thin synchronous client for etcd's v3 JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`, `/v3/watch`, ...).

The gateway rather than aetcd (asyncio gRPC) or etcd3gw (one endpoint, requests): medledger is a threaded sync
codebase, the gateway ships inside every etcd, and this layer adds what the ordering backend needs and the
others lack: retries across all endpoints for a bounded time (a killed leader costs one or two seconds), one
set of connections per thread, and no protobuf version coupling. Requests go over the standard library's
keep-alive HTTP/1.1 connections (`http.client`), one per thread and endpoint: a peer makes one or more requests
for every block and batch of submissions, and httpx spent 750-960 µs of interpreter time on each against
225-290 µs this way (measured on a range request to a local member). A watch, a long-lived stream, gets a
connection of its own, closed when the stream ends.

    OrderingError                  (medledger.ordering)
    └── EtcdError                  etcd refused a request or could not be reached
        ├── EtcdUnavailable        no endpoint answered in time: the request may or may not have been applied
        ├── EtcdCompacted          the revision asked for was compacted away
        └── EtcdRequestError       etcd answered with an error a retry cannot fix (too large, invalid, ...)
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from medledger.ordering.orderer import OrderingError

log = logging.getLogger(__name__)

Json = dict[str, Any]
"""A decoded JSON object as the gateway sends and takes it."""
Key = bytes | str
"""An etcd key; a str is taken as UTF-8."""

GRPC_DEADLINE_EXCEEDED = 4
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_ABORTED = 10
GRPC_OUT_OF_RANGE = 11
GRPC_UNAVAILABLE = 14
_RETRIABLE_CODES = frozenset({GRPC_DEADLINE_EXCEEDED, GRPC_ABORTED, GRPC_UNAVAILABLE})
_RETRIABLE_MESSAGES = ("too many requests", "leader changed", "no leader", "timed out", "not capable", "stopped")

DEFAULT_REQUEST_TIMEOUT = 3.0
"""Seconds one HTTP request may take before the next endpoint is tried."""
PROPOSAL_TIMEOUT_S = 1.0
"""How long a write (a Raft proposal) may go unanswered before it is retried on the next member. A proposal in
flight when the leader dies is dropped without an answer, so with the default timeout every writer stalled for
3 s after a leader was killed, while a new leader is elected in about one. For writes that are safe to repeat:
a put of the same value, or a txn guarded by its compares."""
DEFAULT_RETRY_FOR = 15.0
"""Seconds a request is retried across endpoints before EtcdUnavailable (a leader change takes 1-2 s)."""
REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}
"""The gateway passes this on as gRPC metadata: a member that lost its leader then fails the request at once
("no leader", retried elsewhere) instead of holding it until a timeout, and ends its watches."""
_POST_HEADERS = {"Content-Type": "application/json", **REQUIRE_LEADER}
MAX_TXN_OPS = 128
"""etcd's default --max-txn-ops: the most operations one txn (and each nested txn) may hold."""


class EtcdError(OrderingError):
    """etcd refused a request or could not be reached."""


class EtcdUnavailable(EtcdError):
    """No endpoint answered within the retry budget; the request may or may not have been applied."""


class EtcdCompacted(EtcdError):
    """The revision a request or watch asked for was compacted away."""

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class EtcdRequestError(EtcdError):
    """etcd answered with an error that retrying cannot fix."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One stored key as etcd reports it."""

    key: bytes
    value: bytes
    create_revision: int
    """The revision of the put that created the key (0: absent)."""
    mod_revision: int
    """The revision of the last put to the key."""
    version: int
    """How many puts the key had since it was created (1 right after creation)."""


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """One message of a watch stream: every event of one or more whole revisions."""

    header_revision: int
    events: tuple[KeyValue, ...]
    """Created or modified keys, in the order etcd applied them (deletes are filtered out)."""


# encoding helpers ------------------------------------------------------------------------
def as_bytes(key: Key) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


def b64(data: Key) -> str:
    return base64.b64encode(as_bytes(data)).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: Key) -> bytes:
    """The range end that makes `[prefix, end)` cover exactly the keys starting with `prefix`."""
    raw = bytearray(as_bytes(prefix))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"  # every key


def parse_kv(item: Mapping[str, Any]) -> KeyValue:
    return KeyValue(
        key=unb64(item.get("key")),
        value=unb64(item.get("value")),
        create_revision=int(item.get("create_revision", 0)),
        mod_revision=int(item.get("mod_revision", 0)),
        version=int(item.get("version", 0)),
    )


def header_revision(result: Mapping[str, Any]) -> int:
    return int(result.get("header", {}).get("revision", 0))


# txn building blocks (JSON shapes of etcdserverpb.Compare / RequestOp) ----------------------
def compare_absent(key: Key) -> Json:
    """Holds while `key` does not exist (its create_revision is 0)."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def compare_value(key: Key, value: bytes) -> Json:
    """Holds while `key` exists and holds exactly `value`."""
    return {"key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(value)}


def compare_mod_revision(key: Key, revision: int) -> Json:
    """Holds while `key` was last written at `revision` (0: the key is absent)."""
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


def put_op(key: Key, value: bytes) -> Json:
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def range_op(key: Key, range_end: Key | None = None, *, limit: int = 0, keys_only: bool = False) -> Json:
    body: Json = {"key": b64(key)}
    if range_end is not None:
        body["range_end"] = b64(range_end)
    if limit:
        body["limit"] = str(limit)
    if keys_only:
        body["keys_only"] = True
    return {"request_range": body}


def delete_op(key: Key, range_end: Key | None = None) -> Json:
    body: Json = {"key": b64(key)}
    if range_end is not None:
        body["range_end"] = b64(range_end)
    return {"request_delete_range": body}


def txn_op(compare: Sequence[Json], success: Sequence[Json], failure: Sequence[Json] = ()) -> Json:
    """A nested txn (its operations count against the parent's --max-txn-ops budget)."""
    return {"request_txn": {"compare": list(compare), "success": list(success), "failure": list(failure)}}


def range_kvs(response_op: Mapping[str, Any]) -> list[KeyValue]:
    """The keys of a `response_range` inside a txn response."""
    return [parse_kv(item) for item in response_op.get("response_range", {}).get("kvs", [])]


class EtcdClient:
    """Calls the v3 JSON gateway of a cluster, failing over between endpoints with bounded retries.

    Safe to share between threads: every thread gets its own connection to each endpoint. Retrying a write whose
    answer was lost can apply it twice, so callers retry only writes that are create-only, compare-and-swap
    or idempotent (an overwrite with the same value, a delete).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        retry_for: float = DEFAULT_RETRY_FOR,
    ) -> None:
        if not endpoints:
            raise ValueError("an etcd client needs at least one endpoint")
        self.endpoints = [endpoint.rstrip("/") for endpoint in endpoints]
        self.request_timeout = request_timeout
        self.retry_for = retry_for
        self._current = 0
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        """Every thread's keep-alive connections (for requests), to close them all."""
        self._connections_lock = threading.Lock()
        self._closed = False

    # plumbing ---------------------------------------------------------------------------------
    def _connection(self, endpoint: str) -> http.client.HTTPConnection:
        connections: dict[str, http.client.HTTPConnection] | None = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        connection = connections.get(endpoint)
        if connection is None:
            if self._closed:
                raise EtcdError("the etcd client is closed")
            connection = self._open(endpoint, timeout=self.request_timeout)
            connections[endpoint] = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @staticmethod
    def _open(endpoint: str, *, timeout: float) -> http.client.HTTPConnection:
        """A new (not yet connected) connection to `endpoint` (http:// or https://host:port)."""
        url = urllib.parse.urlsplit(endpoint)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        return kind(url.hostname or "localhost", url.port, timeout=timeout)

    def _drop(self, endpoint: str) -> None:
        connection = self._local.connections.pop(endpoint, None)
        if connection is not None:
            connection.close()
            with self._connections_lock:
                if connection in self._connections:  # not if close() took the list meanwhile
                    self._connections.remove(connection)

    def _post(self, endpoint: str, path: str, payload: bytes, timeout: float) -> tuple[int, bytes]:
        """POST `payload` on this thread's connection to `endpoint`: (HTTP status, body). A kept-alive
        connection the member closed meanwhile is replaced once; any other failure raises."""
        reused = self._connection(endpoint).sock is not None
        try:
            return self._exchange(endpoint, path, payload, timeout)
        except (ConnectionResetError, BrokenPipeError):  # http.client.RemoteDisconnected included
            if not reused:
                raise
        return self._exchange(endpoint, path, payload, timeout)

    def _exchange(self, endpoint: str, path: str, payload: bytes, timeout: float) -> tuple[int, bytes]:
        """One request and its answer; on any failure the connection is closed and dropped."""
        connection = self._connection(endpoint)
        try:
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            connection.timeout = timeout
            connection.request("POST", path, body=payload, headers=_POST_HEADERS)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self._drop(endpoint)
            raise

    def _rotate(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self.endpoints)

    def call(self, method: str, body: Mapping[str, Any], *, timeout: float | None = None) -> Json:
        """POST `body` to `/v3/<method>`, retrying across endpoints; the decoded answer or an EtcdError."""
        deadline = time.monotonic() + self.retry_for
        delay, attempt, last_error = 0.05, 0, "no attempt made"
        payload = json.dumps(body).encode()
        path = f"/v3/{method}"
        while True:
            if self._closed:
                raise EtcdError("the etcd client is closed")
            index = self._current
            endpoint = self.endpoints[index]
            try:
                status, answer = self._post(endpoint, path, payload, timeout or self.request_timeout)
            except (OSError, http.client.HTTPException) as exc:
                last_error = f"{endpoint}: {type(exc).__name__} {exc}".strip()
            else:
                if status == 200:
                    try:
                        result: Json = json.loads(answer)
                    except ValueError as exc:  # a body cut short by a dying member: ask another
                        last_error = f"{endpoint}: unreadable answer ({exc})"
                    else:
                        return result
                else:
                    code, message = _gateway_error(status, answer)
                    if not _retriable(code, message):
                        if code == GRPC_OUT_OF_RANGE and "compacted" in message:
                            raise EtcdCompacted(f"etcd {method}: {message}")
                        raise EtcdRequestError(f"etcd {method} refused: {message} (gRPC code {code})", code)
                    last_error = f"{endpoint}: {message} (gRPC code {code})"
            self._rotate(index)
            attempt += 1
            if time.monotonic() >= deadline:
                raise EtcdUnavailable(
                    f"etcd did not answer {method} within {self.retry_for:.0f} s on {', '.join(self.endpoints)} "
                    f"(last error: {last_error}); the request may or may not have been applied"
                )
            if attempt % len(self.endpoints) == 0:  # every endpoint failed once: back off before the next round
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.5)

    def close(self) -> None:
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    # the KV API ---------------------------------------------------------------------------------
    def range(
        self,
        key: Key,
        range_end: Key | None = None,
        *,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        sort_target: str | None = None,
        sort_order: str | None = None,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
        serializable: bool = False,
    ) -> tuple[list[KeyValue], int, bool]:
        """The keys in `[key, range_end)` (or `key` alone): (keys, header revision, more keys beyond limit).

        `serializable`: answered by the member asked from its own copy, without a quorum round (it may lag
        the leader by the writes in flight); for polls that are repeated anyway."""
        body: Json = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        for name, number in (
            ("limit", limit),
            ("revision", revision),
            ("min_create_revision", min_create_revision),
            ("max_create_revision", max_create_revision),
        ):
            if number:
                body[name] = str(number)
        if keys_only:
            body["keys_only"] = True
        if serializable:
            body["serializable"] = True
        if sort_target:
            body["sort_target"] = sort_target
        if sort_order:
            body["sort_order"] = sort_order
        result = self.call("kv/range", body)
        kvs = [parse_kv(item) for item in result.get("kvs", [])]
        return kvs, header_revision(result), bool(result.get("more", False))

    def get(self, key: Key) -> KeyValue | None:
        kvs, _, _ = self.range(key)
        return kvs[0] if kvs else None

    def put(self, key: Key, value: bytes, *, timeout: float | None = None) -> int:
        """Store `value` under `key`; the revision of the write."""
        return header_revision(self.call("kv/put", {"key": b64(key), "value": b64(value)}, timeout=timeout))

    def txn(
        self,
        compare: Sequence[Json],
        success: Sequence[Json],
        failure: Sequence[Json] = (),
        *,
        timeout: float | None = None,
    ) -> Json:
        """One atomic txn; the answer holds `succeeded` (absent when false), `responses` and the header."""
        body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
        return self.call("kv/txn", body, timeout=timeout)

    def delete_range(self, key: Key, range_end: Key | None = None) -> int:
        """Delete `key` (or `[key, range_end)`); how many keys went."""
        body: Json = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        return int(self.call("kv/deleterange", body).get("deleted", 0))

    def compact(self, revision: int) -> bool:
        """Drop the history before `revision`; False if it was compacted that far already."""
        try:
            self.call("kv/compaction", {"revision": str(revision)})
        except EtcdCompacted:
            return False
        return True

    def status(self, endpoint: str | None = None, *, timeout: float = 1.0) -> Json:
        """`/v3/maintenance/status` of one member (no failover when `endpoint` is named)."""
        if endpoint is None:
            return self.call("maintenance/status", {})
        try:
            status, answer = self._post(endpoint.rstrip("/"), "/v3/maintenance/status", b"{}", timeout)
        except (OSError, http.client.HTTPException) as exc:
            raise EtcdUnavailable(f"status of {endpoint}: {type(exc).__name__} {exc}") from exc
        if status != 200:
            code, message = _gateway_error(status, answer)
            raise EtcdRequestError(f"status of {endpoint}: {message}", code)
        result: Json = json.loads(answer)
        return result

    def member_list(self) -> list[Json]:
        members: list[Json] = self.call("cluster/member/list", {}).get("members", [])
        return members

    # watching -------------------------------------------------------------------------------------
    def watch(
        self,
        key: Key,
        range_end: Key | None,
        start_revision: int,
        *,
        idle_timeout: float,
        deletes: bool = False,
    ) -> Iterator[WatchBatch]:
        """Stream the changes of `[key, range_end)` from `start_revision` on, from one endpoint.

        Ends normally when nothing arrived for `idle_timeout` seconds (reconnect from the revision after the
        last batch to go on); raises EtcdCompacted if `start_revision` is compacted, EtcdUnavailable if the
        endpoint failed (the next call uses another endpoint).
        """
        create: Json = {"key": b64(key), "start_revision": str(start_revision)}
        if range_end is not None:
            create["range_end"] = b64(range_end)
        if not deletes:
            create["filters"] = ["NODELETE"]
        index = self._current
        endpoint = self.endpoints[index]
        # A connection of its own: the stream holds it until it ends, and it is closed then.
        connection = self._open(endpoint, timeout=min(1.0, self.request_timeout))
        try:
            try:
                connection.connect()
            except OSError as exc:
                self._rotate(index)
                raise EtcdUnavailable(f"watch on {endpoint}: cannot connect ({type(exc).__name__} {exc})") from exc
            assert connection.sock is not None
            connection.sock.settimeout(idle_timeout)
            payload = json.dumps({"create_request": create}).encode()
            connection.request("POST", "/v3/watch", body=payload, headers=_POST_HEADERS)
            response = connection.getresponse()
            if response.status != 200:
                code, message = _gateway_error(response.status, response.read())
                raise EtcdRequestError(f"watch on {endpoint} refused: {message}", code)
            while line := response.readline():
                if not line.strip():
                    continue
                message_json = json.loads(line)
                if "error" in message_json:
                    self._rotate(index)
                    raise EtcdUnavailable(f"watch on {endpoint} failed: {message_json['error']}")
                result = message_json.get("result", {})
                if result.get("canceled"):
                    compact_revision = int(result.get("compact_revision", 0))
                    if compact_revision:
                        raise EtcdCompacted(
                            f"watch from revision {start_revision}: compacted up to {compact_revision}",
                            compact_revision,
                        )
                    self._rotate(index)  # e.g. the member lost its leader
                    raise EtcdUnavailable(f"watch on {endpoint} canceled: {result.get('cancel_reason', '')}")
                events = tuple(
                    parse_kv(event["kv"]) for event in result.get("events", []) if event.get("type") != "DELETE"
                )
                if events:
                    yield WatchBatch(header_revision(result), events)
        except TimeoutError:  # nothing arrived for idle_timeout: the caller reconnects from where it was
            return
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._rotate(index)
            raise EtcdUnavailable(f"watch on {endpoint} broke: {type(exc).__name__} {exc}") from exc
        finally:
            connection.close()

    def wait_for_key(self, key: Key, start_revision: int, timeout: float) -> KeyValue | None:
        """The first write of `key` at or after `start_revision`, waiting up to `timeout` s; None if none came."""
        try:
            for batch in self.watch(key, None, start_revision, idle_timeout=max(timeout, 0.001)):
                return batch.events[0]
        except EtcdError as exc:
            log.debug("waiting for %r: %s", key, exc)
        return None


def _gateway_error(status: int, answer: bytes) -> tuple[int, str]:
    """The gRPC code and message of a gateway's error answer (HTTP status `status`, body `answer`)."""
    text = answer.decode("utf-8", "replace")
    try:
        body = json.loads(answer)
        return int(body.get("code", 0)), str(body.get("message") or body.get("error") or text)
    except (ValueError, AttributeError, TypeError):
        return 0, f"HTTP {status}: {text[:200]}"


def _retriable(code: int, message: str) -> bool:
    if code in _RETRIABLE_CODES:
        return True
    lowered = message.lower()
    return any(fragment in lowered for fragment in _RETRIABLE_MESSAGES) and "too large" not in lowered


class EtcdKV:
    """Plain key-value access to the cluster for the node layer (attestations, peer directories, ...).

    Every method retries across endpoints for a bounded time; writes are idempotent or create-only.
    """

    def __init__(self, endpoints: Sequence[str], *, retry_for: float = DEFAULT_RETRY_FOR) -> None:
        self.client = EtcdClient(endpoints, retry_for=retry_for)

    def put(self, key: Key, value: bytes) -> None:
        self.client.put(key, value, timeout=PROPOSAL_TIMEOUT_S)

    def get(self, key: Key) -> bytes | None:
        found = self.client.get(key)
        return None if found is None else found.value

    def get_prefix(self, prefix: Key, *, page: int = 1000) -> list[tuple[bytes, bytes]]:
        """Every (key, value) under `prefix`, in key order, read page by page at one revision."""
        return self.get_range(prefix, prefix_end(prefix), page=page)

    def get_range(
        self, start: Key, end: Key, *, page: int = 1000, serializable: bool = False
    ) -> list[tuple[bytes, bytes]]:
        """Every (key, value) in `[start, end)`, in key order, read page by page at one revision
        (`serializable`: from the asked member's own copy, see `EtcdClient.range`)."""
        first, last, revision = as_bytes(start), as_bytes(end), 0
        found: list[tuple[bytes, bytes]] = []
        while True:
            kvs, header, more = self.client.range(first, last, limit=page, revision=revision, serializable=serializable)
            revision = revision or header
            found.extend((kv.key, kv.value) for kv in kvs)
            if not more or not kvs:
                return found
            first = kvs[-1].key + b"\0"

    def create_if_absent(self, key: Key, value: bytes) -> bool:
        """Store `value` unless `key` exists; True if this call (or a lost-answer retry of it) stored it."""
        result = self.client.txn([compare_absent(key)], [put_op(key, value)], [range_op(key)])
        if result.get("succeeded"):
            return True
        existing = range_kvs(result.get("responses", [{}])[0])
        # a retry after a lost answer finds its own write: same value, so it still counts as ours
        return bool(existing) and existing[0].value == value and existing[0].version == 1

    def delete_prefix(self, prefix: Key) -> int:
        return self.client.delete_range(prefix, prefix_end(prefix))

    def status(self) -> Json:
        return self.client.status()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> EtcdKV:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
