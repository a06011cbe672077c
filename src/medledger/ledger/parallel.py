"""Transaction signature checks in worker processes, streamed to the commit thread.

Why processes and not threads: libsodium's verify releases the GIL, and threads do scale
when nothing else runs; but the commit thread executes contracts in Python, holding the GIL,
and a verifying thread then waits up to the interpreter's switch interval (5 ms) each time
it needs the GIL back. Measured here with a busy Python thread beside them, two verifying
threads managed ~4,000 checks/s where two processes managed ~10,700/s (`medledger bench`
measures both). So each worker is a process of its own, fed through its own pipes, with no
helper thread in the peer's process to contend for the GIL either.

`ParallelSignatureChecker` is a `SignatureChecker` (call it with the checks, get the
outcomes) that also implements `StreamingSignatureChecker`: `start` sends the checks off in
chunks and returns at once, and the block executor asks for each outcome just before the
transaction needs it, so verification of later chunks overlaps the execution of earlier ones.
Each thread that uses a checker gets its own workers (a "lane"): peers sharing a checker in
one process never see each other's work, and every peer still verifies every signature itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from medledger.core.signing import Domain, signature_is_valid
from medledger.ledger.execution import CompletedSignatureChecks, SignatureCheck, check_signatures_serially

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 48
"""Checks per message: large enough that the pipe costs little per check (~1 µs), small enough
that execution can start on the first chunk while the workers verify the rest."""
INLINE_BELOW = 2
"""Batches smaller than this (a lone transaction) are verified on the calling thread. Anything
larger goes to the workers: a peer thread verifying inline holds its core, and beside other
busy threads (five peers in one process) waits for the GIL again after every verification;
measured on the embedded network, sending even blocks of a dozen transactions to the workers
lifted the throughput the network kept up with from ~250 to ~400 tx/s."""
MAX_RESTARTS = 3
"""Workers that die are replaced this many times in all; after that their share is verified
on the calling thread (slower, never wrong)."""
_PIPE_BYTES = 1 << 20
"""Pipe capacity asked of Linux (F_SETPIPE_SZ); what is in flight to a worker never exceeds
what its pipe holds, so sending never blocks the commit thread."""
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_FRAME = struct.Struct(">I")
"""Each message on a worker's pipes is a 4-byte length, then that many bytes."""


def _verify_chunk(chunk: Sequence[Sequence[bytes]]) -> bytes:
    return bytes(signature_is_valid(Domain.TRANSACTION, pk, payload, sig) for pk, payload, sig in chunk)


def _read_exactly(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    while size:
        part = os.read(fd, size)
        if not part:
            raise EOFError("the other end of the pipe closed")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(_FRAME.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _read_frame(fd: int) -> bytes:
    (size,) = _FRAME.unpack(_read_exactly(fd, _FRAME.size))
    return _read_exactly(fd, size) if size else b""


def serve_checks(requests: int, results: int) -> None:
    """A worker's loop: read a frame of (key, payload, signature) triples, answer one byte per
    outcome. An empty frame, or a closed pipe, ends it."""
    decoder = msgspec.msgpack.Decoder(list[tuple[bytes, bytes, bytes]])
    while True:
        try:
            message = _read_frame(requests)
        except (EOFError, OSError):
            return
        if not message:
            return
        _write_frame(results, _verify_chunk(decoder.decode(message)))


def _enlarge_pipe(fd: int) -> int:
    """Ask for a larger pipe buffer; return the capacity actually granted."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    try:
        return int(fcntl.fcntl(fd, _F_GETPIPE_SZ))
    except OSError:
        return 65_536


class _Worker:
    """One verifying process (`python -m medledger.ledger.parallel`) and the pipes to it."""

    def __init__(self) -> None:
        # A plain subprocess rather than multiprocessing: nothing of the caller's __main__ is
        # re-imported, and no helper thread in this process has to take the GIL to feed it.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "medledger.ledger.parallel"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests = self.process.stdin.fileno()
        self.results = self.process.stdout.fileno()
        self.capacity = _enlarge_pipe(self.requests) - 4096
        self.in_flight: deque[int] = deque()
        """Sizes (bytes) of the chunks sent and not yet answered, oldest first."""
        self.in_flight_bytes = 0
        self.broken = False

    def can_take(self, size: int) -> bool:
        return not self.in_flight or self.in_flight_bytes + size <= self.capacity

    def send(self, message: bytes) -> None:
        _write_frame(self.requests, message)
        self.in_flight.append(len(message) + _FRAME.size)
        self.in_flight_bytes += len(message) + _FRAME.size

    def receive(self) -> bytes:
        outcome = _read_frame(self.results)
        self.in_flight_bytes -= self.in_flight.popleft()
        return outcome

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            _write_frame(self.requests, b"")
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=2)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


@dataclass
class _Chunk:
    checks: Sequence[SignatureCheck]
    message: bytes
    worker: int
    outcome: bytes | None = None


@dataclass
class _Lane:
    """The workers one thread uses, and the batch it is streaming through them."""

    workers: list[_Worker]
    batch: StreamedSignatureChecks | None = None


@dataclass
class StreamedSignatureChecks:
    """Outcomes of one batch of checks, arriving from the lane's workers in order."""

    lane: _Lane
    chunk_size: int
    chunks: list[_Chunk]
    next_to_send: int = 0
    """Chunks before this one have been sent (or verified here, if their worker failed)."""
    unanswered: dict[int, deque[_Chunk]] = field(default_factory=dict)
    """Per worker, the chunks it was sent and has not answered, oldest first."""

    def _pump(self) -> None:
        """Send as many pending chunks as the workers' pipes can take without blocking."""
        while self.next_to_send < len(self.chunks):
            chunk = self.chunks[self.next_to_send]
            worker = self.lane.workers[chunk.worker]
            if worker.broken:
                chunk.outcome = _verify_chunk(chunk.checks)
            elif not worker.can_take(len(chunk.message)):
                return
            else:
                try:
                    worker.send(chunk.message)
                except OSError:
                    self._break(chunk.worker)
                    continue
                self.unanswered.setdefault(chunk.worker, deque()).append(chunk)
            self.next_to_send += 1

    def _break(self, worker_index: int) -> None:
        worker = self.lane.workers[worker_index]
        log.warning("signature worker %s failed; verifying its share on this thread", worker.process.pid)
        worker.broken = True
        for lost in self.unanswered.pop(worker_index, deque()):
            lost.outcome = _verify_chunk(lost.checks)

    def _receive_oldest(self, worker_index: int) -> None:
        queue = self.unanswered[worker_index]
        chunk = queue[0]
        try:
            chunk.outcome = self.lane.workers[worker_index].receive()
        except (EOFError, OSError):
            self._break(worker_index)
            return
        queue.popleft()
        self._pump()

    def outcome(self, index: int) -> bool:
        """Whether check `index` verified, waiting for its chunk if it is still being checked."""
        number = index // self.chunk_size
        chunk = self.chunks[number]
        while chunk.outcome is None:
            if number < self.next_to_send:
                self._receive_oldest(chunk.worker)
            else:
                # Not sent yet: the worker holding up the queue answers first, making room.
                self._receive_oldest(self.chunks[self.next_to_send].worker)
        return chunk.outcome[index % self.chunk_size] == 1

    def results(self) -> list[bool]:
        """Every outcome, in order (waiting for all of them)."""
        total = sum(len(chunk.checks) for chunk in self.chunks)
        outcomes = [self.outcome(index) for index in range(total)]
        self.close()
        return outcomes

    def close(self) -> None:
        """Collect whatever is still in flight, so the lane's pipes hold nothing for the next batch."""
        self.next_to_send = len(self.chunks)
        for worker_index, queue in list(self.unanswered.items()):
            while queue:
                try:
                    queue[0].outcome = self.lane.workers[worker_index].receive()
                except (EOFError, OSError):
                    self._break(worker_index)
                    break
                queue.popleft()
        self.unanswered.clear()
        if self.lane.batch is self:
            self.lane.batch = None


class ParallelSignatureChecker:
    """Verifies transaction signatures in `workers` processes per calling thread."""

    def __init__(
        self,
        workers: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        inline_below: int = INLINE_BELOW,
    ) -> None:
        self.workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        self.chunk_size = chunk_size
        self.inline_below = inline_below
        self._local = threading.local()
        self._lanes: list[_Lane] = []
        self._lock = threading.Lock()
        self._closed = False
        self._restarts_left = MAX_RESTARTS
        self._encoder = msgspec.msgpack.Encoder()

    def __enter__(self) -> ParallelSignatureChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lane(self) -> _Lane:
        lane: _Lane | None = getattr(self._local, "lane", None)
        if lane is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("this signature checker is closed")
                lane = _Lane([_Worker() for _ in range(self.workers)])
                self._lanes.append(lane)
            self._local.lane = lane
        for index, worker in enumerate(lane.workers):
            if worker.broken and self._restarts_left > 0:
                self._restarts_left -= 1
                worker.stop()
                lane.workers[index] = _Worker()
        return lane

    def warm_up(self) -> None:
        """Start this thread's workers now rather than on the first large batch."""
        self.start([(b"\x00" * 32, b"", b"\x00" * 64)] * self.inline_below).close()

    def start(self, checks: Sequence[SignatureCheck]) -> StreamedSignatureChecks | CompletedSignatureChecks:
        """Send `checks` to this thread's workers and return at once; outcomes stream in."""
        if len(checks) < self.inline_below:
            return CompletedSignatureChecks(check_signatures_serially(checks))
        try:
            lane = self._lane()
        except OSError as exc:  # no process could be started (limits reached): slower, never wrong
            log.warning("cannot start signature workers (%s); verifying on this thread", exc)
            return CompletedSignatureChecks(check_signatures_serially(checks))
        if lane.batch is not None:
            lane.batch.close()
        size = self.chunk_size
        chunks = [
            _Chunk(
                checks[start : start + size], self._encoder.encode(checks[start : start + size]), number % self.workers
            )
            for number, start in enumerate(range(0, len(checks), size))
        ]
        batch = StreamedSignatureChecks(lane, size, chunks)
        lane.batch = batch
        batch._pump()
        return batch

    def __call__(self, checks: Sequence[SignatureCheck]) -> list[bool]:
        started = self.start(checks)
        if isinstance(started, CompletedSignatureChecks):
            return list(started.outcomes)
        return started.results()

    def close(self) -> None:
        """Stop every worker of every thread."""
        with self._lock:
            self._closed = True
            lanes, self._lanes = self._lanes, []
        for lane in lanes:
            for worker in lane.workers:
                worker.stop()


if __name__ == "__main__":
    serve_checks(sys.stdin.fileno(), sys.stdout.fileno())
