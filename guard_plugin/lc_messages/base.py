"""What the message checks share: the updates a check returns, the text of a message, and
the policy a decision was made under."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

from guard_plugin.decision import Decision
from guard_plugin.media import content_text

__all__ = ["Outcome", "last_index", "preview", "text_of", "tool_call_text"]


@dataclass
class Outcome:
    """Message updates for the state, and whether the turn ends here."""

    messages: list[BaseMessage] = field(default_factory=list)
    end: bool = False
    decisions: list[Decision] = field(default_factory=list)


def text_of(msg: BaseMessage | None) -> str:
    """The text of a message's content (its text blocks, joined)."""
    return "" if msg is None else content_text(msg.content)


def last_index(messages: Sequence[BaseMessage], kind: type) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], kind):
            return i
    return None


def tool_call_text(call: Mapping[str, Any]) -> str:
    args = json.dumps(call.get("args", {}), ensure_ascii=False, sort_keys=True, default=str)
    return f"Calling tool {call.get('name')} with arguments {args}"


def preview(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
