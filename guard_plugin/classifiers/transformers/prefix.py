"""KV caches of recent prompts, so a check prefills only the tokens it does not share with
one of them.

Successive checks of one streamed answer share everything up to the end of the text the
earlier one covered; checks under one policy share its header (the instructions and the
taxonomy). :meth:`PrefixCache.take` finds the kept prompt with the longest common token
prefix, hands its cache over cropped to that prefix, and the caller puts the cache of its own
prompt back (:meth:`PrefixCache.put`). Handing over instead of copying keeps one cache per
recent prompt, and the shared header moves along with the newest one. Entries are evicted
least recently used first, over ``max_bytes``. Only the batching worker's thread calls it.

The caches keep every layer whole (a ``DynamicCache`` without the model's config), so a
sliding-window layer can be cropped back too; attention still applies each layer's window.

Each kept prompt belongs to a *scope* (the policy fingerprint of its request): a prompt reuses
only a prompt of its own scope, so a check's speed says nothing about what another tenant
checked (the timing side channel that shared prefix caches open between tenants).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

__all__ = ["PrefixCache"]


@dataclass
class _Entry:
    ids: torch.Tensor  # the prompt's token ids (1-D, on the CPU)
    cache: Any
    nbytes: int
    scope: str = ""


class PrefixCache:
    """Recent prompts' KV caches, up to ``max_bytes``; a prefix shorter than ``min_tokens``
    is not worth reusing."""

    def __init__(self, max_bytes: int, min_tokens: int = 32) -> None:
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next = 0
        self.nbytes = 0
        self.hits = 0
        self.reused_tokens = 0
        self.prefilled_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def new_cache() -> Any:
        """An empty cache that keeps every layer whole (croppable)."""
        return DynamicCache()

    @staticmethod
    def new_cache_from(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
        """A cache holding ``(keys, values)`` per layer."""
        return DynamicCache(layers)

    def take(self, ids: torch.Tensor, scope: str = "") -> tuple[Any, int] | None:
        """The cache of the kept prompt of ``scope`` sharing the longest prefix with ``ids``
        (1-D), cropped to that prefix, and its length; None when none shares ``min_tokens``.
        At least one token of ``ids`` is always left to feed."""
        cpu = ids.detach().to("cpu")
        best, best_len = self._best(cpu, len(cpu) - 1, scope)
        if best is None or best_len < self.min_tokens:
            self.prefilled_tokens += len(cpu)
            return None
        e = self._entries.pop(best)
        self.nbytes -= e.nbytes
        extra = e.cache.get_seq_length() - best_len
        if extra > 0:
            e.cache.crop(-extra)
        self.hits += 1
        self.reused_tokens += best_len
        self.prefilled_tokens += len(cpu) - best_len
        return e.cache, best_len

    def shared(
        self, rows: list[torch.Tensor], max_width: int | None, scope: str | None = ""
    ) -> tuple[Any, int] | None:
        """For a batch whose rows are all of ``scope`` (None: they are not): a new cache of
        the longest prefix every row shares with one kept prompt of that scope, repeated for
        each row, and its length; the kept prompt stays as it is. None
        when that prefix is shorter than ``min_tokens``, or when the batch would pass
        ``max_width`` tokens (each row's suffix then sits after padding, and within a
        sliding window every layer attends to the whole row either way)."""
        if len(rows) < 2:
            return None
        first = rows[0].detach().to("cpu")
        common = min(len(r) for r in rows) - 1
        for r in rows[1:]:
            common = min(common, _common(first, r.detach().to("cpu")))
        best, best_len = (None, 0) if scope is None else self._best(first, common, scope)
        width = max(len(r) for r in rows)  # the prefix, then each suffix padded to the longest
        if best is None or best_len < self.min_tokens or (max_width and width > max_width):
            self.prefilled_tokens += sum(len(r) for r in rows)
            return None
        e = self._entries[best]
        self._entries.move_to_end(best)
        layers = [
            (
                layer.keys[:, :, :best_len].repeat(len(rows), 1, 1, 1),
                layer.values[:, :, :best_len].repeat(len(rows), 1, 1, 1),
            )
            for layer in e.cache.layers
        ]
        self.hits += len(rows)
        self.reused_tokens += best_len * len(rows)
        self.prefilled_tokens += sum(len(r) - best_len for r in rows)
        return DynamicCache(layers), best_len

    def _best(self, ids: torch.Tensor, limit: int, scope: str) -> tuple[int | None, int]:
        """The kept prompt of ``scope`` sharing the longest prefix with ``ids`` (at most
        ``limit`` tokens counted), and that length."""
        best, best_len = None, 0
        for key, e in self._entries.items():
            if e.scope != scope:
                continue
            n = min(_common(ids, e.ids), limit)
            if n > best_len:
                best, best_len = key, n
        return best, best_len

    def put(self, ids: torch.Tensor, cache: Any, scope: str = "") -> None:
        """Keep ``cache`` as the cache of the prompt ``ids`` (cropped to it) for ``scope``,
        evicting the least recently used entries over the cap."""
        if self.max_bytes <= 0 or not isinstance(cache, DynamicCache):
            return
        extra = cache.get_seq_length() - len(ids)
        if extra < 0:
            return
        if extra:
            cache.crop(-extra)
        size = _nbytes(cache)
        if size > self.max_bytes:
            return
        self._entries[self._next] = _Entry(ids.detach().to("cpu"), cache, size, scope)
        self._next += 1
        self.nbytes += size
        while self.nbytes > self.max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self.nbytes -= old.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def reset(self) -> None:
        """Empty, with the counters at zero."""
        self.clear()
        self.hits = self.reused_tokens = self.prefilled_tokens = 0


def _common(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = (a[:n] != b[:n]).nonzero()
    return int(diff[0, 0]) if len(diff) else n


def _nbytes(cache: Any) -> int:
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total
