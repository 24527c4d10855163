"""Requests into model input: each rendered with its own template kwargs (tenants with
different policies share a batch), tokenised and left-padded.

A text request can be rendered and tokenised ahead, on its caller's thread
(:meth:`Prompts.prepare`); the worker then only pads what its callers prepared, and spends its
time on the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from guard_plugin.classifiers.transformers.loader import LocalModel
from guard_plugin.prompting import ModelRequest

__all__ = ["Prepared", "Prompts"]


@dataclass(frozen=True)
class Prepared:
    """A text request rendered and tokenised ahead (with the forced answer start ``suffix``)."""

    req: ModelRequest
    suffix: str
    ids: tuple[int, ...]


class Prompts:
    """Renders and encodes requests for one loaded model."""

    def __init__(self, lm: LocalModel) -> None:
        self.lm = lm
        self.tokenizer = lm.processor.tokenizer
        tok = self.tokenizer
        self.pad_id: int = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        # callers tokenise with a copy of their own: the worker's tokenizer changes its
        # padding settings (the processor does), which a concurrent encode must not see
        from tokenizers import Tokenizer

        self._ahead = Tokenizer.from_str(tok.backend_tokenizer.to_str())
        self._ahead.no_padding()
        self._ahead.no_truncation()
        #: what the callers of the batch being run prepared, by ``id`` of their request
        self.prepared: Mapping[int, Prepared] = {}

    def prepare(self, req: ModelRequest, suffix: str) -> Prepared:
        """``req`` rendered and tokenised now (on the caller's thread), for a text request."""
        ids = self._ahead.encode(self.render(req) + suffix, add_special_tokens=False).ids
        return Prepared(req, suffix, tuple(ids))

    def render(
        self, req: ModelRequest, *, user_text: str | None = None, response_text: str | None = None
    ) -> str:
        """The request's prompt text; ``user_text`` / ``response_text`` stand in for the
        request's own (the injection check renders a benign twin)."""
        msgs = req.messages(lambda img: {"type": "image"})
        if user_text is not None:
            msgs[0]["content"][-1]["text"] = user_text
        if response_text is not None and len(msgs) > 1:
            msgs[1]["content"][0]["text"] = response_text
        return str(
            self.lm.processor.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=True, **dict(req.template_kwargs)
            )
        )

    def encode(self, reqs: Sequence[ModelRequest], suffixes: Sequence[str] = ()) -> Any:
        """The batch's model input; ``suffixes`` (one per request) continue each prompt with
        a forced start of the answer."""
        sx = list(suffixes) or [""] * len(reqs)
        if all(r.image is None for r in reqs):
            ahead = [self.prepared.get(id(r)) for r in reqs]
            if all(p is not None and p.suffix == s for p, s in zip(ahead, sx, strict=True)):
                return self.pad([p.ids for p in ahead if p is not None])
        texts = [self.render(r) + s for r, s in zip(reqs, sx, strict=True)]
        if all(r.image is None for r in reqs):
            return self.encode_text(texts)
        images = [[r.image.to_pil()] if r.image is not None else [] for r in reqs]
        return self.lm.processor(text=texts, images=images, padding=True, return_tensors="pt")

    def encode_text(self, texts: list[str]) -> Any:
        """Text-only batches: the processor adds nothing but a per-token scan for image
        placeholders (none can be present: the smuggling check ran first), so tokenise with
        the Rust backend and left-pad directly. Equal to the processor's output (tested)."""
        backend = self.tokenizer.backend_tokenizer
        backend.no_padding()
        backend.no_truncation()
        encs = backend.encode_batch(texts, add_special_tokens=False)
        return self.pad([e.ids for e in encs])

    def pad(self, rows: Sequence[Sequence[int]]) -> Any:
        """Token rows left-padded into a batch."""
        import numpy as np
        from transformers import BatchFeature

        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, r in enumerate(rows):
            n = len(r)
            ids[row, width - n :] = r
            mask[row, width - n :] = 1
        return BatchFeature(
            {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        )
