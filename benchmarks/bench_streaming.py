"""A streamed answer checked as it streams (``Guard.astream``, ``streaming.mode: hold``), in
one run:

1. time to first token with the guard / without it: a chat model double that takes 300 ms
   to its first token and 20 ms a token after, checked by a classifier double at 50 ms a check
   and by the tiny local model (``transformers``, CPU);
2. total classifier time for an answer of 500, 1,000 and 2,000 units, checked window by window
   as the guard does (each check covers the new window and at least ``context_size`` units
   before it) / re-checking the whole answer so far at every window, on the tiny local model,
   with its prefix cache off and on; and the prompt tokens each window check prefills.

    python -m benchmarks.bench_streaming [--runs 5] [--model PATH]

Without ``--model`` the trained tiny test model is built (or taken from its cache).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator

from benchmarks._util import machine
from guard_plugin import Guard, Policy
from guard_plugin.policy import Streaming
from guard_plugin.prompting import SafetyInput
from guard_plugin.streams import Windows, count_units
from guard_plugin.testing import ScriptedClassifier
from guard_plugin.types import TEXT, Surface

TTFT_S = 0.3
TOKEN_S = 0.02


async def model_double(n: int) -> AsyncIterator[str]:
    """A chat model double: the first token after 300 ms, then one every 20 ms."""
    await asyncio.sleep(TTFT_S)
    for i in range(n):
        if i:
            await asyncio.sleep(TOKEN_S)
        yield f"word{i} " if i % 12 != 11 else f"word{i}. "


async def first_token_s(guard: Guard | None) -> float:
    t0 = time.perf_counter()
    source = model_double(200)
    stream = source if guard is None else guard.astream(source, context="Tell me a story.")
    async for text in stream:
        if text:
            return time.perf_counter() - t0
    return float("nan")


def ttft(guard: Guard | None, runs: int) -> float:
    return statistics.median(asyncio.run(first_token_s(guard)) for _ in range(runs)) * 1000


def answer(units: int) -> str:
    """An answer of ``units`` units (words and full stops, as the windows count them)."""
    words = units * 12 // 13
    return " ".join(f"w{i}" + ("." if i % 12 == 11 else "") for i in range(words))


def spans(text: str, settings: Streaming, full: bool) -> list[str]:
    """The text each check covers for ``text`` streamed a word at a time."""
    w = Windows(settings)
    out = []
    for piece in text.split(" "):
        for x in w.push(piece + " "):
            out.append(text[0 if full else x.start : x.end])
    last = w.close()
    if last is not None:
        out.append(text[0 if full else last.start : last.end])
    return out


def classifier_ms(guard: Guard, texts: list[str]) -> float:
    total = 0.0
    for t in texts:
        inputs = [
            SafetyInput(text="Tell me a story.", response=t, surface=Surface.RESPONSE, part=TEXT)
        ]
        t0 = time.perf_counter()
        guard.check(inputs, surface=Surface.RESPONSE)
        total += time.perf_counter() - t0
    return total * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model", help="a local model folder (default: the tiny test model)")
    args = ap.parse_args()
    print(machine())

    path = args.model
    if path is None:
        from guard_plugin.testing import cached_verdict_test_model

        path = str(cached_verdict_test_model().path)
    local = Guard(f"transformers:{path}", policies=Policy(), audit=[], cache_size=0)
    double = Guard(ScriptedClassifier(delay=0.05), audit=[], cache_size=0)
    classifier_ms(local, ["warm up the model"] * 3)

    bare = ttft(None, args.runs)
    held = ttft(double, args.runs)
    held_local = ttft(local, args.runs)
    print("\ntime to first token (model double: 300 ms, then 20 ms a token), median ms")
    print(f"  no guard                    {bare:8.1f}")
    print(f"  hold, classifier at 50 ms   {held:8.1f}   ratio {held / bare:.2f}")
    print(f"  hold, tiny local model      {held_local:8.1f}   ratio {held_local / bare:.2f}")

    cold = Guard(
        f"transformers:{path}?prefix_cache_mb=0", policies=Policy(), audit=[], cache_size=0
    )
    classifier_ms(cold, ["warm up the model"] * 3)
    stats = local.classifier.stats  # type: ignore[attr-defined]
    s = Streaming()
    print(
        f"\nclassifier time for one answer (chunk_size {s.chunk_size}, context_size "
        f"{s.context_size}), tiny local model, the better of two runs; prefix cache off / on"
    )
    print(
        "  units  checks  windows off / on ms   full re-check off / on ms   full/windows (off)"
        "   prefilled tokens/check windows off / on"
    )
    for units in (500, 1000, 2000):
        text = answer(units)
        assert abs(count_units(text) - units) <= 2
        win, full = spans(text, s, False), spans(text, s, True)
        w_off = min(classifier_ms(cold, win), classifier_ms(cold, win))
        f_off = min(classifier_ms(cold, full), classifier_ms(cold, full))
        f_on = min(classifier_ms(local, full), classifier_ms(local, full))
        before = dict(stats)
        w_on = min(classifier_ms(local, win), classifier_ms(local, win))
        after = local.classifier.stats  # type: ignore[attr-defined]
        filled = (after["prefilled_tokens"] - before["prefilled_tokens"]) / (2 * len(win))
        reused = (after["prefix_reused_tokens"] - before["prefix_reused_tokens"]) / (2 * len(win))
        stats = after
        print(
            f"  {units:5d}  {len(win):6d}  {w_off:8.1f} / {w_on:7.1f}     {f_off:9.1f} / {f_on:8.1f}"
            f"      {f_off / w_off:10.2f}          {filled + reused:7.0f} / {filled:.0f}"
        )
    cold.close()
    local.close()


if __name__ == "__main__":
    main()
