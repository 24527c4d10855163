"""OpenAI content parts: chat ``image_url`` (a data URL or an http URL) and ``file`` (with
``file_data``), and the Responses API's ``input_image`` and ``input_file`` (``file_data`` or
``file_url``). A part that names a file id has no content here: unverifiable."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from guard_plugin.errors import UnverifiableMedia
from guard_plugin.media.formats.base import MediaBlock, Reader
from guard_plugin.media.parts import FailedPart, Part, PartRef
from guard_plugin.media.sources import b64_bytes, data_url_bytes, from_b64, from_url

__all__ = [
    "IMAGE_TYPES",
    "data",
    "read_chat_file",
    "read_file_data",
    "read_file_url",
    "read_image",
    "with_data",
]

IMAGE_TYPES = frozenset({"image_url", "input_image"})


def _by_file_id(ref: PartRef, what: str) -> list[Part]:
    return [
        FailedPart(
            ref, UnverifiableMedia(f"{what} referenced by file id: its content is not available")
        )
    ]


def _inline(
    ref: PartRef, fd: str, m: MediaBlock, r: Reader, claimed: str | None, name: str | None
) -> list[Part]:
    """``file_data``: a data URL, or bare base64."""
    if fd.startswith("data:"):
        return [from_url(ref, fd, m.kind, r.limits)]
    return [from_b64(ref, fd, m.kind, r.limits, claimed, name)]


def read_image(b: Mapping[str, Any], ref: PartRef, r: Reader) -> list[Part]:
    """``image_url`` / ``input_image``: the URL is read (data URLs) or fetched (when allowed)."""
    url = b.get("image_url")
    url = url.get("url") if isinstance(url, Mapping) else url
    if isinstance(url, str):
        return [from_url(ref, url, "image", r.limits)]
    return _by_file_id(ref, "image")


def read_chat_file(
    b: Mapping[str, Any], ref: PartRef, m: MediaBlock, r: Reader
) -> list[Part] | None:
    """The chat API's ``file`` part: ``{"type": "file", "file": {"file_data", "filename"}}``."""
    oai_file = b.get("file")
    if not isinstance(oai_file, Mapping):
        return None
    fd = oai_file.get("file_data")
    if not isinstance(fd, str):
        return _by_file_id(ref, "file")
    name = oai_file.get("filename") or m.filename
    return _inline(ref, fd, m, r, m.claimed or "application/pdf", name)


def read_file_data(
    b: Mapping[str, Any], ref: PartRef, m: MediaBlock, r: Reader
) -> list[Part] | None:
    """The Responses API's ``input_file`` with inline ``file_data``."""
    fd = b.get("file_data")
    return _inline(ref, fd, m, r, m.claimed, m.filename) if isinstance(fd, str) else None


def read_file_url(
    b: Mapping[str, Any], ref: PartRef, m: MediaBlock, r: Reader
) -> list[Part] | None:
    """The Responses API's ``input_file`` with a ``file_url``."""
    url = b.get("file_url")
    return [from_url(ref, url, m.kind, r.limits, m.claimed)] if isinstance(url, str) else None


def data(block: Mapping[str, Any], cap: int) -> bytes | None:
    f = block.get("file")
    fd = f.get("file_data") if isinstance(f, Mapping) else block.get("file_data")
    if not isinstance(fd, str):
        return None
    return data_url_bytes(fd, cap) if fd.startswith("data:") else b64_bytes(fd, cap, "document")


def _encoded(old: Any, raw: bytes) -> str:
    b64 = base64.b64encode(raw).decode("ascii")
    return f"data:application/pdf;base64,{b64}" if str(old).startswith("data:") else b64


def with_data(block: Mapping[str, Any], raw: bytes) -> dict[str, Any] | None:
    f = block.get("file")
    if isinstance(f, Mapping):
        return {**block, "file": {**f, "file_data": _encoded(f.get("file_data", ""), raw)}}
    if "file_data" in block:
        return {**block, "file_data": _encoded(block["file_data"], raw)}
    return None
