"""The label-logits path against generation, on the trained test model (CPU).

    python -m benchmarks.bench_scores [--n 40] [--model DIR]

Builds the test model (``guard_plugin.testing.build_verdict_test_model``, about a minute)
unless ``--model`` names one, loads it twice (``verdict_mode=logits`` and ``generate``) and,
for each kind of check, counts the model's forward passes per check and times both paths in
one run, interleaved, reporting medians and their ratio. Kinds: a safe text, an unsafe text
with categories requested (the logits path generates the categories line), an unsafe text
without categories, a response check (a second label pass), and a batch of 16 mixed checks.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from benchmarks._util import machine
from guard_plugin import Policy, SafetyInput
from guard_plugin.classifiers.transformers import TransformersClassifier, load_local_model
from guard_plugin.policy import compile_policy
from guard_plugin.prompting import build_request


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--model", help="a test model folder already built")
    args = ap.parse_args()
    torch.set_num_threads(2)
    folder = args.model
    if folder is None:
        from guard_plugin.testing import build_verdict_test_model

        folder = str(build_verdict_test_model(tempfile.mkdtemp(prefix="verdict-model-")).path)
    lm = load_local_model(folder, device="cpu")
    fast = TransformersClassifier(lm, verdict_mode="logits", max_wait_ms=0.5)
    slow = TransformersClassifier(lm, verdict_mode="generate", max_wait_ms=0.5)
    cats = compile_policy(Policy())
    nocats = compile_policy(Policy(model={"request_categories": False}))
    words = ["please", "summarise", "the", "attached", "quarterly", "report", "for", "the", "board"]
    mixed = [
        SafetyInput(text=" ".join(words[: 3 + i % 6]) + (" bomb" if i % 4 == 0 else ""))
        for i in range(16)
    ]
    kinds = {
        "safe text": [build_request(SafetyInput(text="please summarise the report"), cats)],
        "unsafe text, categories": [build_request(SafetyInput(text="the bomb"), cats)],
        "unsafe text, no categories": [build_request(SafetyInput(text="the bomb"), nocats)],
        "response check": [
            build_request(
                SafetyInput(
                    text="help me with this code", response="send the report", surface="response"
                ),
                cats,
            )
        ],
        "batch of 16 mixed": [build_request(i, cats) for i in mixed],
    }
    print(f"machine: {machine()}, torch {torch.__version__}, test model {folder}")
    print(
        f"{'check':28} {'passes logits':>13} {'passes gen':>10} {'logits ms':>10} {'gen ms':>9} {'ratio':>6}"
    )
    for name, reqs in kinds.items():
        a, b = fast.classify(reqs), slow.classify(reqs)  # warm-up, and the same answers
        assert [x.text.split("\n")[0] for x in a] == [y.text.split("\n")[0] for y in b], name
        p0 = fast.stats["forward_passes"], slow.stats["forward_passes"]
        fast.classify(reqs)
        slow.classify(reqs)
        passes = fast.stats["forward_passes"] - p0[0], slow.stats["forward_passes"] - p0[1]
        tf, tg = [], []
        for _ in range(args.n):
            for clf, out in ((fast, tf), (slow, tg)):
                t0 = time.perf_counter()
                clf.classify(reqs)
                out.append((time.perf_counter() - t0) * 1000)
        mf, mg = statistics.median(tf), statistics.median(tg)
        per = f"{passes[0] / len(reqs):.2f}" if len(reqs) > 1 else str(passes[0])
        perg = f"{passes[1] / len(reqs):.2f}" if len(reqs) > 1 else str(passes[1])
        print(f"{name:28} {per:>13} {perg:>10} {mf:10.2f} {mg:9.2f} {mf / mg:6.2f}")
    print(
        "passes: forward passes of the model per check (a batch shares its passes; per row shown)"
    )
    fast.close()
    slow.close()


if __name__ == "__main__":
    main()
