"""The small vocabulary every layer shares: where content is checked and what to do about it."""

from __future__ import annotations

from enum import Enum

__all__ = ["Action", "Surface"]


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
