"""A batch of requests into verdict texts: the injection check, groups by token budget and
verdict mode, labels from logits or greedy generation, and out-of-memory splits. Runs only
on the batching worker's thread."""

from __future__ import annotations

from typing import Any

import torch

from guard_plugin.classifiers.base import ClassifierResult
from guard_plugin.classifiers.transformers.decoding import Decoder
from guard_plugin.classifiers.transformers.injection import ControlTokenCheck
from guard_plugin.classifiers.transformers.labels import USER_FIELD, LabelReader
from guard_plugin.classifiers.transformers.loader import LocalModel, free_cache
from guard_plugin.classifiers.transformers.prefix import PrefixCache
from guard_plugin.classifiers.transformers.prompts import Prepared, Prompts
from guard_plugin.errors import ClassifierError, ClassifierUnavailable, InjectionDetected
from guard_plugin.policy import Policy, compile_policy
from guard_plugin.prompting import ModelRequest, SafetyInput, build_request
from guard_plugin.types import Surface

__all__ = ["VERDICT_MODES", "Runner"]

VERDICT_MODES = ("logits", "generate")


class Runner:
    """The model's one caller: ``runner(requests)`` returns one result per request."""

    def __init__(
        self,
        lm: LocalModel,
        verdict_mode: str = "logits",
        prefix_cache_mb: float = 512,
        compile: bool = False,
    ) -> None:
        self.lm = lm
        self.prompts = Prompts(lm)
        self.injection = ControlTokenCheck(self.prompts)
        self.decoder = Decoder(lm, self.prompts, compile)
        self.prefix = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb > 0 else None
        self.labels = (
            LabelReader(self.prompts, self.decoder, self.prefix)
            if verdict_mode == "logits"
            else None
        )

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self.injection.special_tokens

    @property
    def label_ids(self) -> tuple[int, int] | None:
        return self.labels.label_ids if self.labels is not None else None

    @property
    def oom_splits(self) -> int:
        return self.decoder.oom_splits

    @property
    def forward_passes(self) -> int:
        return self.decoder.forward_passes

    @property
    def prefix_stats(self) -> dict[str, int]:
        """Prompts kept, checks that reused one, tokens reused and prefilled by checks run on
        their own (empty when the prefix cache is off)."""
        p = self.prefix
        if p is None:
            return {}
        return {
            "prefix_entries": len(p),
            "prefix_bytes": p.nbytes,
            "prefix_hits": p.hits,
            "prefix_reused_tokens": p.reused_tokens,
            "prefilled_tokens": p.prefilled_tokens,
        }

    def warm_up(self) -> list[ClassifierResult]:
        """Run the kinds of label pass the checks will run (one row and several, input and
        response, with a kept prefix and without), so that compiling happens here rather than
        in a user's first checks; then forget them (kept prompts, counters). Returns the
        results."""
        compiled = compile_policy(Policy())

        def req(text: str, response: str | None = None) -> ModelRequest:
            surface = Surface.RESPONSE if response is not None else Surface.INPUT
            return build_request(
                SafetyInput(text=text, response=response, surface=surface), compiled
            )

        rounds = [
            [req("Warm-up check one.")],
            [req("Warm-up check two, a little longer.")],
            [req("Warm-up check three.", "A warm-up answer.")],
            [req("Warm-up check four."), req("Warm-up check five, longer than four.")],
            [req("Warm-up six.", "An answer."), req("Warm-up seven.", "A longer answer here.")],
        ]
        out = [res for r in rounds for res in self([self.prepare(x) for x in r])]
        self.decoder.forward_passes = 0
        if self.prefix is not None:
            self.prefix.reset()
        return out

    def uses_logits(self, req: ModelRequest) -> bool:
        return self.labels is not None and self.labels.applies_to(req)

    def prepare(self, req: ModelRequest) -> ModelRequest | Prepared:
        """``req`` rendered and tokenised on the caller's thread where it can be (a text
        request without literal control tokens), so the worker only pads it."""
        if req.image is not None or self.injection.smuggles(req):
            return req
        return self.prompts.prepare(req, USER_FIELD if self.uses_logits(req) else "")

    def __call__(self, items: list[ModelRequest | Prepared]) -> list[ClassifierResult]:
        reqs = [i.req if isinstance(i, Prepared) else i for i in items]
        self.prompts.prepared = {id(i.req): i for i in items if isinstance(i, Prepared)}
        try:
            return self._run(reqs)
        finally:
            self.prompts.prepared = {}

    def _run(self, reqs: list[ModelRequest]) -> list[ClassifierResult]:
        results: list[ClassifierResult | None] = [None] * len(reqs)
        groups: dict[tuple[int, bool, bool], list[int]] = {}
        for i, r in enumerate(reqs):
            key = (r.max_new_tokens, self.uses_logits(r), r.expects_response)
            groups.setdefault(key, []).append(i)
        for (max_new, logits, _), idx in groups.items():
            group = [reqs[i] for i in idx]
            for i, res in zip(idx, self._run_group(group, max_new, logits), strict=True):
                results[i] = res
        return [r if r is not None else ClassifierError("no result") for r in results]

    def _run_group(
        self, reqs: list[ModelRequest], max_new: int, logits: bool = False
    ) -> list[ClassifierResult]:
        smuggled = [i for i, r in enumerate(reqs) if self.injection.smuggles(r)]
        if smuggled:
            return self._without(reqs, smuggled, max_new, logits)
        try:
            enc = self.prompts.encode(reqs, [USER_FIELD] * len(reqs) if logits else ())
        except Exception as err:  # noqa: BLE001 (None)
            if len(reqs) == 1:
                return [
                    ClassifierUnavailable(
                        f"cannot build the model input: {type(err).__name__}: {err}"
                    )
                ]
            return [r for req in reqs for r in self._run_group([req], max_new, logits)]
        bad = self.injection.miscounted(reqs, enc)
        if bad:
            return self._without(reqs, bad, max_new, logits)
        if logits:
            return self._read_labels(reqs, enc, max_new)
        return self.decoder.generate(reqs, enc, max_new)

    def _without(
        self, reqs: list[ModelRequest], bad: list[int], max_new: int, logits: bool = False
    ) -> list[ClassifierResult]:
        """Refuse the requests at ``bad`` and run the rest."""
        out: list[ClassifierResult] = [
            InjectionDetected(
                "the content carries tokenizer control tokens; refusing to classify it"
            )
        ] * len(reqs)
        keep = [i for i in range(len(reqs)) if i not in bad]
        if keep:
            rest = self._run_group([reqs[i] for i in keep], max_new, logits)
            for i, res in zip(keep, rest, strict=True):
                out[i] = res
        return out

    def _read_labels(
        self, reqs: list[ModelRequest], enc: Any, max_new: int
    ) -> list[ClassifierResult]:
        assert self.labels is not None
        try:
            return self.labels.read(reqs, enc, max_new)
        except torch.OutOfMemoryError:
            if self.prefix is not None:
                self.prefix.clear()
            free_cache(self.lm.device)
            if len(reqs) == 1:
                return [ClassifierUnavailable("out of GPU memory for a single request")]
            self.decoder.oom_splits += 1
            half = len(reqs) // 2
            return self._run_group(reqs[:half], max_new, True) + self._run_group(
                reqs[half:], max_new, True
            )
        except BaseException:
            free_cache(self.lm.device)
            raise
