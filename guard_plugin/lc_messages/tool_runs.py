"""A tool's run, as the run's stream consumers see it: started live, ended with the decided
result.

LangChain hands a tool run's events to every handler of the run as they happen: the tool's
``on_tool_end`` carries its raw output (``astream_events``, a user's callback handler), and a
chat model the tool calls streams its tokens into LangGraph's ``messages`` mode and
``astream_events`` like the agent's own model. All of that is undecided tool output. So a
guarded tool runs *quiet* (:func:`quiet_tool`: its callbacks reduced to tracers, which keep
the operator's record of the real run whole), while a run of the same name, arguments and
place in the run tree is shown to the other handlers: it starts when the tool starts (its
arguments were decided with the model's answer) and :func:`finish_tool_run` ends it with the
decided message (the result as it was, the refusal, the rewrite, the review placeholder), or
with the error that ended the call. A run with no handler but tracers is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManager, BaseCallbackManager, CallbackManager
from langchain_core.tools import BaseTool

from guard_plugin.lc_messages.streaming import handlers_only, keeps_quiet, quiet_config
from guard_plugin.lc_messages.writes import tool_writes

__all__ = ["afinish_tool_run", "finish_tool_run", "quiet_tool"]


def _shown_config(config: Any) -> Any | None:
    """``config`` with only the handlers a quiet run leaves out (stream consumers, a user's
    own handlers); None when there are none."""
    shown = handlers_only(config, lambda h: not keeps_quiet(h))
    cbs = shown["callbacks"]
    handlers = cbs.handlers if isinstance(cbs, BaseCallbackManager) else cbs
    return shown if handlers else None


class _QuietTool(BaseTool):
    """``inner`` run with its callbacks reduced to tracers, and a run of its name and
    ``shown_args`` started for the other handlers (``started``, ended by
    :func:`finish_tool_run`). It shows ``inner``'s schema and function, which a ``ToolNode``
    reads to inject state, the call id and the runtime."""

    inner: BaseTool
    shown_args: dict[str, Any]
    started: Any = None

    def get_input_schema(self, config: Any = None) -> Any:
        return self.inner.get_input_schema(config)

    @property
    def func(self) -> Any:
        return getattr(self.inner, "func", None)

    @property
    def coroutine(self) -> Any:
        return getattr(self.inner, "coroutine", None)

    def _start_args(self, shown: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        configure = (
            shown.get("callbacks"),
            None,
            False,
            shown.get("tags"),
            self.inner.tags,
            shown.get("metadata"),
            self.inner.metadata,
        )
        start = {
            "serialized": {"name": self.inner.name, "description": self.inner.description},
            "input_str": str(self.shown_args),
            "name": self.inner.name,
            "inputs": self.shown_args,
        }
        return list(configure), start

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        shown = _shown_config(config)
        if shown is not None:
            configure, start = self._start_args(shown)
            self.started = CallbackManager.configure(*configure).on_tool_start(**start)
        return self.inner.invoke(input, quiet_config(config), **kwargs)

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        shown = _shown_config(config)
        if shown is not None:
            configure, start = self._start_args(shown)
            manager = AsyncCallbackManager.configure(*configure)
            self.started = await manager.on_tool_start(**start)
        return await self.inner.ainvoke(input, quiet_config(config), **kwargs)

    def _run(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - invoke goes to inner
        raise NotImplementedError


def quiet_tool(request: Any) -> Any:
    """``request`` (a ``ToolCallRequest``) with its tool run quiet, or ``request`` itself
    when no handler but tracers would see the run."""
    tool = request.tool
    runtime = getattr(request, "runtime", None)
    if not isinstance(tool, BaseTool) or _shown_config(getattr(runtime, "config", None)) is None:
        return request
    args = request.tool_call.get("args")
    quiet = _QuietTool(
        name=tool.name,
        description=tool.description,
        inner=tool,
        shown_args=dict(args) if isinstance(args, Mapping) else {},
    )
    return request.override(tool=quiet)


def _shown_end(run: Any, result: Any) -> tuple[Any, Any] | None:
    """The shown run of a quiet request, and what it ends with (the decided message)."""
    tool = getattr(run, "tool", None)
    if not isinstance(tool, _QuietTool) or tool.started is None:
        return None
    started, tool.started = tool.started, None
    writes = tool_writes(result, run.tool_call.get("id"))
    own = writes.own if writes is not None else None
    return started, own if own is not None else result


def finish_tool_run(run: Any, result: Any = None, error: BaseException | None = None) -> None:
    """End the shown run of ``run`` (what :func:`quiet_tool` returned) with the decided
    ``result``, or with ``error``."""
    found = _shown_end(run, result)
    if found is None:
        return
    started, output = found
    if error is not None:
        started.on_tool_error(error)
    else:
        started.on_tool_end(output)


async def afinish_tool_run(
    run: Any, result: Any = None, error: BaseException | None = None
) -> None:
    found = _shown_end(run, result)
    if found is None:
        return
    started, output = found
    if error is not None:
        await started.on_tool_error(error)
    else:
        await started.on_tool_end(output)
