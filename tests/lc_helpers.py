"""Fakes for tests inside the real LangChain / LangGraph: models that script replies and
record what they were sent, and a checker for valid histories."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from guard_plugin.testing.langchain import ScriptedChatModel, tool_call

__all__ = ["ScriptedChatModel", "assert_valid_history", "tool_call"]


def assert_valid_history(messages: list[BaseMessage]) -> None:
    """Every tool call answered exactly once, no answer without a call, ids unique."""
    ids = [m.id for m in messages if m.id]
    assert len(ids) == len(set(ids)), "duplicate message ids"
    pending: dict[str, str] = {}
    for m in messages:
        if isinstance(m, AIMessage):
            assert not pending, f"unanswered tool calls before a new AI turn: {pending}"
            pending = {c["id"]: c["name"] for c in m.tool_calls}
        elif isinstance(m, ToolMessage):
            assert m.tool_call_id in pending, f"tool message without a call: {m.tool_call_id}"
            pending.pop(m.tool_call_id)
    assert not pending, f"dangling tool calls: {pending}"
