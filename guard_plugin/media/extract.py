"""Message content (and a tool's artifact) into typed parts, in order.

Nothing is dropped: a block that cannot be decoded is a :class:`FailedPart`, and blocks past
the policy's ``media.max_blocks`` (content, artifact entries and nested blocks together) are
one more part whose ref names the run.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from guard_plugin.media.formats import Budget, Reader, read_block
from guard_plugin.media.images import sniff_mime
from guard_plugin.media.parts import Part, PartRef
from guard_plugin.policy import MediaLimits

__all__ = ["extract_parts"]


def extract_parts(
    content: Any, limits: MediaLimits | None = None, *, artifact: Any = None
) -> list[Part]:
    """Typed parts from message content (and, optionally, a tool's artifact), in order."""
    limits = limits or MediaLimits()
    budget = Budget(limits)
    reader = Reader(limits, budget, lambda b, ref: iter(read_block(b, ref, reader)))
    parts: list[Part] = []
    for source, value in (("content", content), ("artifact", artifact)):
        if value is None:
            continue
        if isinstance(value, Mapping) and source == "artifact" and "type" not in value:
            value = _artifact_entries(value)
        if isinstance(value, (list, tuple)):
            parts.extend(_blocks(value, source, reader))
        elif budget.left > 0:
            budget.left -= 1
            parts.extend(
                read_block(value, PartRef(source, None if source == "content" else 0), reader)
            )
        else:
            parts.append(budget.past_cap(PartRef(source), 1, "blocks"))
    return parts


def _blocks(items: Sequence[Any], source: str, reader: Reader) -> Iterator[Part]:
    """Parts of a list of blocks; those past the budget are one part."""
    budget = reader.budget
    n = min(len(items), max(budget.left, 0))
    for i in range(n):
        budget.left -= 1
        yield from read_block(items[i], PartRef(source, i), reader)
    if n < len(items):
        budget.left = 0
        yield budget.past_cap(PartRef(source, n, block_end=len(items)), len(items) - n, "blocks")


_B64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]+")


def _media_string(v: str) -> Any:
    """An artifact string that holds media (a data URL, or base64 of an image or a PDF) as
    the block it is; any other string stays text."""
    if v.startswith("data:"):
        return {"type": "image_url", "image_url": {"url": v}}
    if len(v) >= 64 and _B64_TEXT.fullmatch(v[:4096]):
        try:
            head = base64.b64decode("".join(v[:64].split()), validate=True)
        except (binascii.Error, ValueError):
            return v
        kind = sniff_mime(head)
        if kind == "application/pdf":
            return {"type": "file", "base64": v, "mime_type": kind}
        if kind is not None and kind.startswith("image/"):
            return {"type": "image", "base64": v, "mime_type": kind}
    return v


def _artifact_entries(value: Mapping[Any, Any]) -> list[Any]:
    """A tool's artifact dict of named values, as blocks: lists inside it are flattened,
    nested dicts without a ``type`` are checked as their JSON text, strings holding base64 or
    data-URL media as that media, and numbers, booleans and ``None`` carry nothing to check."""
    out: list[Any] = []
    for v in value.values():
        if isinstance(v, str):
            out.append(_media_string(v))
        elif isinstance(v, (list, tuple)):
            out.extend(_media_string(x) if isinstance(x, str) else x for x in v)
        elif isinstance(v, Mapping) and "type" not in v:
            out.append(json.dumps(v, default=str))
        elif v is not None and not isinstance(v, (int, float, bool)):
            out.append(v)
    return out
