"""The LangGraph server app in integrations/langgraph loads and guards a run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, HumanMessage

from guard_plugin import Guard
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.testing import ScriptedClassifier
from tests.lc_helpers import ScriptedChatModel, tool_call

APP = Path(__file__).resolve().parents[1] / "integrations" / "langgraph"


@pytest.fixture(autouse=True)
def app_env(monkeypatch) -> None:
    """What the server's environment holds (the module builds its graph on import)."""
    pytest.importorskip("langchain_openai")
    monkeypatch.setenv("GUARD_PLUGIN_CLASSIFIER", "scripted")
    monkeypatch.setenv("AGENT_MODEL", "openai:gpt-4.1-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "not-used")
    monkeypatch.delenv("GUARD_PLUGIN_POLICIES", raising=False)


def load_app():
    spec = importlib.util.spec_from_file_location("guarded_app", APP / "agent.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_langgraph_json_points_at_a_compiled_graph() -> None:
    cfg = json.loads((APP / "langgraph.json").read_text())
    path, _, attr = cfg["graphs"]["guarded_agent"].partition(":")
    assert (APP / path).is_file()
    assert hasattr(getattr(load_app(), attr), "invoke")  # a graph, not a factory


def test_the_app_blocks_an_unsafe_email() -> None:
    app = load_app()
    sink = MemoryAuditSink()
    model = ScriptedChatModel(
        responses=[
            tool_call(
                "send_email", {"to": "b", "subject": "hi", "body": "you worthless idiot"}, "c1"
            )
        ]
    )
    graph = app.build_graph(model, Guard(ScriptedClassifier(), audit=sink))
    out = graph.invoke(
        {"messages": [HumanMessage("email bob")]}, {"configurable": {"tenant_id": "default"}}
    )
    assert isinstance(out["messages"][-1], AIMessage) and not out["messages"][-1].tool_calls
    assert any(e.surface == "response" and e.action == "block" for e in sink.events)


def test_default_guard_uses_the_shipped_policies() -> None:
    guard = load_app().make_guard()
    assert "devops" in guard.policies.tenants()
