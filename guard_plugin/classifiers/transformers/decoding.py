"""Forward passes and greedy generation on an encoded batch, with the KV cache where a pass
continues another, and batches split in halves on CUDA out-of-memory.

With ``compile`` on, the text-only forward passes (the label passes of ``verdict_mode=logits``)
run through ``torch.compile`` with dynamic shapes, so one graph serves every prompt length
and batch size; passes with images and generation stay eager. CUDA graphs are left out: they
hand back outputs that the next replay overwrites, and the prefix cache keeps the KV tensors a
pass returns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import transformers

from guard_plugin.classifiers.base import ClassifierOutput, ClassifierResult
from guard_plugin.classifiers.transformers.loader import LocalModel, free_cache
from guard_plugin.classifiers.transformers.prompts import Prompts
from guard_plugin.errors import ClassifierUnavailable
from guard_plugin.prompting import ModelRequest

__all__ = ["CACHE_KWARG", "Decoder"]

# The model and generate() take a KV cache as `cache` from transformers 5.24 (as
# `past_key_values`, deprecated there, before)
CACHE_KWARG = (
    "cache"
    if tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2]) >= (5, 24)
    else "past_key_values"
)


class Decoder:
    """Runs the model. Counts its forward passes and out-of-memory splits for the stats."""

    def __init__(self, lm: LocalModel, prompts: Prompts, compile: bool = False) -> None:
        self.lm = lm
        self.prompts = prompts
        #: the model's forward for text-only passes: compiled when asked, else the model itself
        self.text_forward: Any = (
            torch.compile(lm.model.forward, dynamic=True) if compile else lm.model
        )
        tok = prompts.tokenizer
        stop = [tok.eos_token_id]
        eot = tok.convert_tokens_to_ids("<end_of_turn>")
        if isinstance(eot, int) and eot != tok.unk_token_id:
            stop.append(eot)
        self.stop_ids = [i for i in stop if i is not None]
        self.oom_splits = 0
        #: forward passes run (prefills, label passes and generation steps), for benchmarks
        self.forward_passes = 0

    def inputs(self, enc: Any) -> Any:
        """An encoded batch on the model's device, in its dtype."""
        inputs = enc.to(self.lm.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.lm.dtype)
        else:
            # Only image tokens need token_type_ids (bidirectional attention among them).
            # Without images they are all zeros, and passing them makes Gemma 3 build an
            # explicit mask: identical logits, about 1.6x slower prefill on CPU.
            inputs.pop("token_type_ids", None)
        return inputs

    def last_logits(self, enc: Any) -> torch.Tensor:
        """The next-token logits after each (left-padded) row: one forward pass, positions
        counted from each row's first real token, as ``generate`` counts them."""
        inputs = self.inputs(enc)
        positions = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
        logits, _ = self.forward(inputs, positions, None, keep=False)
        return logits

    def forward(
        self, inputs: Any, positions: torch.Tensor, cache: Any, *, keep: bool = True
    ) -> tuple[torch.Tensor, Any]:
        """One forward pass; the last position's logits and (``keep``) the KV cache."""
        run = self.lm.model if "pixel_values" in inputs else self.text_forward
        with torch.inference_mode():
            out = run(
                **inputs,
                position_ids=positions,
                **{CACHE_KWARG: cache},
                logits_to_keep=1,
                use_cache=keep,
            )
        self.forward_passes += 1
        return out.logits[:, -1, :].float(), getattr(out, CACHE_KWARG) if keep else None

    def continue_from(
        self, ids: torch.Tensor, mask: torch.Tensor, cache: Any, max_new: int
    ) -> list[str]:
        """Greedy generation after a forced answer whose every token but the last is in
        ``cache``: the ``Safety Categories`` line, without a second prefill."""
        kwargs = {CACHE_KWARG: cache, "cache_implementation": None}
        out = self._greedy(max_new, input_ids=ids, attention_mask=mask, **kwargs)
        return self._new_text(out, ids.shape[1])

    def generate(
        self, reqs: list[ModelRequest], enc: Any, max_new: int, suffixes: Sequence[str] = ()
    ) -> list[ClassifierResult]:
        """Greedy generation for an encoded batch; ``suffixes`` are the forced answer
        prefixes the batch was encoded with (kept when an OOM splits it)."""
        try:
            inputs = self.inputs(enc)
            out = self._greedy(max_new, **inputs)
        except torch.OutOfMemoryError:
            free_cache(self.lm.device)
            if len(reqs) == 1:
                return [ClassifierUnavailable("out of GPU memory for a single request")]
            self.oom_splits += 1
            h = len(reqs) // 2
            parts = [(reqs[:h], list(suffixes[:h])), (reqs[h:], list(suffixes[h:]))]
            return [
                res
                for rs, sx in parts
                for res in self.generate(rs, self.prompts.encode(rs, sx), max_new, sx)
            ]
        except Exception:
            free_cache(self.lm.device)
            raise
        return [ClassifierOutput(t) for t in self._new_text(out, inputs["input_ids"].shape[1])]

    def _greedy(self, max_new: int, **inputs: Any) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = self.lm.model.generate(
                **inputs,
                max_new_tokens=max_new,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=self.prompts.pad_id,
                eos_token_id=self.stop_ids,
            )
        return out

    def _new_text(self, out: torch.Tensor, prompt_width: int) -> list[str]:
        """The generated tokens of each row as text (one forward pass counted per token:
        the prefill makes the first)."""
        new = out[:, prompt_width:]
        self.forward_passes += new.shape[1]
        return [
            t.strip() for t in self.prompts.tokenizer.batch_decode(new, skip_special_tokens=True)
        ]
