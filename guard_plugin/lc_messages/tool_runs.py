"""A tool's run, as the run's stream consumers see it: only once its result is decided.

LangChain hands a tool run's events to every handler of the run as they happen: the tool's
``on_tool_end`` carries its raw output (``astream_events``, a user's callback handler), and a
chat model the tool calls streams its tokens into LangGraph's ``messages`` mode and
``astream_events`` like the agent's own model. All of that is undecided tool output. So a
guarded tool runs *quiet* (:func:`quiet_tool`: its callbacks reduced to tracers, which keep
the operator's record whole), and once the tool boundary has decided the result,
:func:`show_tool_result` replays the run to the other handlers as a tool run of the same name
and arguments whose output is the decided message (the refusal, the rewrite, the review
placeholder, or the result as it was). Consumers see the tool's start and end together,
after the tool finished; nothing the tool or a model inside it produced before the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.messages import BaseMessage
from langchain_core.runnables.config import ensure_config
from langchain_core.tools import BaseTool

from guard_plugin.lc_messages.streaming import keeps_quiet, quiet_config
from guard_plugin.lc_messages.writes import tool_writes

__all__ = ["ashow_tool_result", "quiet_tool", "show_tool_result"]


class _QuietTool(BaseTool):
    """``inner`` run with its callbacks reduced to tracers. It shows ``inner``'s schema and
    function, which a ``ToolNode`` reads to inject state, the call id and the runtime."""

    inner: BaseTool

    def get_input_schema(self, config: Any = None) -> Any:
        return self.inner.get_input_schema(config)

    @property
    def func(self) -> Any:
        return getattr(self.inner, "func", None)

    @property
    def coroutine(self) -> Any:
        return getattr(self.inner, "coroutine", None)

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return self.inner.invoke(input, quiet_config(config), **kwargs)

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return await self.inner.ainvoke(input, quiet_config(config), **kwargs)

    def _run(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - invoke goes to inner
        raise NotImplementedError


class _DecidedRun(BaseTool):
    """A tool run whose output is a decided result: what stream consumers are shown."""

    result: Any

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        return self.result

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        return self.result


def _shown_config(config: Any) -> Any | None:
    """``config`` with only the handlers a quiet run leaves out (stream consumers, a user's
    own handlers); None when there are none."""
    config = ensure_config(config)
    cbs = config.get("callbacks")
    if isinstance(cbs, BaseCallbackManager):
        manager = cbs.copy()
        for h in list(manager.handlers) + list(manager.inheritable_handlers):
            if keeps_quiet(h):
                manager.remove_handler(h)
        return {**config, "callbacks": manager} if manager.handlers else None
    shown = [h for h in (cbs or []) if not keeps_quiet(h)]
    return {**config, "callbacks": shown} if shown else None


def quiet_tool(request: Any) -> Any:
    """``request`` (a ``ToolCallRequest``) with its tool run quiet, or ``request`` itself
    when no handler but tracers would see the run."""
    tool = request.tool
    runtime = getattr(request, "runtime", None)
    if not isinstance(tool, BaseTool) or _shown_config(getattr(runtime, "config", None)) is None:
        return request
    quiet = _QuietTool(name=tool.name, description=tool.description, inner=tool)
    return request.override(tool=quiet)


def _replay(request: Any, result: Any) -> tuple[BaseTool, dict[str, Any], Any] | None:
    config = _shown_config(getattr(getattr(request, "runtime", None), "config", None))
    writes = tool_writes(result, request.tool_call.get("id"))
    own: BaseMessage | None = writes.own if writes is not None else None
    if config is None or own is None:
        return None
    args = request.tool_call.get("args")
    run = _DecidedRun(name=request.tool.name, description=request.tool.description, result=own)
    return run, dict(args) if isinstance(args, Mapping) else {}, config


def show_tool_result(request: Any, result: Any) -> None:
    """Show the decided ``result`` of a run :func:`quiet_tool` made quiet."""
    replay = _replay(request, result)
    if replay is not None:
        run, args, config = replay
        run.invoke(args, config)


async def ashow_tool_result(request: Any, result: Any) -> None:
    replay = _replay(request, result)
    if replay is not None:
        run, args, config = replay
        await run.ainvoke(args, config)
