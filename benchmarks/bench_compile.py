"""``compile=true`` on the local backend, on the CPU: load time (the warm-up compiles) and
time per check with compile off / on, at batch 1 and 32, on the trained tiny test model, in
one run.

    python -m benchmarks.bench_compile [--rounds 3]

The checks are those of ``bench_prefix`` (a different user turn or answer each, one policy),
with the prefix cache on in both. On a GPU, ``bench_gpu --compile`` measures the real shapes.
"""

from __future__ import annotations

import argparse
import time

from benchmarks._util import machine
from benchmarks.bench_prefix import requests, run
from guard_plugin.classifiers.transformers import TransformersClassifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from guard_plugin.testing import cached_verdict_test_model

    path = str(cached_verdict_test_model().path)
    loaded = {}
    for on in (False, True):
        t0 = time.perf_counter()
        clf = TransformersClassifier(path, max_batch_size=32, compile=on)
        loaded[on] = (clf, time.perf_counter() - t0)
        clf.classify(requests(2, salt=99)[:1])  # a kept prompt of the policy
    print(machine())
    print(f"\nload, compile off {loaded[False][1]:.1f} s, on {loaded[True][1]:.1f} s")
    print("per check, tiny local model (CPU), median over groups")
    print("  batch   off ms   on ms   on/off")
    for batch in (1, 32):
        off_ms, _ = run(loaded[False][0], batch, args.rounds)
        on_ms, _ = run(loaded[True][0], batch, args.rounds)
        print(f"  {batch:5d}  {off_ms:7.2f}  {on_ms:6.2f}   {on_ms / off_ms:6.2f}")
    for clf, _ in loaded.values():
        clf.close()


if __name__ == "__main__":
    main()
