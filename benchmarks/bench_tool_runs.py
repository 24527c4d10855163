"""What showing a guarded tool's run only once it is decided costs a streamed agent run.

    python -m benchmarks.bench_tool_runs [--n 300]

One ``create_agent`` run streamed in ``stream_mode="messages"`` (fake models, no I/O; the model
calls one tool, then answers), interleaved in one process: no middleware; SafetyMiddleware
with a zero-latency classifier as shipped (the tool runs quietly, and the stream's handlers
see a run of their own, started with the tool and ended with the decided result); and the
same middleware with the tool run left loud (the earlier behaviour, in which the tool's raw
output reached the stream's handlers). The ratio of the last two is the price of the quiet
run and the shown one.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from benchmarks._util import machine
from benchmarks.bench_middleware import ZeroLatency
from guard_plugin import Guard
from guard_plugin.langchain import SafetyMiddleware
from guard_plugin.langchain import middleware as mw_module
from tests.lc_helpers import ScriptedChatModel, tool_call


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"result for {q}: the office opens at 9."


def agent(middleware: list[Any]) -> Any:
    model = ScriptedChatModel(
        responses=[tool_call("lookup", {"q": "hours"}, "c1"), AIMessage("The office opens at 9.")]
    )
    return create_agent(model, tools=[lookup], middleware=middleware)


class _LoudLc:
    """``lc_messages`` as the middleware sees it, with the tool run left loud."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        if name == "quiet_tool":
            return lambda request: request
        return getattr(self._real, name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    guard = Guard(ZeroLatency(), audit=[])
    agents = {
        "no middleware": agent([]),
        "SafetyMiddleware, quiet tool run + shown run": agent([SafetyMiddleware(guard)]),
        "SafetyMiddleware, tool run shown as it runs": agent([SafetyMiddleware(guard)]),
    }
    loud = "SafetyMiddleware, tool run shown as it runs"
    real_lc = mw_module.lc
    inp = {"messages": [HumanMessage("When does the office open?")]}

    def run(name: str) -> float:
        mw_module.lc = _LoudLc(real_lc) if name == loud else real_lc  # type: ignore[assignment]
        try:
            t0 = time.perf_counter()
            for _ in agents[name].stream(inp, stream_mode="messages"):
                pass
            return (time.perf_counter() - t0) * 1000
        finally:
            mw_module.lc = real_lc

    for name in agents:  # warm-up
        for _ in range(20):
            run(name)
    times: dict[str, list[float]] = {k: [] for k in agents}
    gc.collect()
    gc.disable()
    try:
        for i in range(args.n):
            for name in agents:
                times[name].append(run(name))
            if i % 50 == 49:
                gc.collect()
    finally:
        gc.enable()
    print(f"{machine()}; {args.n} streamed runs each, interleaved")
    base = statistics.median(times[loud])
    for name, ms in times.items():
        med = statistics.median(ms)
        print(f"  {name:46s} median {med:7.3f} ms   {med / base:5.2f}x the loud tool run")


if __name__ == "__main__":
    main()
