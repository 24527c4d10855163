"""LangChain standard blocks: ``{"type": "image" | "file", "base64" | "url" | "path",
"mime_type"}``, and the older ``{"source_type": "base64" | "text" | "url", "data"}`` form.
Local paths are read only where the policy allows local files."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guard_plugin.errors import GuardError
from guard_plugin.media.formats.base import MediaBlock, Reader
from guard_plugin.media.parts import FailedPart, Part, PartRef, TextPart
from guard_plugin.media.sources import (
    b64_bytes,
    cap_for,
    data_url_bytes,
    from_b64,
    from_url,
    part_from_bytes,
    read_file,
)

__all__ = ["data", "read_inline", "read_path", "read_url", "with_data"]


def read_inline(b: Mapping[str, Any], ref: PartRef, m: MediaBlock, r: Reader) -> list[Part] | None:
    """Data carried in the block: ``base64``, or the older ``source_type`` forms."""
    if "base64" in b:
        return [from_b64(ref, b["base64"], m.kind, r.limits, m.claimed, m.filename)]
    if b.get("source_type") == "base64" and "data" in b:
        return [from_b64(ref, b["data"], m.kind, r.limits, m.claimed, m.filename)]
    if b.get("source_type") == "text" and "text" in b:
        return [TextPart(ref, str(b["text"]))]
    return None


def read_url(b: Mapping[str, Any], ref: PartRef, m: MediaBlock, r: Reader) -> list[Part] | None:
    url = b.get("url")
    return [from_url(ref, url, m.kind, r.limits, m.claimed)] if isinstance(url, str) else None


def read_path(b: Mapping[str, Any], ref: PartRef, m: MediaBlock, r: Reader) -> list[Part] | None:
    p = b.get("path") or b.get("file_path")
    if not isinstance(p, str):
        return None
    try:
        raw = read_file(p, r.limits, cap_for(m.kind, r.limits))
    except GuardError as err:
        return [FailedPart(ref, err)]
    return [part_from_bytes(ref, raw, m.claimed, Path(p).name)]


def data(block: Mapping[str, Any], cap: int) -> bytes | None:
    for key in ("base64", "data"):
        v = block.get(key)
        if isinstance(v, str):
            return (
                data_url_bytes(v, cap) if v.startswith("data:") else b64_bytes(v, cap, "document")
            )
    return None


def with_data(block: Mapping[str, Any], raw: bytes) -> dict[str, Any] | None:
    b64 = base64.b64encode(raw).decode("ascii")
    for key in ("base64", "data"):
        if key in block:
            old = block[key]
            new = f"data:application/pdf;base64,{b64}" if str(old).startswith("data:") else b64
            return {**block, key: new}
    return None
