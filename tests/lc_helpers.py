"""Fakes for tests inside the real LangChain / LangGraph: models that script replies and
record what they were sent, and a checker for valid histories."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from guard_plugin.testing.langchain import ScriptedChatModel, tool_call

__all__ = ["ScriptedChatModel", "assert_valid_history", "collect", "tool_call"]


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


def collect(agent: Any, inp: Any, config: dict, mode: str) -> tuple[list[Any], dict]:
    """Every stream event of a run in every stream mode (sync or async), and the thread's
    final state."""
    modes = ["values", "updates", "messages", "custom"]
    if mode == "sync":
        events = list(agent.stream(inp, config, stream_mode=modes))
    else:

        async def run() -> list[Any]:
            return [e async for e in agent.astream(inp, config, stream_mode=modes)]

        events = asyncio.run(run())
    state = (
        agent.get_state(config).values if config.get("configurable", {}).get("thread_id") else {}
    )
    return events, state
