"""The endpoint's own cost: checks/s and p50/p99 latency through ``guard-plugin serve``'s app
(uvicorn on 127.0.0.1 in a process of its own, 64 concurrent asyncio HTTP clients) against the
same Guard awaited in process by 64 tasks, in one run, with a batching classifier double (one worker, 20 ms per batch).

    python -m benchmarks.bench_serve [--clients 64] [--per-client 20]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from typing import Any

import httpx

from benchmarks._util import machine
from guard_plugin import Guard
from guard_plugin.classifiers.base import ClassifierOutput
from guard_plugin.classifiers.batching import BatchWorker
from guard_plugin.serve import build_app
from tests.loopback_openai import free_port, wait_up


class BatchedDouble:
    """A benchmark double shaped like the local backend: one worker thread runs batches, and
    every batch takes 20 ms whatever its size; async callers await the worker directly."""

    name = "batched-double"
    extra_tokens: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.worker: BatchWorker[Any, Any] = BatchWorker(self._batch, max_batch_size=64)

    @staticmethod
    def _batch(reqs: list[Any]) -> list[Any]:
        time.sleep(0.02)
        return [ClassifierOutput("User Safety: safe") for _ in reqs]

    def classify(self, requests: Any, *, timeout: float | None = None) -> list[Any]:
        return self.worker.run(requests, timeout)

    async def aclassify(self, requests: Any, *, timeout: float | None = None) -> list[Any]:
        return await self.worker.arun(requests, timeout)

    def close(self) -> None:
        self.worker.close()


async def run(clients: int, per_client: int, call: Any) -> tuple[float, list[float]]:
    """``clients`` concurrent asyncio callers, each making ``per_client`` checks in turn."""
    lat: list[float] = []

    async def one(c: int) -> None:
        for i in range(per_client):
            t0 = time.perf_counter()
            await call(f"client {c} item {i}: please summarise the report")
            lat.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(clients)))
    return clients * per_client / (time.perf_counter() - t0), lat


def serve(port: int) -> None:
    """The endpoint in a process of its own, as it is deployed."""
    import uvicorn

    guard = Guard(BatchedDouble(), audit=[], cache_size=0)
    uvicorn.run(build_app(guard, keys=None), host="127.0.0.1", port=port, log_level="error")


def report(name: str, rate: float, lat: list[float]) -> float:
    p50, p99 = statistics.median(lat), statistics.quantiles(lat, n=100)[98]
    print(f"{name:10}: {rate:7.0f} checks/s, p50 {p50:6.1f} ms, p99 {p99:6.1f} ms")
    return p50


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--per-client", type=int, default=20)
    args = ap.parse_args()
    print(machine())

    guard = Guard(BatchedDouble(), audit=[], cache_size=0)
    rate, lat = asyncio.run(run(args.clients, args.per_client, lambda t: guard.acheck(t)))
    inproc = report("in process", rate, lat)
    guard.close()

    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    wait_up(f"{url}/health", proc.is_alive)

    async def over_http() -> tuple[float, list[float]]:
        limits = httpx.Limits(max_connections=args.clients)
        async with httpx.AsyncClient(limits=limits, timeout=30) as http:

            async def call(text: str) -> None:
                body = {"model": "m", "messages": [{"role": "user", "content": text}]}
                (await http.post(f"{url}/v1/chat/completions", json=body)).raise_for_status()

            return await run(args.clients, args.per_client, call)

    rate, lat = asyncio.run(over_http())
    endpoint = report("endpoint", rate, lat)
    print(f"endpoint overhead at p50: {endpoint - inproc:.1f} ms")
    proc.terminate()
    proc.join(10)


if __name__ == "__main__":
    main()
