"""Batching on the tiny CPU model: what the worker keeps of generate's own batching speed-up.

    python -m benchmarks.bench_batching [--callers 32] [--prompt-tokens 700] [--new-tokens 8]

In one run, on the same prompts:
1. raw: ``model.generate`` on one batch of N prompts vs the N prompts one at a time;
2. worker: N concurrent callers (released together) through ``TransformersClassifier``.
The worker's speed-up is taken against raw one-at-a-time generate, so every cost the guard
adds (rendering, the injection check, queueing, decoding) counts against it. The figure of
merit is worker speed-up / raw speed-up (target >= 0.90 at 32 callers).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from benchmarks._util import machine
from guard_plugin import Policy, SafetyInput
from guard_plugin.classifiers.transformers import TransformersClassifier
from guard_plugin.policy import compile_policy
from guard_plugin.prompting import ModelRequest, build_request
from guard_plugin.testing import build_tiny_gemma3

WORDS = [
    "please",
    "summarise",
    "the",
    "attached",
    "quarterly",
    "report",
    "for",
    "the",
    "board",
    "of",
    "directors",
    "while",
    "the",
    "process",
    "is",
    "killed",
    "and",
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
]


def prompt(tokenizer, n_tokens: int, salt: int) -> str:
    words: list[str] = [f"item{salt}"]
    i = 0
    while len(tokenizer(" ".join(words)).input_ids) < n_tokens:
        words.append(WORDS[(i + salt) % len(WORDS)])
        i += 1
    return " ".join(words)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--callers", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=700)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    n = args.callers

    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_gemma3(tmp)
        clf = TransformersClassifier(
            tmp, device="cpu", max_batch_size=n, max_wait_ms=args.max_wait_ms, max_queue=4 * n
        )
        runner = clf._runner
        tok = clf.local.processor.tokenizer
        policy = compile_policy(Policy(model={"max_new_tokens": max(8, args.new_tokens)}))
        reqs: list[ModelRequest] = []
        for i in range(n):
            r = build_request(SafetyInput(text=prompt(tok, args.prompt_tokens, i)), policy)
            reqs.append(
                ModelRequest(r.user_text, None, None, r.template_kwargs, args.new_tokens, r.key)
            )
        model = clf.local.model

        def gen(batch: list[ModelRequest]) -> None:
            enc = runner.prompts.encode(batch)
            enc.pop("token_type_ids", None)  # text only: the same inputs the runner passes
            with torch.inference_mode():
                model.generate(
                    **enc,
                    max_new_tokens=args.new_tokens,
                    min_new_tokens=args.new_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=runner.prompts.pad_id,
                    eos_token_id=runner.decoder.stop_ids,
                )

        gen(reqs[:2])  # warm-up
        # Both paths do the same work: exactly --new-tokens tokens per request.
        orig = model.generate

        def fixed_len(**kw):
            kw["min_new_tokens"] = kw["max_new_tokens"]
            return orig(**kw)

        model.generate = fixed_len
        pool = ThreadPoolExecutor(n)

        def concurrent() -> tuple[float, list[int]]:
            barrier = threading.Barrier(n + 1)

            def call(r: ModelRequest) -> None:
                barrier.wait()
                clf.classify([r])

            before = len(clf._worker.stats.sizes)
            futures = [pool.submit(call, r) for r in reqs]
            barrier.wait()
            t0 = time.perf_counter()
            for f in futures:
                f.result()
            return time.perf_counter() - t0, clf._worker.stats.sizes[before:]

        raw_seq, raw_bat, worker, batches = [], [], [], []
        for _ in range(args.repeats):  # interleaved, so drift hits every path alike
            raw_seq.append(_timed(lambda: [gen([r]) for r in reqs]))
            raw_bat.append(_timed(lambda: gen(reqs)))
            t, sizes = concurrent()
            worker.append(t)
            batches.append(sizes)
        pool.shutdown()
        clf.close()

    med = statistics.median
    prompt_len = len(tok(reqs[0].user_text).input_ids)
    raw_speedup = med(raw_seq) / med(raw_bat)
    worker_speedup = med(raw_seq) / med(worker)
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    print(
        f"{n} requests of ~{prompt_len} text tokens (+ template), {args.new_tokens} new tokens, "
        f"median of {args.repeats} interleaved repeats"
    )
    print(f"raw generate, one at a time : {med(raw_seq) * 1000:8.1f} ms")
    raw_ms, worker_ms = med(raw_bat) * 1000, med(worker) * 1000
    print(f"raw generate, one batch of {n}: {raw_ms:8.1f} ms  (speed-up x{raw_speedup:.2f})")
    print(
        f"worker, {n} concurrent callers: {worker_ms:8.1f} ms  (speed-up x{worker_speedup:.2f} "
        "over raw one at a time, all guard overhead included)"
    )
    print(f"worker speed-up / raw speed-up: {worker_speedup / raw_speedup:.2f} (target >= 0.90)")
    print(f"batches per concurrent run: {[len(b) for b in batches]}, last sizes: {batches[-1]}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
