"""What the batching worker itself adds to a lone check: the time from submit to result for
a batch function that does nothing, dispatched at once (the default) and with a 2 ms wait for
companions (the worker before), and the batch sizes that form under load in each mode.

    python -m benchmarks.bench_dispatch [--n 2000] [--callers 32]

No model: the figures are the worker's own cost, apart from any model time.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from benchmarks._util import machine
from guard_plugin.classifiers.batching import BatchWorker


def lone(max_wait_s: float, n: int) -> float:
    """Median ms from submit to result, one request at a time (an idle model)."""
    worker: BatchWorker[int, int] = BatchWorker(lambda r: r, max_wait_s=max_wait_s)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        worker.submit(i).result(5)
        out.append((time.perf_counter() - t0) * 1000)
    worker.close()
    return statistics.median(out)


def loaded(max_wait_s: float, callers: int, model_ms: float = 5.0) -> tuple[float, float]:
    """Mean batch size and checks/s when ``callers`` threads each send 20 checks, one after
    another, to a model whose every batch takes 5 ms (whatever its size)."""
    worker: BatchWorker[int, int] = BatchWorker(
        lambda r: time.sleep(model_ms / 1000) or r, max_batch_size=32, max_wait_s=max_wait_s
    )
    go = threading.Event()

    def call() -> None:
        go.wait()
        for i in range(20):
            worker.run([i], timeout=10)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    worker.close()
    return statistics.mean(worker.stats.sizes), callers * 20 / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--callers", type=int, default=32)
    args = ap.parse_args()
    print(machine())
    at_once, waiting = lone(0.0, args.n), lone(0.002, args.n)
    print(
        f"lone request, median ms submit->result: at once {at_once:.3f}, waits 2 ms {waiting:.3f}"
    )
    for name, wait in (("at once", 0.0), ("waits 2 ms", 0.002)):
        size, rate = loaded(wait, args.callers)
        print(
            f"{args.callers} callers on a 5 ms-per-batch model, {name}: "
            f"mean batch {size:.1f}, {rate:.0f} checks/s"
        )


if __name__ == "__main__":
    main()
