"""The client side of a solo orderer served over HTTP (`medledger.ordering.solo_server`): an Orderer that a
peer process uses exactly as it uses the etcd one, and the attestation relay beside it.

A submission returns once the orderer's sequencer took it (as with the in-process solo orderer, a crash
of the orderer loses what it had taken but not yet cut). One that could not be sent (nothing listening)
is retried for a bounded time, so a restarting orderer costs a pause, not an error; one whose answer was
lost is reported, and may be submitted again (a ledger commits a transaction id once).

    OrderingError                  (medledger.ordering)
    └── OrdererUnreachable         the orderer did not answer: not running, a wrong address, or restarting
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

from medledger.core.encoding import decode
from medledger.core.errors import EncodingError
from medledger.ordering.orderer import OrderedBatch, Orderer, OrderingError

log = logging.getLogger(__name__)

LONG_POLL_S = 10.0
"""The longest one read request waits at the orderer (below the server's limit; a longer read asks again)."""
REQUEST_TIMEOUT_S = 10.0
"""How long a request may take beyond the time it asked the orderer to wait."""
SUBMIT_TIMEOUT_S = 10.0
"""How long a submission may take (the orderer waits up to 5 s while its queue is full)."""
CONNECT_RETRY_S = 10.0
"""How long a request that could not be sent is retried before OrdererUnreachable."""


class OrdererUnreachable(OrderingError):
    """The orderer did not answer: it is not running, the address is wrong, or it is restarting."""


class OrdererConnection:
    """HTTP calls to one orderer; safe to share between threads."""

    def __init__(self, url: str, *, connect_retry_s: float = CONNECT_RETRY_S) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"orderer address {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.connect_retry_s = connect_retry_s
        self._client = httpx.Client(
            base_url=self.url,
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        self.closed = False

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
        idempotent: bool = True,
        retry_for: float | None = None,
    ) -> httpx.Response:
        """Send one request; retry for `retry_for` s (default: the connection's) while it cannot be sent, and,
        if `idempotent`, whenever it broke."""
        deadline = time.monotonic() + (self.connect_retry_s if retry_for is None else retry_for)
        delay = 0.05
        while True:
            if self.closed:
                raise OrderingError(f"the connection to the orderer at {self.url} is closed")
            try:
                return self._client.request(method, path, content=content, params=params, timeout=timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure = f"nothing answers at {self.url} ({exc})"
            except httpx.TransportError as exc:
                failure = f"the orderer at {self.url} did not answer {method} {path}: {type(exc).__name__} {exc}"
                if not idempotent:
                    raise OrdererUnreachable(
                        f"{failure}; it may or may not have been taken: send it again "
                        "(a ledger commits a transaction id once)"
                    ) from exc
            except RuntimeError as exc:  # httpx refuses to send once the client is closed
                raise OrderingError(f"the connection to the orderer at {self.url} is closed") from exc
            if time.monotonic() + delay > deadline:
                raise OrdererUnreachable(f"{failure}; is the orderer running? (`medledger network status`)")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def close(self) -> None:
        self.closed = True
        self._client.close()


def refusal(response: httpx.Response) -> str:
    """What the orderer said was wrong with a request."""
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


class RemoteOrderer(Orderer):
    """An Orderer served by another process. `drain` stops this client taking transactions and asks the
    orderer to cut what it holds now; `close` also ends the connection. Neither stops the orderer itself."""

    def __init__(self, url: str, *, connect_retry_s: float = CONNECT_RETRY_S) -> None:
        self._connection = OrdererConnection(url, connect_retry_s=connect_retry_s)
        self.url = self._connection.url
        self._cond = threading.Condition()
        self._accepting = True
        self._inflight = 0

    def submit(self, tx: bytes) -> None:
        """Returns once the orderer's sequencer took `tx`."""
        with self._cond:
            if not self._accepting:
                raise OrderingError("this orderer client is drained or closed and takes no more transactions")
            self._inflight += 1
        try:
            response = self._connection.request(
                "POST", "/v1/transactions", content=tx, timeout=SUBMIT_TIMEOUT_S, idempotent=False
            )
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()
        if response.status_code != 202:
            raise OrderingError(f"the orderer at {self.url} did not take the transaction: {refusal(response)}")

    def read(self, number: int, timeout: float | None = None) -> OrderedBatch | None:
        """Batch `number`, waiting up to `timeout` s (None: until it is cut or this client closes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._connection.closed:
            wait = LONG_POLL_S if deadline is None else max(0.0, min(LONG_POLL_S, deadline - time.monotonic()))
            try:
                response = self._connection.request(
                    "GET",
                    f"/v1/batches/{number}",
                    params={"wait": round(wait, 3)},
                    timeout=wait + REQUEST_TIMEOUT_S,
                    retry_for=None if deadline is None else min(wait, self._connection.connect_retry_s),
                )
            except OrderingError:
                if self._connection.closed:
                    return None
                raise
            if response.status_code == 200:
                batch = OrderedBatch.decode(response.content)
                if batch.number != number:
                    raise OrderingError(f"the orderer at {self.url} answered batch {batch.number} for {number}")
                return batch
            if response.status_code == 404:
                return None
            if response.status_code != 204:
                raise OrderingError(f"the orderer at {self.url} did not deliver batch {number}: {refusal(response)}")
            if deadline is not None and time.monotonic() >= deadline:
                return None
        return None

    def height(self) -> int:
        response = self._connection.request("GET", "/v1/status")
        if response.status_code != 200:
            raise OrderingError(f"the orderer at {self.url} did not report its height: {refusal(response)}")
        try:
            return int(response.json()["height"])
        except (ValueError, KeyError, TypeError) as exc:
            raise OrderingError(f"the orderer at {self.url} sent an unreadable status: {response.text[:200]}") from exc

    def drain(self) -> None:
        """Stop taking transactions, wait for this client's submissions, and have the orderer cut what it holds."""
        with self._cond:
            if not self._accepting:
                return
            self._accepting = False
            while self._inflight:
                self._cond.wait(0.1)
        response = self._connection.request("POST", "/v1/cut")
        if response.status_code != 200:
            raise OrderingError(f"the orderer at {self.url} did not cut its pending batch: {refusal(response)}")

    def close(self) -> None:
        try:
            self.drain()
        except OrderingError as exc:  # closing must not fail because the orderer stopped first
            log.info("closing the client of %s: %s", self.url, exc)
        self._connection.close()


class RemoteAttestationRelay:
    """The attestation relay of a solo orderer served by another process (opaque bytes per block height)."""

    def __init__(self, url: str, *, connect_retry_s: float = 2.0) -> None:
        self._connection = OrdererConnection(url, connect_retry_s=connect_retry_s)
        self.url = self._connection.url

    def post(self, number: int, data: bytes) -> None:
        response = self._connection.request("POST", f"/v1/attestations/{number}", content=data)
        if response.status_code != 204:
            raise OrderingError(f"the relay at {self.url} did not take an attestation: {refusal(response)}")

    def fetch(self, number: int) -> list[bytes]:
        return self._entries(self._connection.request("GET", f"/v1/attestations/{number}"))

    def fetch_range(self, first: int, end: int) -> list[bytes]:
        """Every entry posted for blocks `first` to `end - 1` (at most MAX_RANGE heights) in one request."""
        return self._entries(self._connection.request("GET", "/v1/attestations", params={"first": first, "end": end}))

    def _entries(self, response: httpx.Response) -> list[bytes]:
        if response.status_code != 200:
            raise OrderingError(f"the relay at {self.url} did not list attestations: {refusal(response)}")
        try:
            found = decode(response.content)
        except EncodingError as exc:
            raise OrderingError(f"the relay at {self.url} sent attestations that are not canonical CBOR") from exc
        if not isinstance(found, list) or not all(isinstance(item, bytes) for item in found):
            raise OrderingError(f"the relay at {self.url} sent something other than a list of attestations")
        return found

    def close(self) -> None:
        self._connection.close()
