"""Guard.check overhead with a zero-latency classifier.

    python -m benchmarks.bench_guard [--n 5000]

Measures, in one run: a cache miss (unique short text each call) with the audit going to a
JSONL file, a cache hit, and the async path. The classifier returns a fixed model-format
line at once, so what is measured is guard_plugin's own work: policy lookup, neutralising,
request building, parsing, deciding and auditing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks._util import machine, summary, time_each
from guard_plugin import Guard, JsonlAuditSink
from guard_plugin.classifiers import ClassifierOutput
from guard_plugin.classifiers.base import BaseClassifier
from guard_plugin.prompting import ModelRequest


class ZeroLatency(BaseClassifier):
    """Answers every request with a fixed safe verdict, instantly (benchmark double)."""

    name = "zero-latency"

    def classify(self, requests: Sequence[ModelRequest], *, timeout: float | None = None):
        return [ClassifierOutput("User Safety: safe") for _ in requests]

    async def aclassify(self, requests: Sequence[ModelRequest], *, timeout: float | None = None):
        return self.classify(requests)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument(
        "--otel",
        action="store_true",
        help="with OpenTelemetry's SDK: spans to an in-memory exporter, metrics to a reader",
    )
    args = ap.parse_args()
    if args.otel:
        from benchmarks.bench_otel_overhead import configure_sdk

        configure_sdk()
    with tempfile.TemporaryDirectory() as tmp:
        sink = JsonlAuditSink(Path(tmp) / "audit.jsonl")
        guard = Guard(ZeroLatency(), audit=sink, cache_size=100_000)
        text = "Please summarise the attached quarterly report for the board, item {}."
        miss = time_each(lambda i: guard.check(text.format(i)), args.n)
        hit = time_each(lambda i: guard.check(text.format(i % 100)), args.n)

        async def amiss() -> list[float]:
            import time

            out = []
            for i in range(args.n):
                t0 = time.perf_counter()
                await guard.acheck(text.format(10**7 + i))
                out.append((time.perf_counter() - t0) * 1000)
            return out

        amiss_ms = asyncio.run(amiss())
        sink.close()
    print(f"machine: {machine()}")
    print(f"check, cache miss, JSONL audit : {summary(miss)}")
    print(f"check, cache hit,  JSONL audit : {summary(hit)}")
    print(f"acheck, cache miss, JSONL audit: {summary(amiss_ms)}")
    print(f"hit / miss ratio: {statistics.median(hit) / statistics.median(miss):.2f}")


if __name__ == "__main__":
    main()
