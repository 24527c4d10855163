"""The small vocabulary every layer shares: where content is checked, which part of it a
result is about, and what to do about it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal

__all__ = ["Action", "PartRef", "Status", "Surface"]

#: A part's or a decision's outcome. ``error`` never reads as safe; ``empty``: nothing to check.
Status = Literal["safe", "unsafe", "error", "empty"]


class Surface(str, Enum):
    """Where content is checked."""

    INPUT = "input"  #: a user turn on its way to the model
    TOOL = "tool"  #: a tool result on its way into the model's context
    RESPONSE = "response"  #: an assistant turn, including the tool calls it asks for

    def __str__(self) -> str:
        return self.value


class Action(str, Enum):
    """What a decision asks the adapter to do. Ordered from mildest to strictest."""

    ALLOW = "allow"
    REWRITE = "rewrite"
    ESCALATE = "escalate"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    def __str__(self) -> str:
        return self.value


_SEVERITY = {Action.ALLOW: 0, Action.REWRITE: 1, Action.ESCALATE: 2, Action.BLOCK: 3}


def strictest(*actions: Action) -> Action:
    """The strictest of the given actions (``allow`` for none)."""
    return max(actions, key=lambda a: a.severity, default=Action.ALLOW)


_REF = re.compile(
    r"(content|artifact)(?:\[(\d+)(?::(\d+))?\])?(?:\.page\[(\d+)(?::(\d+))?\])?"
    r"(?:\.chars\[(\d+):(\d+)\])?$"
)
_TOOL_CALL = "tool_call:"


@dataclass(frozen=True)
class PartRef:
    """Which part of the checked content a model input, a failure or an outcome is about.

    ``source`` is ``content`` or ``artifact`` (a tool's artifact) for message content, with
    the block index in list content (``None`` for a plain string), for documents the page,
    and for a window of long text its character span ``(start, end)`` in that text.
    ``block_end`` / ``page_end`` (exclusive) make a ref stand for a run of blocks or pages:
    everything past a policy cap is one part, however much a message claims to hold.
    ``source="tool_call"`` with ``call_id`` is one tool call of an assistant turn; ``text``
    the turn's text; any other source is a caller's own name for an input built by hand.

    :attr:`label` is the ref as people (and JSON) read it: ``content[2].page[3]``,
    ``content.chars[0:6000]``, ``tool_call:call_1``; :meth:`parse` reads it back.
    """

    source: str = "content"
    block: int | None = None
    page: int | None = None
    span: tuple[int, int] | None = None
    block_end: int | None = None
    page_end: int | None = None
    call_id: str | None = None

    @classmethod
    def tool_call(cls, call_id: str | None) -> PartRef:
        """One tool call of an assistant turn."""
        return cls("tool_call", call_id=str(call_id))

    @property
    def is_message_content(self) -> bool:
        """Whether the ref points into message content or an artifact (what a rewrite edits)."""
        return self.source in ("content", "artifact")

    @property
    def label(self) -> str:
        if self.source == "tool_call":
            return f"{_TOOL_CALL}{self.call_id}"
        out = self.source
        if self.block is not None:
            out += f"[{self.block}{'' if self.block_end is None else f':{self.block_end}'}]"
        if self.page is not None:
            out += f".page[{self.page}{'' if self.page_end is None else f':{self.page_end}'}]"
        if self.span is not None:
            out += f".chars[{self.span[0]}:{self.span[1]}]"
        return out

    @property
    def blocks(self) -> range:
        """The block indices this ref covers (empty when it names no block)."""
        if self.block is None:
            return range(0)
        return range(self.block, self.block + 1 if self.block_end is None else self.block_end)

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, label: str) -> PartRef:
        """The ref a :attr:`label` was written from; a label of no known shape is a ref
        with that source (a caller's own name)."""
        if label.startswith(_TOOL_CALL):
            return cls.tool_call(label[len(_TOOL_CALL) :])
        m = _REF.match(label)
        if m is None:
            return cls(label)
        src, block, block_end, page, page_end, start, end = m.groups()

        def num(v: str | None) -> int | None:
            return None if v is None else int(v)

        span = (int(start), int(end)) if start is not None else None
        return cls(src, num(block), num(page), span, num(block_end), num(page_end))


#: the text of an assistant turn, or an input built by hand without a name
TEXT = PartRef("text")
#: the reasoning an assistant turn carries beside its text (reasoning or thinking blocks, a
#: provider's ``reasoning_content``)
REASONING = PartRef("reasoning")
