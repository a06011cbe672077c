"""Clients of a process network: signed transactions posted to the peers' REST APIs
(`POST /v1/transactions`, waiting for the receipt), round-robin over the peers, each at its
scheduled time of a fixed offered rate, from one asyncio loop that keeps hundreds in flight.
A transaction's latency is from its submission to the receipt its client's peer answers with.

The clients use aiohttp: its connection pool hands out a connection in constant time, where
httpx's scans every connection for every request (at a few hundred requests in flight the load
generator itself became the bottleneck, about 40-60% of a core at 300 tx/s).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import Sequence

import aiohttp
import uvloop

from medledger.bench.network import LATENCY_LIMIT_MS, SETTLE_SECONDS, LoadPoint, percentile
from medledger.bench.progress import ProgressCallback
from medledger.sdk.rest import receipt_from_json

log = logging.getLogger(__name__)

WAIT_SECONDS = SETTLE_SECONDS
"""How long a peer holds a submission open for its receipt (the API's `wait_seconds`)."""
MAX_CONNECTIONS = 2_000
"""Connections the clients may hold open at once: above any load level's in-flight count, so no
submission waits for a free connection on the client's side."""
TRANSPORT_RETRIES = 2
"""Times a submission is posted again, same bytes, after a connection failed under it (a server closing
an idle keep-alive connection as the request goes out): the queue stores a transaction once."""
PROGRESS_EVERY_S = 0.25


def offer_rest_load(
    peer_urls: Sequence[str],
    transactions: Sequence[bytes],
    rate: float,
    progress: ProgressCallback,
    phase: str,
    latency_limit_ms: float = LATENCY_LIMIT_MS,
) -> LoadPoint:
    """Post `transactions` (signed, encoded) at `rate` per second, transaction i to peer i mod n;
    wait until each has its receipt, or until SETTLE_SECONDS after the last submission. The level is
    kept up with if every transaction committed with p99 <= `latency_limit_ms`."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_offer(list(peer_urls), transactions, rate, progress, phase, latency_limit_ms))


async def _offer(
    peer_urls: list[str],
    transactions: Sequence[bytes],
    rate: float,
    progress: ProgressCallback,
    phase: str,
    latency_limit_ms: float,
) -> LoadPoint:
    count = len(transactions)
    bodies = [
        json.dumps({"tx": base64.b64encode(raw).decode(), "wait_seconds": WAIT_SECONDS}).encode()
        for raw in transactions
    ]
    headers = {"Content-Type": "application/json"}
    submitted_at = [0.0] * count
    committed_at = [0.0] * count
    valid = [False] * count
    failures: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=WAIT_SECONDS + 10.0, connect=10.0)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def submit(index: int) -> None:
            url = peer_urls[index % len(peer_urls)] + "/v1/transactions"
            submitted_at[index] = time.perf_counter()
            for attempt in range(1 + TRANSPORT_RETRIES):
                try:
                    async with client.post(url, data=bodies[index], headers=headers) as response:
                        status = response.status
                        answer = await response.json(content_type=None)
                    break
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                    if attempt == TRANSPORT_RETRIES:
                        failures[type(exc).__name__] += 1
                        return
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    failures[type(exc).__name__] += 1
                    return
            if status != 200 or not isinstance(answer, dict):
                failures[f"HTTP {status}: {str(answer)[:120]}"] += 1
                return
            if answer.get("receipt") is None:
                failures[f"no receipt within {WAIT_SECONDS:.0f} s"] += 1
                return
            committed_at[index] = time.perf_counter()
            valid[index] = receipt_from_json(answer["receipt"]).is_valid

        async def report() -> None:
            while True:
                progress(phase, sum(1 for t in committed_at if t), count)
                await asyncio.sleep(PROGRESS_EVERY_S)

        reporter = asyncio.create_task(report())
        start = time.perf_counter() + 0.05
        tasks = []
        for index in range(count):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(submit(index)))
        deadline = start + count / rate + SETTLE_SECONDS
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
    progress(phase, count, count)

    if failures:
        log.warning("%s: %d submissions without a receipt: %s", phase, sum(failures.values()), dict(failures))
    sent = [t for t in submitted_at if t]
    if sent and count > 1 and (sent_span := max(sent) - min(sent)) > 0:
        log.info("%s: submitted at %.0f tx/s (offered %.0f)", phase, (len(sent) - 1) / sent_span, rate)
    finished = [i for i in range(count) if committed_at[i]]
    latencies = [(committed_at[i] - submitted_at[i]) * 1000 for i in finished]
    seconds = (max(committed_at[i] for i in finished) - min(sent)) if finished else float("inf")
    return LoadPoint(
        offered_tps=rate,
        seconds=seconds,
        submitted=count,
        committed=len(finished),
        valid=sum(1 for i in finished if valid[i]),
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p99_ms=percentile(latencies, 0.99),
        latency_limit_ms=latency_limit_ms,
    )
