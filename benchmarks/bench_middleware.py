"""Agent overhead of SafetyMiddleware vs LangChain's PIIMiddleware, on all three surfaces.

    python -m benchmarks.bench_middleware [--n 300] [--shapes] [--async [--langsmith-inline]]

One ``create_agent`` run = the model calls one tool, then answers (fake models, no I/O);
each variant is compiled once and invoked repeatedly.
Measured interleaved in one process: no middleware, PIIMiddleware (email detector, input +
output + tool results), and SafetyMiddleware with a zero-latency classifier (input + output +
tool results). The target: SafetyMiddleware adds no more than PIIMiddleware.
``--shapes`` adds middleware with empty hooks, to show what each hook shape costs by itself:
``before_model`` + ``after_model`` nodes (PIIMiddleware's shape) vs one ``wrap_model_call``
layer (SafetyMiddleware's). ``--async`` times ``ainvoke`` instead of ``invoke``.

In async runs ``create_agent`` wraps every wrap-style hook in a LangSmith ``traceable`` span
whose setup and teardown each go through a worker thread, tracing on or off.
``--langsmith-inline`` installs LangSmith's documented runtime override that runs them
inline instead (a process-wide setting an application may choose; this library never sets it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Sequence

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, PIIMiddleware, hook_config
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from benchmarks._util import machine
from guard_plugin import Guard
from guard_plugin.classifiers import ClassifierOutput
from guard_plugin.classifiers.base import BaseClassifier
from guard_plugin.langchain import SafetyMiddleware
from guard_plugin.prompting import ModelRequest
from tests.lc_helpers import ScriptedChatModel


class ZeroLatency(BaseClassifier):
    """A safe verdict at once, sync and async (the real backends are async-native too)."""

    name = "zero-latency"

    def classify(self, requests: Sequence[ModelRequest], *, timeout: float | None = None):
        return [ClassifierOutput("User Safety: safe\nResponse Safety: safe") for _ in requests]

    async def aclassify(self, requests: Sequence[ModelRequest], *, timeout: float | None = None):
        return self.classify(requests)


class EmptyNodes(AgentMiddleware):  # type: ignore[type-arg]
    """PIIMiddleware's shape: a node before and after each model call, both able to jump."""

    @hook_config(can_jump_to=["end"])
    def before_model(self, state, runtime):
        return None

    @hook_config(can_jump_to=["end"])
    def after_model(self, state, runtime):
        return None

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state, runtime):
        return None

    @hook_config(can_jump_to=["end"])
    async def aafter_model(self, state, runtime):
        return None


class EmptyWrap(AgentMiddleware):  # type: ignore[type-arg]
    """SafetyMiddleware's shape: one layer around the model call."""

    def wrap_model_call(self, request, handler):
        return handler(request)

    async def awrap_model_call(self, request, handler):
        return await handler(request)


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"result for {q}: the office opens at 9."


def agent(middleware):
    """One compiled agent per variant; the scripted model cycles through its two replies."""
    model = ScriptedChatModel(
        responses=[
            AIMessage(
                "",
                tool_calls=[
                    {"name": "lookup", "args": {"q": "hours"}, "id": "c1", "type": "tool_call"}
                ],
            ),
            AIMessage("The office opens at 9."),
        ]
    )
    return create_agent(model, tools=[lookup], middleware=middleware)


def _measure(agents, inp, n: int, times: dict[str, list[float]]) -> None:
    for a in agents.values():  # warm-up
        for _ in range(20):
            a.invoke(inp)
    gc.collect()
    gc.disable()  # collection pauses would land at random in the timed calls
    try:
        for i in range(n):
            for k, a in agents.items():
                t0 = time.perf_counter()
                a.invoke(inp)
                times[k].append((time.perf_counter() - t0) * 1000)
            if i % 50 == 49:
                gc.collect()
    finally:
        gc.enable()


async def _measure_async(agents, inp, n: int, times: dict[str, list[float]]) -> None:
    for a in agents.values():
        for _ in range(20):
            await a.ainvoke(inp)
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            for k, a in agents.items():
                t0 = time.perf_counter()
                await a.ainvoke(inp)
                times[k].append((time.perf_counter() - t0) * 1000)
            if i % 50 == 49:
                gc.collect()
    finally:
        gc.enable()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--shapes", action="store_true", help="also time empty hook shapes")
    ap.add_argument("--async", dest="use_async", action="store_true", help="time ainvoke")
    ap.add_argument(
        "--langsmith-inline",
        action="store_true",
        help="run LangSmith's span setup inline instead of in a worker thread",
    )
    args = ap.parse_args()
    if args.langsmith_inline:
        import langsmith

        async def inline(default, ctx, func, /, *a, **kw):
            return ctx.run(func, *a, **kw)

        langsmith.set_runtime_overrides(aio_to_thread=inline)
    guard = Guard(ZeroLatency(), audit=[], cache_size=0)
    agents = {
        "none": agent([]),
        "PIIMiddleware": agent(
            [
                PIIMiddleware(
                    "email", apply_to_input=True, apply_to_output=True, apply_to_tool_results=True
                )
            ]
        ),
        "SafetyMiddleware": agent([SafetyMiddleware(guard)]),
    }
    if args.shapes:
        agents["empty nodes"] = agent([EmptyNodes()])
        agents["empty wrap"] = agent([EmptyWrap()])
    inp = {"messages": [HumanMessage("When does the office open? Reply to me at a@b.example")]}
    times: dict[str, list[float]] = {k: [] for k in agents}
    if args.use_async:
        asyncio.run(_measure_async(agents, inp, args.n, times))
    else:
        _measure(agents, inp, args.n, times)
    base = statistics.median(times["none"])
    how = "ainvoke" if args.use_async else "invoke"
    if args.langsmith_inline:
        how += " (LangSmith span setup inline)"
    print(
        f"machine: {machine()}; {how}, {args.n} runs each, interleaved, "
        "GC outside the timed calls; medians"
    )
    for k, v in times.items():
        m = statistics.median(v)
        print(f"{k:18} {m:7.3f} ms   added {m - base:+7.3f} ms")
    pii = statistics.median(times["PIIMiddleware"]) - base
    ours = statistics.median(times["SafetyMiddleware"]) - base
    print(f"SafetyMiddleware added / PIIMiddleware added: {ours / pii:.2f} (target <= 1.00)")


if __name__ == "__main__":
    main()
