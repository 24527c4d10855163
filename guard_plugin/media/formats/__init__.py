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
from guard_plugin.media.formats.calls import call_text, read_call
from guard_plugin.media.parts import FailedPart, Part, PartRef, TextPart
from guard_plugin.media.sources import part_from_bytes, read_file

__all__ = [
    "CLIENT_TOOL_TYPES",
    "MEDIA_BLOCK_TYPES",
    "Budget",
    "Reader",
    "call_text",
    "document_bytes",
    "other_block_text",
    "read_block",
    "read_call",
    "with_document",
]

_MEDIA_TYPES = frozenset({"image", "file", "document", "input_file", "text-plain"})
_UNCHECKED_MEDIA = frozenset({"audio", "video"})
# tool calls are checked by the adapters as their own surface
_SKIPPED_TYPES = frozenset(
    {"tool_call", "tool_use", "tool_call_chunk", "invalid_tool_call", "server_tool_call"}
)

#: what a block type says its data is, where its block need not say
_CLAIMED = {"text-plain": "text/plain"}

#: every block type that carries media (what an assistant turn's response check, which reads
#: text only, cannot classify): the types above, and audio input and generated images
MEDIA_BLOCK_TYPES = (
    _MEDIA_TYPES
    | _UNCHECKED_MEDIA
    | openai.IMAGE_TYPES
    | frozenset({"input_audio", "image_generation_call"})
)

#: the blocks of a tool call the application runs (read from the message's ``tool_calls`` and
#: ``invalid_tool_calls``, not from its content)
CLIENT_TOOL_TYPES = frozenset({"tool_call", "tool_use", "tool_call_chunk", "invalid_tool_call"})

#: fields that hold nothing a reader is shown: ids, opaque signatures, encrypted payloads,
#: and the text of a text block (read as the text)
_OPAQUE_FIELDS = frozenset(
    {
        "type",
        "id",
        "index",
        "signature",
        "status",
        "format",
        "encrypted_content",
        "encrypted_index",
        "tool_use_id",
        "tool_call_id",
        "call_id",
        "cache_control",
    }
)


def other_block_text(block: Mapping[str, Any]) -> tuple[str, bool]:
    """What an assistant-turn block holds beyond its text, reasoning and tool calls: the
    strings in its other fields, nested blocks included (a provider's server tool call or
    result, a web search's titles, an MCP result, a refusal, a text block's citations, a block
    LangChain keeps as ``non_standard``), and whether it nests media that text cannot stand
    for. A server tool call reads as a tool call does (name and arguments)."""
    t = block.get("type")
    if t in text.REASONING_TYPES or t in CLIENT_TOOL_TYPES:
        return "", False
    if t in MEDIA_BLOCK_TYPES:
        return "", True
    name, args = block.get("name"), block.get("args", block.get("input"))
    if isinstance(name, str) and isinstance(args, Mapping):
        return call_text(name, args), False
    strings: list[str] = []
    media = _strings(block, strings, top=True)
    return "\n".join(s for s in strings if s.strip()), media


def _strings(value: Any, out: list[str], top: bool = False) -> bool:
    """Append the strings of ``value`` to ``out``; True where it nests a media block."""
    if isinstance(value, str):
        out.append(value)
        return False
    if isinstance(value, (list, tuple)):
        return any([_strings(v, out) for v in value])
    if not isinstance(value, Mapping):
        return False
    if not top and value.get("type") in MEDIA_BLOCK_TYPES:
        return True
    skip = _OPAQUE_FIELDS | ({"text"} if top else set())
    return any([_strings(v, out) for k, v in value.items() if k not in skip])


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
    if t == "text-plain" and isinstance(b.get("text"), str):  # LangChain's plain text document
        return [TextPart(ref, b["text"])]
    if t in _MEDIA_TYPES:
        m = MediaBlock(
            kind="image" if t == "image" else "file",
            claimed=b.get("mime_type") or b.get("media_type") or _CLAIMED.get(t),
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
