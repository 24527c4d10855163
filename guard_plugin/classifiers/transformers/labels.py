"""Verdicts from the label token's logits (``verdict_mode=logits``).

The answer is forced up to ``User Safety:`` and one forward pass gives the label token's
logits: the label is their argmax, as greedy generation would pick it, and P(unsafe) is the
softmax over the two label tokens. A response check adds one pass over
``<user label>\\nResponse Safety:`` on the cached prompt. A row with any unsafe label that
asked for categories generates the ``Safety Categories`` line from the same cache: the line
covers whichever turn is unsafe, so an unsafe user turn answered by a safe response has one.
"""

from __future__ import annotations

from typing import Any

import torch

from guard_plugin.classifiers.base import ClassifierOutput, ClassifierResult
from guard_plugin.classifiers.transformers.decoding import Decoder
from guard_plugin.classifiers.transformers.prefix import PrefixCache
from guard_plugin.classifiers.transformers.prompts import Prompts
from guard_plugin.prompting import ModelRequest

__all__ = ["RESPONSE_FIELD", "USER_FIELD", "LabelReader"]

USER_FIELD = "User Safety:"
RESPONSE_FIELD = "\nResponse Safety:"


class LabelReader:
    """Reads labels from logits where the tokenizer allows it (``label_ids`` is ``None``
    where it does not: then every row generates)."""

    def __init__(
        self, prompts: Prompts, decoder: Decoder, prefix: PrefixCache | None = None
    ) -> None:
        self.prompts = prompts
        self.decoder = decoder
        self.prefix = prefix
        self.tokenizer = prompts.tokenizer
        self.label_ids = self._find_label_ids()
        self.response_field_ids = self._find_response_field_ids() if self.label_ids else None
        if self.response_field_ids is None:
            self.label_ids = None  # the extension cannot be fed as tokens: generate instead

    def _find_label_ids(self) -> tuple[int, int] | None:
        """The token ids of `` safe`` and `` unsafe`` right after each verdict field, or
        ``None`` where a label is not one token after the field."""
        tok = self.tokenizer
        found: set[tuple[int, int]] = set()
        for field_name in (USER_FIELD, RESPONSE_FIELD.strip()):
            base = tok.encode(field_name, add_special_tokens=False)
            pair = []
            for label in ("safe", "unsafe"):
                ids = tok.encode(f"{field_name} {label}", add_special_tokens=False)
                if ids[: len(base)] != base or len(ids) != len(base) + 1:
                    return None
                pair.append(ids[-1])
            found.add((pair[0], pair[1]))
        if len(found) != 1:
            return None
        (safe, unsafe) = found.pop()
        return (safe, unsafe) if safe != unsafe else None

    def _find_response_field_ids(self) -> torch.Tensor | None:
        """The tokens of ``\\nResponse Safety:`` as they follow a label, when the tokenizer
        writes the whole answer as label token + those tokens (then the response pass feeds
        them after the cached prompt without re-tokenising)."""
        assert self.label_ids is not None
        tok = self.tokenizer
        field_ids = tok.encode(RESPONSE_FIELD, add_special_tokens=False)
        head = tok.encode(USER_FIELD, add_special_tokens=False)
        for label, lid in zip(("safe", "unsafe"), self.label_ids, strict=True):
            whole = tok.encode(f"{USER_FIELD} {label}{RESPONSE_FIELD}", add_special_tokens=False)
            if whole != [*head, lid, *field_ids]:
                return None
        return torch.tensor([field_ids], dtype=torch.long)

    def applies_to(self, req: ModelRequest) -> bool:
        """Whether ``req`` is read from logits (reasoning requests generate)."""
        return self.label_ids is not None and not req.template_kwargs.get("enable_thinking")

    def read(self, reqs: list[ModelRequest], enc: Any, max_new: int) -> list[ClassifierResult]:
        """Labels for a batch encoded with the ``User Safety:`` suffix: the label pass over
        the prompts, for response rows one short pass over ``<user label>\\nResponse
        Safety:``, and for unsafe rows that asked for categories a generation that starts
        after the label token."""
        assert self.label_ids is not None and self.response_field_ids is not None
        safe, unsafe = self.label_ids
        dev = self.decoder.lm.device
        inputs = self.decoder.inputs(enc)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        kept = (
            self.prefix is not None
            and len(reqs) == 1
            and "pixel_values" not in inputs
            and bool(mask.all())
        )
        scopes = {r.scope for r in reqs}
        scope = scopes.pop() if len(scopes) == 1 else None  # rows of several scopes share none
        if kept:  # one text row: start from a kept prompt's cache where one shares a prefix
            logits, cache = self._prefill_one(ids, mask, positions, reqs[0].scope)
        else:
            logits, cache, ids, mask, positions = self._prefill_batch(
                inputs, positions, max_new, scope, reqs[0].scope
            )
        n = len(reqs)
        results: list[ClassifierResult | None] = [None] * n
        texts = [USER_FIELD] * n
        scores: list[list[float | None]] = [[None, None] for _ in range(n)]
        fields = 2 if reqs[0].expects_response else 1  # groups never mix the two
        chosen = torch.full((n,), safe, device=dev)  # each row's label token so far
        for step in range(fields):
            if step:  # the response field, after each row's greedy user label
                ext = torch.cat(
                    [chosen.unsqueeze(1), self.response_field_ids.to(dev).expand(n, -1)], dim=1
                )
                ext_mask = torch.ones_like(ext)
                ext_pos = positions[:, -1:] + 1 + torch.arange(ext.shape[1], device=dev)
                logits, cache = self.decoder.forward(
                    {"input_ids": ext, "attention_mask": torch.cat([mask, ext_mask], dim=1)},
                    ext_pos,
                    cache,
                )
                ids = torch.cat([ids, ext], dim=1)
                mask = torch.cat([mask, ext_mask], dim=1)
                positions = torch.cat([positions, ext_pos], dim=1)
            top = logits.argmax(dim=-1)
            p = torch.softmax(logits[:, [safe, unsafe]], dim=-1)[:, 1].tolist()
            for i, t in enumerate(top.tolist()):
                if results[i] is not None:
                    continue
                if t not in (safe, unsafe):
                    # Not a verdict: the text greedy decoding would have begun with, which
                    # the parser then refuses, as it refuses any answer that is no verdict.
                    results[i] = ClassifierOutput(texts[i] + self.tokenizer.decode([t]))
                    continue
                texts[i] += f" {'unsafe' if t == unsafe else 'safe'}"
                scores[i][step] = p[i]
                if step + 1 < fields:
                    texts[i] += RESPONSE_FIELD
            # rows that are no verdict go on with a label token too; their result is final
            chosen = torch.where((top == safe) | (top == unsafe), top, safe)
        self._categories(reqs, results, texts, (ids, mask, chosen, cache), max_new)
        if kept:
            assert self.prefix is not None
            self.prefix.put(ids[0, : mask.shape[1]], cache, reqs[0].scope)
        return [
            r
            if r is not None
            else ClassifierOutput(texts[i], user_score=scores[i][0], response_score=scores[i][1])
            for i, r in enumerate(results)
        ]

    def _prefill_one(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, scope: str
    ) -> tuple[torch.Tensor, Any]:
        """The label pass of one unpadded row, feeding only the tokens after the longest
        prefix it shares with a kept prompt of its scope (all of them when none does)."""
        assert self.prefix is not None
        hit = self.prefix.take(ids[0], scope)
        cache, start = hit if hit is not None else (self.prefix.new_cache(), 0)
        feed = {"input_ids": ids[:, start:], "attention_mask": mask}
        return self.decoder.forward(feed, positions[:, start:], cache)

    def _prefill_batch(
        self,
        inputs: Any,
        positions: torch.Tensor,
        max_new: int,
        scope: str | None,
        first_scope: str,
    ) -> Any:
        """The label pass of a batch: from a kept prefix every row shares where there is one
        (of the rows' one ``scope``), else whole (then its first row's prompt is kept, under
        ``first_scope``, for the checks after it)."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        text = "pixel_values" not in inputs
        if self.prefix is not None and text:
            shared = self._prefill_shared(ids, mask, max_new, scope)
            if shared is not None:
                return shared
        fresh = self.prefix.new_cache() if self.prefix is not None else None
        logits, cache = self.decoder.forward(inputs, positions, fresh)
        if fresh is not None and text:
            self._keep_first_row(ids, mask, cache, first_scope)
        return logits, cache, ids, mask, positions

    def _prefill_shared(
        self, ids: torch.Tensor, mask: torch.Tensor, max_new: int, scope: str | None
    ) -> Any:
        """The label pass of a batch whose rows share a kept prompt's prefix: the prefix from
        its cache, each row's rest fed after it, left-padded to the longest (the padding then
        sits between prefix and rest, masked, with positions counting real tokens only).
        Where the rows could outgrow a sliding-window layer's window, None (the batch goes
        whole)."""
        assert self.prefix is not None and self.response_field_ids is not None
        rows = [ids[i][mask[i].bool()] for i in range(ids.shape[0])]
        window = self._window()
        reserve = 1 + self.response_field_ids.shape[1] + max_new
        hit = self.prefix.shared(rows, window - reserve if window else None, scope)
        if hit is None:
            return None
        cache, start = hit
        dev = ids.device
        rest = [r[start:] for r in rows]
        width = max(len(r) for r in rest)
        pad = self.prompts.pad_id
        new_ids = torch.stack(
            [torch.cat([r.new_full((width - len(r),), pad), r]) for r in rest]
        ).to(dev)
        new_mask = torch.stack(
            [torch.cat([r.new_zeros(width - len(r)), r.new_ones(len(r))]) for r in rest]
        ).to(dev)
        new_pos = start + (new_mask.long().cumsum(-1) - 1).clamp(min=0)
        n = len(rows)
        full_mask = torch.cat([new_mask.new_ones(n, start), new_mask], dim=1)
        logits, cache = self.decoder.forward(
            {"input_ids": new_ids, "attention_mask": full_mask}, new_pos, cache
        )
        head = rows[0][:start].to(dev).expand(n, start)
        pos = torch.arange(start, device=dev).expand(n, start)
        return (
            logits,
            cache,
            torch.cat([head, new_ids], dim=1),
            full_mask,
            torch.cat([pos, new_pos], dim=1),
        )

    def _keep_first_row(
        self, ids: torch.Tensor, mask: torch.Tensor, cache: Any, scope: str
    ) -> None:
        """Keep the first row's prompt cache (its padding cut off), so that the checks after
        this batch find the prefix it shares with them."""
        assert self.prefix is not None
        real = int(mask[0].sum())
        width = ids.shape[1]
        layers = [
            (
                layer.keys[0:1, :, width - real : width].clone(),
                layer.values[0:1, :, width - real : width].clone(),
            )
            for layer in cache.layers
        ]
        self.prefix.put(ids[0, width - real :], self.prefix.new_cache_from(layers), scope)

    def _window(self) -> int | None:
        config = self.decoder.lm.model.config
        window = getattr(getattr(config, "text_config", config), "sliding_window", None)
        return int(window) if window else None

    def _categories(
        self,
        reqs: list[ModelRequest],
        results: list[ClassifierResult | None],
        texts: list[str],
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any],
        max_new: int,
    ) -> None:
        """The ``Safety Categories`` line for the rows with any unsafe label (one line covers
        whichever turn is unsafe, as the model writes it) that asked for it, generated from
        the cache (or, for a cache type that cannot keep a subset of rows, from the forced
        answer prefilled again)."""
        ids, mask, chosen, cache = state
        extend = [
            i
            for i, req in enumerate(reqs)
            if results[i] is None
            and " unsafe" in texts[i]
            and req.template_kwargs.get("request_categories") == "/categories"
        ]
        if not extend:
            return
        more: list[ClassifierResult]
        if hasattr(cache, "batch_select_indices"):
            rows = torch.tensor(extend, device=ids.device)
            cache.batch_select_indices(rows)
            more = [
                ClassifierOutput(t)
                for t in self.decoder.continue_from(
                    torch.cat([ids[rows], chosen[rows].unsqueeze(1)], dim=1),
                    torch.cat([mask[rows], torch.ones_like(rows).unsqueeze(1)], dim=1),
                    cache,
                    max_new,
                )
            ]
        else:
            sub, forced = [reqs[i] for i in extend], [texts[i] for i in extend]
            more = self.decoder.generate(sub, self.prompts.encode(sub, forced), max_new, forced)
        for i, res in zip(extend, more, strict=True):
            if isinstance(res, ClassifierOutput):
                texts[i] += res.text if res.text.startswith("\n") else "\n" + res.text
            else:
                results[i] = res
