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
        text = b.get("reasoning") or b.get("thinking") or b.get("text") or ""
        return [TextPart(ref, str(text))] if text else []
    return None


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
