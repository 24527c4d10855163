"""Text blocks: LangChain / OpenAI ``text``, the Responses API's ``input_text`` /
``output_text``, reasoning blocks, and any block with a ``text`` string."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from guard_plugin.media.parts import Part, PartRef, TextPart

__all__ = [
    "REASONING_TYPES",
    "TEXT_TYPES",
    "content_text",
    "read",
    "read_any_text",
    "reasoning_text",
    "text_of",
    "with_text",
]

TEXT_TYPES = frozenset({"text", "input_text", "output_text"})
REASONING_TYPES = frozenset({"reasoning", "thinking"})


def read(b: Mapping[str, Any], ref: PartRef) -> list[Part] | None:
    t = b.get("type")
    if t in TEXT_TYPES:
        text = b.get("text")
        return [TextPart(ref, text if isinstance(text, str) else json.dumps(text, default=str))]
    if t in REASONING_TYPES:
        text = reasoning_text(b)
        return [TextPart(ref, text)] if text else []
    return None


#: fields of a reasoning block that hold its text, in the order they are read
_REASONING_FIELDS = ("reasoning", "thinking", "text", "summary")
#: fields that hold no reasoning (an opaque signature, ids)
_NOT_REASONING = frozenset({"type", "id", "index", "signature", "format", "status"})


def reasoning_text(value: Any) -> str:
    """The text of a reasoning value: a string; a block's ``reasoning`` / ``thinking`` /
    ``text`` / ``summary`` (a list of parts); a list of them. A block with none of those
    fields gives the strings of its other fields (an unknown provider's shape is read, not
    skipped)."""
    return "\n".join(t for t in _reasoning_strings(value) if t.strip())


def _reasoning_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _reasoning_strings(v)]
    if not isinstance(value, Mapping):
        return []
    known = [k for k in _REASONING_FIELDS if k in value]
    keys = known or [k for k in value if k not in _NOT_REASONING]
    return [t for k in keys for t in _reasoning_strings(value[k])]


def read_any_text(b: Mapping[str, Any], ref: PartRef) -> list[Part] | None:
    """A block of another type that still carries text."""
    return [TextPart(ref, b["text"])] if isinstance(b.get("text"), str) else None


def text_of(block: Any) -> str | None:
    """The text a block (or a plain string) holds, for a rewrite."""
    if isinstance(block, str):
        return block
    text = block.get("text") if isinstance(block, Mapping) else None
    return text if isinstance(text, str) else None


def with_text(block: Any, text: str) -> Any:
    """The same block (same format) holding ``text``; a string stays a string."""
    if isinstance(block, str):
        return text
    if isinstance(block, Mapping) and isinstance(block.get("text"), str):
        return {**block, "text": text}
    return {"type": "text", "text": text}


def content_text(content: Any) -> str:
    """The text of message content in any format: a string as it is, the text of a list's
    strings and text-carrying blocks joined by newlines (media contributes nothing)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        texts = [text_of(b) for b in content]
        return "\n".join(t for t in texts if t)
    return str(content)
