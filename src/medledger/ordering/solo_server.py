"""The solo orderer served over HTTP, so peers in other processes share one sequencer, plus the
attestation relay they exchange block attestations through. `medledger orderer run` serves it;
`medledger.ordering.remote` is its client.

    POST /v1/transactions            body: the transaction bytes; 202 once the sequencer took it
    GET  /v1/batches/{n}?wait=S      200 application/cbor (OrderedBatch.encode); 204 if not cut within S s;
                                     404 if n is below the log's first batch
    GET  /v1/status                  {"orderer": "solo", "height": next batch number}
    POST /v1/cut                     cut what is pending now; {"height": ...}
    POST /v1/attestations/{n}        body: a signed attestation; 204 (posting it again changes nothing)
    GET  /v1/attestations/{n}        200 application/cbor: the list of attestations posted for block n
    GET  /v1/attestations?first=a&end=b   the same for blocks a to b - 1 (at most 256 heights)

Errors are JSON `{"error": "..."}`: 400 bad input, 413 a transaction over the batch limit, 422 a
malformed number, 503 the orderer takes no more transactions. The transaction bytes are not checked
here: every peer validates what it executes, and commits a transaction id once, so submitting the
same transaction again is safe.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio.to_thread
import uvicorn
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from medledger import __version__
from medledger.core.encoding import encode
from medledger.core.errors import MedledgerError
from medledger.ordering.orderer import OrderingError
from medledger.ordering.relay import AttestationRefused, AttestationRelay
from medledger.ordering.solo import SoloOrderer

MAX_WAIT_S = 30.0
"""The longest a read waits for its batch in one request (clients ask again)."""
MAX_NUMBER = 2**63 - 1
"""SQLite's largest integer: a larger batch number is refused with 422."""
WORKER_THREADS = 256
"""Threads for blocking calls: every peer holds one in a waiting read, so the default of 40 is too few."""
CBOR = "application/cbor"

BatchNumber = Annotated[int, Path(ge=0, le=MAX_NUMBER, description="A block height.")]


def create_orderer_app(orderer: SoloOrderer, relay: AttestationRelay) -> FastAPI:
    """The HTTP face of one solo orderer and its attestation relay; each handler decodes, calls, encodes."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        yield

    app = FastAPI(
        title="medledger solo orderer",
        version=__version__,
        description="Orders transactions into numbered batches for every peer, and relays block attestations.",
        lifespan=lifespan,
    )

    @app.exception_handler(AttestationRefused)
    async def refused(request: Request, exc: AttestationRefused) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(OrderingError)
    async def ordering_error(request: Request, exc: OrderingError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)

    @app.exception_handler(MedledgerError)
    async def medledger_error(request: Request, exc: MedledgerError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.post("/v1/transactions", status_code=202)
    async def submit(request: Request) -> Response:
        tx = await request.body()
        if not tx:
            return JSONResponse({"error": "the request body holds no transaction"}, status_code=400)
        if len(tx) > orderer.config.max_bytes:
            return JSONResponse(
                {"error": f"a transaction of {len(tx)} bytes exceeds the batch limit of {orderer.config.max_bytes}"},
                status_code=413,
            )
        await run_in_threadpool(orderer.submit, tx)  # blocks only while the queue is full
        return Response(status_code=202)

    @app.get("/v1/batches/{number}")
    def batch(number: BatchNumber, wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0.0) -> Response:
        found = orderer.read(number, timeout=wait)
        if found is not None:
            return Response(found.encode(), media_type=CBOR)
        if number < orderer.height():
            return JSONResponse({"error": f"batch {number} is not in the orderer's log"}, status_code=404)
        return Response(status_code=204)

    @app.get("/v1/status")
    def status() -> dict[str, object]:
        return {"orderer": orderer.orderer_id, "height": orderer.height()}

    @app.post("/v1/cut")
    def cut() -> dict[str, int]:
        return {"height": orderer.cut_now()}

    @app.post("/v1/attestations/{number}", status_code=204)
    async def post_attestation(number: BatchNumber, request: Request) -> Response:
        data = await request.body()
        await run_in_threadpool(relay.post, number, data)
        return Response(status_code=204)

    @app.get("/v1/attestations/{number}")
    def attestations(number: BatchNumber) -> Response:
        return Response(encode(relay.fetch(number)), media_type=CBOR)

    @app.get("/v1/attestations")
    def attestation_range(
        first: Annotated[int, Query(ge=0, le=MAX_NUMBER)], end: Annotated[int, Query(ge=0, le=MAX_NUMBER)]
    ) -> Response:
        return Response(encode(relay.fetch_range(first, end)), media_type=CBOR)

    return app


class OrdererServer:
    """Serves an orderer app with uvicorn: `run()` in the foreground until `stop()` or a signal, or
    `start()` on a background thread (a test, or a process serving something else beside it)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise OrderingError(f"the orderer cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, lifespan="on")
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def run(self) -> None:
        """Serve until stopped; on the main thread SIGTERM and SIGINT stop it too (uvicorn then raises the
        signal again once it returns, so a caller that cleans up afterwards installs its own handler first)."""
        self._server.run(sockets=[self._socket])

    def start(self, timeout: float = 10.0) -> OrdererServer:
        """Serve on a background thread; returns once it accepts connections."""
        self._thread = threading.Thread(target=self.run, name=f"orderer-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            raise OrderingError(f"the orderer server on {self.url} did not start")
        return self

    def stop_soon(self) -> None:
        """Ask the server to finish its requests and return from `run` (safe in a signal handler)."""
        self._server.should_exit = True

    def stop(self) -> None:
        """Stop serving and wait for the background thread, if any."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()
