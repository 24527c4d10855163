"""Untrusted text must not reach the model as control tokens. Two layers: literal special
tokens in the request's text, then (after tokenising) per-row control-token counts that
differ from a benign rendering of the same request shape."""

from __future__ import annotations

from typing import Any

import torch

from guard_plugin.classifiers.transformers.prompts import Prompts
from guard_plugin.prompting import ModelRequest

__all__ = ["ControlTokenCheck"]


class ControlTokenCheck:
    """Finds requests whose untrusted text would smuggle control tokens into the prompt."""

    def __init__(self, prompts: Prompts) -> None:
        self.prompts = prompts
        tok = prompts.tokenizer
        self.special_tokens: tuple[str, ...] = tuple(
            t.content for t in tok.added_tokens_decoder.values() if t.special
        )
        # Control-token ids whose count per row must match a benign reference rendering.
        self.control_ids = torch.tensor(
            sorted(
                {tok.convert_tokens_to_ids(t) for t in self.special_tokens}
                - {prompts.pad_id, tok.unk_token_id}
            ),
            dtype=torch.long,
        )
        self._reference: dict[tuple[Any, ...], torch.Tensor] = {}

    def smuggles(self, req: ModelRequest) -> bool:
        """The literal check, before tokenising."""
        texts = (req.user_text, req.response_text or "")
        return any(tok in text for text in texts for tok in self.special_tokens)

    def miscounted(self, reqs: list[ModelRequest], enc: Any) -> list[int]:
        """The rows of an encoded batch whose control tokens differ from a benign rendering."""
        counts = self._counts(enc["input_ids"])
        return [i for i, r in enumerate(reqs) if not torch.equal(counts[i], self._expected(r))]

    def _counts(self, input_ids: torch.Tensor) -> torch.Tensor:
        return (input_ids.unsqueeze(-1) == self.control_ids).sum(dim=1)

    def _expected(self, req: ModelRequest) -> torch.Tensor:
        key = (
            repr(sorted(req.template_kwargs.items())),
            req.image is not None,
            req.response_text is not None,
        )
        ref = self._reference.get(key)
        if ref is None:
            text = self.prompts.render(req, user_text="x", response_text="x")
            if req.image is None:
                enc = self.prompts.encode_text([text])
            else:
                enc = self.prompts.lm.processor(
                    text=[text], images=[[req.image.to_pil()]], return_tensors="pt"
                )
            ref = self._counts(enc["input_ids"])[0]
            if len(self._reference) < 256:
                self._reference[key] = ref
        return ref
