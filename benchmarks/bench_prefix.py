"""The local backend's prefix cache: prompt tokens prefilled per check and check time, with
the cache on / off, at batch 1 and 32, on the trained tiny test model (CPU), in one run.

    python -m benchmarks.bench_prefix [--rounds 3]

Each check is a different user turn (and, for response checks, answer) under one policy, so
what they share is the rendered policy header: the intro, the taxonomy and the instructions.
Batch 1 sends the checks one at a time; batch 32 sends 32 at once (one worker batch).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from benchmarks._util import machine
from guard_plugin import Policy, SafetyInput
from guard_plugin.classifiers.transformers import TransformersClassifier
from guard_plugin.policy import compile_policy
from guard_plugin.prompting import build_request
from guard_plugin.types import Surface

TOPICS = ["a trip to Lisbon", "the quarterly report", "a bread recipe", "my printer", "taxes"]


POLICY = Policy()


def requests(n: int, salt: int) -> list[Any]:
    compiled = compile_policy(POLICY)
    out = []
    for i in range(n):
        q = f"Tell me about {TOPICS[i % len(TOPICS)]}, case {salt}-{i}."
        if i % 2:
            out.append(
                build_request(
                    SafetyInput(
                        text=q, response=f"Here is what I know, {i}.", surface=Surface.RESPONSE
                    ),
                    compiled,
                )
            )
        else:
            out.append(build_request(SafetyInput(text=q), compiled))
    return out


def run(clf: TransformersClassifier, batch: int, rounds: int) -> tuple[float, float]:
    """Median ms per check, and prompt tokens prefilled per check (cache on only)."""
    per_check, filled, checks = [], 0, 0
    for r in range(rounds):
        reqs = requests(32, salt=r)
        groups = [reqs[i : i + batch] for i in range(0, len(reqs), batch)]
        for group in groups:
            inputs = [x for x in group if not x.expects_response]
            answers = [x for x in group if x.expects_response]
            for g in (inputs, answers):
                if not g:
                    continue
                before = clf.stats.get("prefilled_tokens", 0)
                t0 = time.perf_counter()
                clf.classify(g)
                per_check.append((time.perf_counter() - t0) * 1000 / len(g))
                filled += clf.stats.get("prefilled_tokens", 0) - before
                checks += len(g)
    return statistics.median(per_check), filled / checks if checks else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--policy-words",
        type=int,
        default=0,
        help="a custom policy text of this many words (the tiny template's own header is "
        "short; Nemotron's is about 700 tokens)",
    )
    args = ap.parse_args()
    global POLICY
    if args.policy_words:
        words = " ".join(f"rule{i % 50} applies" for i in range(args.policy_words // 2))
        POLICY = Policy(custom_policy={"text": f"Disallowed content: {words}."})
    from guard_plugin.testing import cached_verdict_test_model

    path = str(cached_verdict_test_model().path)
    on = TransformersClassifier(path, prefix_cache_mb=256, max_batch_size=32)
    off = TransformersClassifier(path, prefix_cache_mb=0, max_batch_size=32)
    for clf in (on, off):  # warm up, and a kept prompt of the policy for `on`
        clf.classify(requests(2, salt=99)[:1])
    print(machine())
    print("\nper check, tiny local model (CPU), median over groups")
    print("  batch   off ms   on ms   on/off   prompt tokens / prefilled with the cache")
    for batch in (1, 32):
        off_ms, _ = run(off, batch, args.rounds)
        on_ms, filled = run(on, batch, args.rounds)
        total = statistics.mean(
            len(on._runner.prompts.encode([r]).input_ids[0]) for r in requests(32, 0)
        )
        print(
            f"  {batch:5d}  {off_ms:7.2f}  {on_ms:6.2f}   {on_ms / off_ms:6.2f}   {total:7.0f} / {filled:.0f}"
        )
    print("  stats (cache on):", {k: v for k, v in on.stats.items() if k.startswith("prefix")})
    on.close()
    off.close()


if __name__ == "__main__":
    main()
