"""What OpenTelemetry costs a check: a loop of ``Guard.check`` on unique texts with a
zero-latency classifier and no audit sink, min per check over 7 rounds of 5,000.

    python -m benchmarks.bench_otel_overhead            # no SDK configured
    python -m benchmarks.bench_otel_overhead --sdk      # SDK: batch spans, in-memory exporter

Run it on two trees alternately (``PYTHONPATH=<tree>``) to compare them in one session.
"""

from __future__ import annotations

import argparse
import time

from benchmarks._util import machine
from benchmarks.bench_guard import ZeroLatency
from guard_plugin import Guard


def configure_sdk() -> None:
    """OpenTelemetry's SDK as an application would set it up: spans through a batch
    processor to an in-memory exporter, metrics to an in-memory reader."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdk", action="store_true")
    ap.add_argument("--n", type=int, default=5000)
    args = ap.parse_args()
    if args.sdk:
        configure_sdk()
    guard = Guard(ZeroLatency(), audit=[], cache_size=0)
    text = "Please summarise the attached quarterly report for the board, item {}."
    rounds = []
    for _ in range(7):
        t0 = time.perf_counter()
        for i in range(args.n):
            guard.check(text.format(i))
        rounds.append((time.perf_counter() - t0) / args.n * 1e6)
    print(machine())
    print(
        f"{'with' if args.sdk else 'no'} SDK: min {min(rounds):.1f} us per check "
        f"(rounds {', '.join(f'{r:.1f}' for r in rounds)})"
    )


if __name__ == "__main__":
    main()
