"""Requests into model input: each rendered with its own template kwargs (tenants with
different policies share a batch), tokenised and left-padded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from guard_plugin.classifiers.transformers.loader import LocalModel
from guard_plugin.prompting import ModelRequest

__all__ = ["Prompts"]


class Prompts:
    """Renders and encodes requests for one loaded model."""

    def __init__(self, lm: LocalModel) -> None:
        self.lm = lm
        self.tokenizer = lm.processor.tokenizer
        tok = self.tokenizer
        self.pad_id: int = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

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
        texts = [self.render(r) for r in reqs]
        if suffixes:
            texts = [t + s for t, s in zip(texts, suffixes, strict=True)]
        if all(r.image is None for r in reqs):
            return self.encode_text(texts)
        images = [[r.image.to_pil()] if r.image is not None else [] for r in reqs]
        return self.lm.processor(text=texts, images=images, padding=True, return_tensors="pt")

    def encode_text(self, texts: list[str]) -> Any:
        """Text-only batches: the processor adds nothing but a per-token scan for image
        placeholders (none can be present: the smuggling check ran first), so tokenise with
        the Rust backend and left-pad directly. Equal to the processor's output (tested)."""
        import numpy as np
        from transformers import BatchFeature

        backend = self.tokenizer.backend_tokenizer
        backend.no_padding()
        backend.no_truncation()
        encs = backend.encode_batch(texts, add_special_tokens=False)
        width = max(len(e.ids) for e in encs)
        ids = np.full((len(encs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for row, e in enumerate(encs):
            n = len(e.ids)
            ids[row, width - n :] = e.ids
            mask[row, width - n :] = 1
        return BatchFeature(
            {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        )
