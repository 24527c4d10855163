"""Tool results: those the model has not seen yet, the arguments of their check, and their
decision applied (a rewrite keeps the safe parts in the same block formats)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.lc_messages.base import Outcome, last_index, preview, shown, text_of
from guard_plugin.lc_messages.review import ask
from guard_plugin.lc_messages.run import check_args
from guard_plugin.media import artifact_withheld, rewrite_content
from guard_plugin.types import Action, Surface

__all__ = ["apply_tool_result", "find_tool_results", "tool_check_args"]


def find_tool_results(messages: Sequence[BaseMessage]) -> list[ToolMessage]:
    """Tool results since the last assistant turn (the ones the model has not seen)."""
    i = last_index(messages, AIMessage)
    if i is None:
        return []
    return [m for m in messages[i + 1 :] if isinstance(m, ToolMessage)]


def tool_check_args(
    msg: ToolMessage, tenant: str | None, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The keyword arguments of a tool-result check (``Guard.check_content``)."""
    # a tool's own message has no id until the state gives it one: its call id is stable
    return {
        **check_args(Surface.TOOL, tenant, config, msg.id or msg.tool_call_id),
        "tool_name": msg.name,
        "artifact": msg.artifact,
    }


def apply_tool_result(msg: ToolMessage, d: Decision, *, guard: Guard, escalate: bool) -> Outcome:
    req = [
        {
            "name": f"tool_result:{msg.name or 'tool'}",
            "args": {"content": preview(text_of(msg), shown(d, guard))},
        }
    ]
    action, responded = ask(d, Surface.TOOL, req, guard, escalate, msg.name)
    if action is Action.ALLOW:
        return Outcome(decisions=[d])
    if responded is not None:  # the reviewer answered for the tool
        answer = {"content": responded, "status": "success", "artifact": None}
        return Outcome([msg.model_copy(update=answer)], decisions=[d])
    if action is Action.REWRITE:
        try:
            update: dict[str, Any] = {"content": rewrite_content(msg.content, d)}
        except Exception:  # noqa: BLE001 (the safe parts cannot be rebuilt: withhold the whole result)
            update = {
                "content": d.replacement or guard.messages_of(d).redaction,
                "artifact": None,
            }
        if artifact_withheld(d):
            update["artifact"] = None
        return Outcome([msg.model_copy(update=update)], decisions=[d])
    replacement = d.replacement or guard.messages_of(d).tool_refusal
    return Outcome(
        [msg.model_copy(update={"content": replacement, "status": "error", "artifact": None})],
        decisions=[d],
    )
