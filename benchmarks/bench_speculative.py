"""An agent turn with speculative input checks against one without, and against no guard:
``create_agent`` with a chat model double that takes 200 ms and a classifier double that
takes 50 ms a check, sync, in one run.

    python -m benchmarks.bench_speculative [--turns 10]

A guarded turn is an input check, the model call and a response check. Checked in series it
costs 50 + 200 + 50 ms; with the input check beside the model call, max(50, 200) + 50 ms. The
same turns with the response check off (``apply_to_output=False``) show what speculation
itself removes: 50 + 200 ms against max(50, 200) ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage

from benchmarks._util import machine
from guard_plugin import Guard, Policy, PolicyStore
from guard_plugin.langchain import SafetyMiddleware
from guard_plugin.testing import ScriptedClassifier
from guard_plugin.testing.langchain import ScriptedChatModel


class SlowModel(ScriptedChatModel):
    """A chat model double that takes 200 ms to answer."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.2)
        return super()._generate(messages, stop, run_manager, **kwargs)


def turn_ms(middleware: list[Any], turns: int) -> float:
    out = []
    for i in range(turns):
        model = SlowModel(responses=[AIMessage("Paris is the capital of France.")])
        agent = create_agent(model, tools=[], middleware=middleware)
        t0 = time.perf_counter()
        agent.invoke(
            {"messages": [HumanMessage(f"what is the capital of France? ({i})")]},
            {"configurable": {"tenant_id": "t"}},
        )
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=10)
    args = ap.parse_args()

    def guard(speculative: bool) -> Guard:
        store = PolicyStore({"t": Policy(id="t", speculative=speculative)})
        return Guard(ScriptedClassifier(delay=0.05), policies=store, audit=[], cache_size=0)

    print(machine())
    bare = turn_ms([], args.turns)
    serial = turn_ms([SafetyMiddleware(guard(False))], args.turns)
    spec = turn_ms([SafetyMiddleware(guard(True))], args.turns)
    print(f"unguarded turn           : {bare:7.1f} ms")
    print(f"guarded, in series       : {serial:7.1f} ms  ({serial / bare:.2f}x unguarded)")
    print(f"guarded, speculative     : {spec:7.1f} ms  ({spec / bare:.2f}x unguarded)")
    in_serial = turn_ms([SafetyMiddleware(guard(False), apply_to_output=False)], args.turns)
    in_spec = turn_ms([SafetyMiddleware(guard(True), apply_to_output=False)], args.turns)
    print(f"input only, in series    : {in_serial:7.1f} ms  ({in_serial / bare:.2f}x unguarded)")
    print(f"input only, speculative  : {in_spec:7.1f} ms  ({in_spec / bare:.2f}x unguarded)")
    g_serial = graph_turn_ms(guard(False), args.turns)
    g_spec = graph_turn_ms(guard(True), args.turns)
    print(f"guarded_agent_graph, in series   : {g_serial:7.1f} ms  ({g_serial / bare:.2f}x)")
    print(f"guarded_agent_graph, speculative : {g_spec:7.1f} ms  ({g_spec / bare:.2f}x)")


def graph_turn_ms(guard: Guard, turns: int) -> float:
    """The same turn through ``guarded_agent_graph`` (input node, model node, response
    node)."""
    from langgraph.checkpoint.memory import InMemorySaver

    from guard_plugin.langgraph import guarded_agent_graph

    out = []
    for i in range(turns):
        model = SlowModel(responses=[AIMessage("Paris is the capital of France.")])

        def call_model(state: Any, model: Any = model) -> Any:
            return {"messages": [model.invoke(state["messages"])]}

        graph = guarded_agent_graph(call_model, [], guard).compile(checkpointer=InMemorySaver())
        t0 = time.perf_counter()
        graph.invoke(
            {"messages": [HumanMessage(f"what is the capital of France? ({i})")]},
            {"configurable": {"tenant_id": "t", "thread_id": str(i)}},
        )
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


if __name__ == "__main__":
    main()
