"""``TransformersClassifier``: the local model behind the classifier seam, shared and batched,
and the ``transformers:`` / ``hf:`` specs that build it."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import torch

from guard_plugin.classifiers.base import (
    BaseClassifier,
    ClassifierOutput,
    ClassifierResult,
    Factory,
    spec_bool,
    spec_number,
)
from guard_plugin.classifiers.batching import BatchWorker
from guard_plugin.classifiers.transformers.loader import (
    DEFAULT_MODEL_ID,
    LocalModel,
    free_cache,
    load_local_model,
    pick_device,
)
from guard_plugin.classifiers.transformers.prompts import Prepared
from guard_plugin.classifiers.transformers.runner import VERDICT_MODES, Runner
from guard_plugin.errors import ClassifierError, ConfigError, ModelLoadError
from guard_plugin.policy import Policy, compile_policy
from guard_plugin.prompting import ModelRequest, SafetyInput, build_request

__all__ = ["SCHEMES", "TransformersClassifier"]


class TransformersClassifier(BaseClassifier):
    """Nemotron Content Safety run in this process, shared and batched.

    - ``model``: a model folder, a Hugging Face id in the local cache, or a
      :class:`LocalModel` already loaded (then ``adapter``, ``device``, ``dtype`` are unused).
    - ``adapter``: an optional PEFT LoRA adapter folder (merged at load).
    - ``device`` / ``dtype``: default CUDA + bfloat16 when available, else CPU + float32.
    - ``max_batch_size``, ``max_wait_ms``: how the worker forms batches.
    - ``max_queue``: requests allowed to wait; beyond it callers get :class:`QueueFullError`.
    - ``verdict_mode``: ``logits`` (default: labels and P(unsafe) from the label token's
      logits, one forward pass for most checks) or ``generate`` (greedy generation, no score).
    - ``prefix_cache_mb``: memory for the KV caches of recent prompts (``logits`` mode): a
      check run on its own prefills only the tokens after the longest prefix it shares with
      one of them (the next window of a streamed answer, or the policy header); 0 turns it
      off. Logits are those of a full prefill.
    - ``compile``: run the text-only label passes through ``torch.compile`` (dynamic shapes,
      no CUDA graphs). Compiling happens at load, on a few warm-up checks, so no user's check
      waits for it; a failure to compile fails the load. Off by default: the load takes
      minutes (compile time grows with the model's depth) and the gain is the batches' on the
      CPU, not yet measured on a GPU (docs/benchmarks.md).

    Prefer ``load_classifier("transformers:...")``, which returns one shared instance per spec.
    """

    def __init__(
        self,
        model: str | LocalModel = DEFAULT_MODEL_ID,
        *,
        adapter: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        max_batch_size: int = 16,
        max_wait_ms: float = 0.0,
        max_queue: int = 1024,
        verdict_mode: str = "logits",
        prefix_cache_mb: float = 512,
        compile: bool = False,
    ) -> None:
        _check_sizes(max_batch_size, max_queue, max_wait_ms, prefix_cache_mb)
        if verdict_mode not in VERDICT_MODES:
            raise ConfigError(
                f"verdict_mode must be one of {', '.join(VERDICT_MODES)}, not '{verdict_mode}'"
            )
        if isinstance(model, LocalModel):
            self.local = model
            self.name = f"transformers:{model.source}"
        else:
            self.local = load_local_model(model, adapter=adapter, device=device, dtype=dtype)
            self.name = f"transformers:{model}" + (f"+{adapter}" if adapter else "")
        self._runner = Runner(self.local, verdict_mode, prefix_cache_mb, compile)
        self.verdict_mode = verdict_mode if self._runner.label_ids is not None else "generate"
        self.extra_tokens = self._runner.special_tokens
        if compile and self.verdict_mode != "logits":
            raise ConfigError(
                "compile=true compiles the label passes of verdict_mode=logits, and this model "
                f"runs verdict_mode={self.verdict_mode}: leave compile off"
            )
        if compile:
            self._warm_up()  # before the worker starts: a failed compile leaves no thread
        self._worker: BatchWorker[ModelRequest | Prepared, ClassifierResult] = BatchWorker(
            self._runner,
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_ms / 1000.0,
            max_queue=max_queue,
            name="guard-plugin-model",
        )
        self._close_lock = threading.Lock()

    def _warm_up(self) -> None:
        """Compile now, on the warm-up checks, or fail the load saying why."""
        try:
            results = self._runner.warm_up()
        except Exception as err:  # any compile failure fails the load
            raise ModelLoadError(
                f"compile=true failed while compiling the model: {type(err).__name__}: {err}; "
                "load it without compile"
            ) from err
        failed = [r for r in results if not isinstance(r, ClassifierOutput)]
        if failed:
            raise ModelLoadError(f"compile=true: a warm-up check failed: {failed[0]}")

    @property
    def stats(self) -> dict[str, Any]:
        s = self._worker.stats
        return {
            "requests": s.requests,
            "batches": s.batches,
            "max_batch": s.max_batch,
            "queue_full": s.queue_full,
            "failures": s.failures,
            "oom_splits": self._runner.oom_splits,
            "forward_passes": self._runner.forward_passes,
            **self._runner.prefix_stats,
        }

    def classify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]:
        items = [self._runner.prepare(r) for r in requests]  # on this, the caller's thread
        return [_as_result(r) for r in self._worker.run(items, timeout)]

    async def aclassify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]:
        items = [self._runner.prepare(r) for r in requests]  # on this, the caller's thread
        return [_as_result(r) for r in await self._worker.arun(items, timeout)]

    def health(self) -> bool:
        """Runs a one-token generation through the worker: True when the model answers."""
        req = build_request(SafetyInput(text="ping"), compile_policy(Policy()))
        probe = ModelRequest(req.user_text, None, None, req.template_kwargs, 1, "health")
        try:
            (res,) = self._worker.run([probe], timeout=60)
        except ClassifierError:
            return False
        return isinstance(res, ClassifierOutput)

    def close(self) -> None:
        with self._close_lock:
            self._worker.close()
            free_cache(self.local.device)


def _as_result(r: object) -> ClassifierResult:
    if isinstance(r, (ClassifierOutput, ClassifierError)):
        return r
    return ClassifierError(f"unexpected result {type(r).__name__}")


def _check_sizes(
    max_batch_size: int, max_queue: int, max_wait_ms: float, prefix_cache_mb: float
) -> None:
    bad = [
        f"{name}={value} (must be {rule})"
        for name, value, ok, rule in (
            ("max_batch_size", max_batch_size, max_batch_size >= 1, ">= 1"),
            ("max_queue", max_queue, max_queue >= 1, ">= 1"),
            ("max_wait_ms", max_wait_ms, 0 <= max_wait_ms < math.inf, ">= 0"),
            ("prefix_cache_mb", prefix_cache_mb, 0 <= prefix_cache_mb < math.inf, ">= 0; 0 is off"),
        )
        if not ok
    ]
    if bad:
        raise ConfigError("bad local classifier option(s): " + ", ".join(bad))


_CONVERT: dict[str, Any] = {
    "max_batch_size": int,
    "max_queue": int,
    "max_wait_ms": spec_number,
    "prefix_cache_mb": spec_number,
    "compile": spec_bool,
}


def _factory(rest: str, options: dict[str, Any]) -> tuple[str, Any]:
    model, _, query = rest.partition("?")
    model = model or DEFAULT_MODEL_ID
    params: dict[str, Any] = dict(parse_qsl(query))
    known = {"adapter", "device", "dtype", "verdict_mode", *_CONVERT}
    unknown = set(params) - known
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(sorted(unknown))} in 'transformers:{rest}'; "
            "known: adapter, compile, device, dtype, max_batch_size, max_wait_ms, max_queue, "
            "prefix_cache_mb, verdict_mode"
        )
    for k, convert in _CONVERT.items():
        if k in params:
            try:
                params[k] = convert(params[k])
            except ValueError as err:
                raise ConfigError(f"bad value for {k} in 'transformers:{rest}': {err}") from None
    params.update(options)
    p = Path(model).expanduser()
    norm_model = str(p.resolve()) if p.exists() else model
    adapter = params.get("adapter")
    norm_adapter = str(Path(adapter).expanduser().resolve()) if adapter else ""
    dev, dt = pick_device(params.get("device"), params.get("dtype"))
    extra = sorted((k, v) for k, v in params.items() if k not in ("adapter", "device", "dtype"))
    key = f"transformers:{norm_model}|{norm_adapter}|{dev}|{dt}|{extra}"
    return key, lambda: TransformersClassifier(model, **params)


#: the specs this backend builds from (read by :mod:`guard_plugin.classifiers.registry`)
SCHEMES: dict[str, Factory] = {"transformers": _factory, "hf": _factory}
