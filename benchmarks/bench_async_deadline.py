"""Why ``Guard.acheck`` awaits the classifier under ``asyncio.timeout``, not ``wait_for``.

    python -m benchmarks.bench_async_deadline [--rounds 30]

``wait_for`` wraps the call in a new task, so every async check takes at least one extra
trip through the event loop, even when the backend answers at once. ``asyncio.timeout``
(Python 3.11+) keeps the call in the caller's task. Both deadlines are timed on the same
Guard and a zero-latency async classifier, interleaved in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from typing import Any

from benchmarks._util import machine
from benchmarks.bench_guard import ZeroLatency
from guard_plugin import Guard


async def _wait_for(call: Any, seconds: float) -> Any:
    return await asyncio.wait_for(call, seconds)


async def main(rounds: int, calls: int) -> None:
    import guard_plugin.check.guard as guard_module

    if sys.version_info < (3, 11):
        raise SystemExit("asyncio.timeout needs Python 3.11+")
    ours = guard_module._within
    guard = Guard(ZeroLatency(), audit=[], cache_size=0)
    for _ in range(200):
        await guard.acheck("warm up")
    times: dict[str, list[float]] = {"wait_for": [], "asyncio.timeout": []}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in (("wait_for", _wait_for), ("asyncio.timeout", ours)):
                guard_module._within = fn
                t0 = time.perf_counter()
                for _ in range(calls):
                    await guard.acheck("hello there, how are you")
                times[name].append((time.perf_counter() - t0) / calls * 1e6)
    finally:
        gc.enable()
        guard_module._within = ours
    print(f"machine: {machine()}; {rounds} rounds x {calls} acheck calls, interleaved; medians")
    for name, v in times.items():
        print(f"{name:16} {statistics.median(v):6.1f} us per acheck")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=300)
    a = ap.parse_args()
    asyncio.run(main(a.rounds, a.calls))
