"""The user turn: find it, and apply its decision."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.lc_messages.base import Outcome, last_index, preview, shown, text_of
from guard_plugin.lc_messages.review import ask
from guard_plugin.types import Action, Surface

__all__ = ["apply_input", "find_input"]


def find_input(messages: Sequence[BaseMessage]) -> tuple[int, HumanMessage] | None:
    """The user turn of this run: the last human message, if nothing answered it yet."""
    i = last_index(messages, HumanMessage)
    if i is None or any(isinstance(m, AIMessage) for m in messages[i + 1 :]):
        return None
    msg = messages[i]
    return (i, msg) if isinstance(msg, HumanMessage) and msg.content else None


def apply_input(msg: HumanMessage, d: Decision, *, guard: Guard, escalate: bool) -> Outcome:
    action, _ = ask(
        d,
        Surface.INPUT,
        [{"name": "user_message", "args": {"text": preview(text_of(msg), shown(d, guard))}}],
        guard,
        escalate,
    )
    if action is Action.ALLOW:
        return Outcome(decisions=[d])
    if action is Action.REWRITE:
        return Outcome([msg.model_copy(update={"content": d.replacement})], decisions=[d])
    messages = guard.messages_of(d)
    return Outcome(
        [
            msg.model_copy(update={"content": messages.redaction}),
            AIMessage(content=messages.refusal),
        ],
        end=True,
        decisions=[d],
    )
