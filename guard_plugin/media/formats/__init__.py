"""One reader (and, for documents, writer) per content-block format.

:func:`read_block` turns one block (a string, bytes, a path or a dict in any supported
format) into parts; :func:`document_bytes` and :func:`with_document` let a rewrite take a
document's bytes out of a block and put new ones back in the same format.

- :mod:`.text`: text and reasoning blocks, and any block with a ``text`` string;
- :mod:`.langchain`: LangChain standard blocks (``base64``, ``url``, ``path``) and the older
  ``source_type`` form;
- :mod:`.openai`: chat ``image_url`` / ``file``, Responses ``input_image`` / ``input_file``;
- :mod:`.anthropic`: ``image`` / ``document`` blocks with a ``source``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from guard_plugin.errors import GuardError, MediaError, UnverifiableMedia
from guard_plugin.media.formats import anthropic, langchain, openai, text
from guard_plugin.media.formats.base import Budget, MediaBlock, Reader
from guard_plugin.media.parts import FailedPart, Part, PartRef
from guard_plugin.media.sources import part_from_bytes, read_file

__all__ = [
    "MEDIA_BLOCK_TYPES",
    "Budget",
    "Reader",
    "document_bytes",
    "read_block",
    "with_document",
]

_MEDIA_TYPES = frozenset({"image", "file", "document", "input_file"})
_UNCHECKED_MEDIA = frozenset({"audio", "video"})
# tool calls are checked by the adapters as their own surface
_SKIPPED_TYPES = frozenset(
    {"tool_call", "tool_use", "tool_call_chunk", "invalid_tool_call", "server_tool_call"}
)

#: every block type that carries media (what an assistant turn's response check, which reads
#: text only, cannot classify): the types above, and audio input and generated images
MEDIA_BLOCK_TYPES = (
    _MEDIA_TYPES
    | _UNCHECKED_MEDIA
    | openai.IMAGE_TYPES
    | frozenset({"input_audio", "image_generation_call"})
)

MediaReader = Callable[[Mapping[str, Any], PartRef, MediaBlock, Reader], "list[Part] | None"]
# Tried in order on an image / file / document block; the first that recognises it reads it.
_MEDIA_READERS: tuple[MediaReader, ...] = (
    anthropic.read,
    openai.read_chat_file,
    langchain.read_inline,
    openai.read_file_data,
    langchain.read_url,
    openai.read_file_url,
    langchain.read_path,
)


def read_block(b: Any, ref: PartRef, r: Reader) -> list[Part]:
    """The parts of one block; a block that cannot be read is a :class:`FailedPart`."""
    if isinstance(b, str):
        return text.read_any_text({"text": b}, ref) or []
    if isinstance(b, (bytes, bytearray, memoryview)):
        return [part_from_bytes(ref, bytes(b), None)]
    if isinstance(b, PathLike):
        try:
            raw = read_file(b, r.limits, r.limits.max_document_bytes)
        except GuardError as err:
            return [FailedPart(ref, err)]
        return [part_from_bytes(ref, raw, None, Path(b).name)]
    if not isinstance(b, Mapping):
        return [FailedPart(ref, MediaError(f"cannot check content of type {type(b).__name__}"))]
    return _read_dict(b, ref, r)


def _read_dict(b: Mapping[str, Any], ref: PartRef, r: Reader) -> list[Part]:
    t = b.get("type")
    found = text.read(b, ref)
    if found is not None:
        return found
    if t in _SKIPPED_TYPES:
        return []
    if t in openai.IMAGE_TYPES:
        return openai.read_image(b, ref, r)
    if t in _UNCHECKED_MEDIA:
        return [FailedPart(ref, UnverifiableMedia(f"{t} content is not checked"))]
    if t in _MEDIA_TYPES:
        m = MediaBlock(
            kind="image" if t == "image" else "file",
            claimed=b.get("mime_type") or b.get("media_type"),
            filename=b.get("filename") or (b.get("extras") or {}).get("filename"),
        )
        for reader in _MEDIA_READERS:
            parts = reader(b, ref, m, r)
            if parts is not None:
                return parts
        return [
            FailedPart(
                ref, UnverifiableMedia(f"{t} block without inline data (file id or unknown source)")
            )
        ]
    return text.read_any_text(b, ref) or [
        FailedPart(ref, UnverifiableMedia(f"content block of type '{t}' cannot be checked"))
    ]


_WRITERS = (anthropic, langchain, openai)


def document_bytes(block: Mapping[str, Any]) -> bytes | None:
    """The raw bytes of a document block, whatever its format (``None`` when unreadable)."""
    cap = 1 << 40
    for fmt in _WRITERS:
        try:
            raw = fmt.data(block, cap)
        except Exception:  # noqa: BLE001 (unreadable: the rewrite withholds the whole block)
            return None
        if raw is not None:
            return raw
    return None


def with_document(block: Mapping[str, Any], raw: bytes) -> dict[str, Any]:
    """The same block, same format, carrying new document bytes."""
    for fmt in _WRITERS:
        new = fmt.with_data(block, raw)
        if new is not None:
            return new
    return dict(block)
