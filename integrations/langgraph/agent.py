"""A guarded tool-calling agent for the LangGraph server (`langgraph dev` in this folder).

Configuration (environment, read when the server builds the graph):

- ``AGENT_MODEL``: the chat model, as ``init_chat_model`` takes it (e.g. ``openai:gpt-4.1-mini``).
- ``GUARD_PLUGIN_CLASSIFIER``: the safety classifier spec (e.g.
  ``vllm://gpu1:8000/v1?model=nvidia/Nemotron-3.5-Content-Safety``). Without it the graph runs
  on the scripted stand-in, which is NOT a safety model, and logs a warning saying so.
- ``GUARD_PLUGIN_POLICIES``: a folder of tenant policy files (default: the shipped examples).

The tenant of a run is ``config["configurable"]["tenant_id"]``. The server supplies the
checkpointer, so escalations pause the thread until a reviewer resumes it with
``Command(resume={"decisions": [...]})`` from any HITL-capable client.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool

from guard_plugin import Guard, PolicyStore
from guard_plugin.langchain import SafetyMiddleware

log = logging.getLogger("guard_plugin.integrations.langgraph")


@tool
def fetch_page(url: str) -> str:
    """Fetch a web page and return its text."""
    return f"(page text of {url} would be fetched here)"


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email."""
    return f"email to {to} queued"


TOOLS = [fetch_page, send_email]


def make_guard() -> Guard:
    spec = os.environ.get("GUARD_PLUGIN_CLASSIFIER", "scripted")
    if spec.split(":", 1)[0] == "scripted":
        log.warning(
            "guard_plugin is using the scripted stand-in (NOT a safety model); "
            "set GUARD_PLUGIN_CLASSIFIER"
        )
    folder = os.environ.get("GUARD_PLUGIN_POLICIES") or str(
        resources.files("guard_plugin") / "policies"
    )
    return Guard(spec, policies=PolicyStore.from_dir(folder))


def make_graph(config: Any = None, *, model: Any = None, guard: Guard | None = None) -> Any:
    """The graph factory the server calls; tests pass ``model`` and ``guard`` directly."""
    if model is None:
        from langchain.chat_models import init_chat_model

        model = init_chat_model(os.environ["AGENT_MODEL"])
    return create_agent(
        model,
        tools=TOOLS,
        system_prompt="You are a helpful assistant with web and email tools.",
        middleware=[SafetyMiddleware(guard or make_guard())],
    )
