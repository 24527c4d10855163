"""Anthropic ``image`` / ``document`` blocks: a ``source`` of type ``base64``, ``url``,
``text`` or ``content`` (nested blocks, withheld as one block if any piece is unsafe)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from guard_plugin.errors import UnverifiableMedia
from guard_plugin.media.formats.base import MediaBlock, Reader
from guard_plugin.media.parts import FailedPart, Part, PartRef, TextPart
from guard_plugin.media.sources import b64_bytes, from_b64, from_url

__all__ = ["data", "read", "with_data"]


def read(b: Mapping[str, Any], ref: PartRef, m: MediaBlock, r: Reader) -> list[Part] | None:
    source = b.get("source")
    if not isinstance(source, Mapping):
        return None
    st = source.get("type")
    claimed = source.get("media_type") or m.claimed
    if st == "base64":
        return [from_b64(ref, source.get("data", ""), m.kind, r.limits, claimed, m.filename)]
    if st == "url" and isinstance(source.get("url"), str):
        return [from_url(ref, source["url"], m.kind, r.limits, claimed)]
    if st == "text":
        return [TextPart(ref, str(source.get("data", "")))]
    if st == "content" and isinstance(source.get("content"), list):
        subs = source["content"]
        n = min(len(subs), max(r.budget.left, 0))
        r.budget.left -= n
        out = [p for sub in subs[:n] for p in r.block(sub, ref)]
        if n < len(subs):
            out.append(r.budget.past_cap(ref, len(subs) - n, "nested blocks"))
        return out
    t = b.get("type")
    return [FailedPart(ref, UnverifiableMedia(f"{t} source of type '{st}' is not available"))]


def data(block: Mapping[str, Any], cap: int) -> bytes | None:
    source = block.get("source")
    if isinstance(source, Mapping) and source.get("type") == "base64":
        return b64_bytes(source["data"], cap, "document")
    return None


def with_data(block: Mapping[str, Any], raw: bytes) -> dict[str, Any] | None:
    if not isinstance(block.get("source"), Mapping):
        return None
    return {**block, "source": {**block["source"], "data": base64.b64encode(raw).decode("ascii")}}
