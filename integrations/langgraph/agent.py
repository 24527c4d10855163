"""A guarded tool-calling agent for the LangGraph server (`langgraph dev` in this folder).

Configuration (environment, read once when the server imports this file):

- ``AGENT_MODEL``: the chat model, as ``init_chat_model`` takes it (``openai:gpt-4.1-mini``;
  for an OpenAI-compatible server of your own, also set ``OPENAI_BASE_URL``).
- ``GUARD_PLUGIN_CLASSIFIER``: the safety classifier spec (``vllm://gpu1:8000/v1``; see
  docs/serving.md). Required: without it the server refuses to load the graph and says how
  to set it. ``scripted`` names the test double explicitly (NOT a safety model).
- ``GUARD_PLUGIN_POLICIES``: a folder of tenant policy files (default: the shipped examples).
- ``GUARD_PLUGIN_TENANT_KEY``: where the tenant of a run comes from: ``tenant_id`` (default:
  ``config["configurable"]["tenant_id"]``, which any client may set) or ``auth:FIELD`` (the
  user the server's custom auth returned, its ``FIELD``: what a client sends is ignored, and a
  run without it is refused). Use ``auth:`` wherever clients are not all trusted alike.

The tenant of a run is, by default, ``config["configurable"]["tenant_id"]``. The server supplies the
checkpointer, so escalations pause the thread until a reviewer resumes it with
``Command(resume={"decisions": [...]})`` from any HITL-capable client.

Everything is built at import, once per server process: the graph the server runs is a
module-level value, so nothing blocking (loading policies, building the model client) happens
inside the server's event loop during a run.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool

from guard_plugin import Guard
from guard_plugin.classifiers import spec_from_env
from guard_plugin.langchain import SafetyMiddleware

log = logging.getLogger("guard_plugin.integrations.langgraph")

SYSTEM_PROMPT = "You are a helpful assistant with web and email tools."


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
    """The guard from the environment (a ``ConfigError`` when no classifier is set)."""
    spec = spec_from_env(where="the LangGraph app")
    if spec.split(":", 1)[0] == "scripted":
        log.warning("guard_plugin is using the scripted stand-in (NOT a safety model)")
    return Guard(spec, policies=os.environ.get("GUARD_PLUGIN_POLICIES") or "builtin")


def make_model() -> Any:
    """The chat model named by ``AGENT_MODEL``."""
    name = os.environ.get("AGENT_MODEL")
    if not name:
        raise RuntimeError("set AGENT_MODEL to the chat model, e.g. openai:gpt-4.1-mini")
    from langchain.chat_models import init_chat_model

    return init_chat_model(name)


def build_graph(model: Any, guard: Guard) -> Any:
    """The guarded agent for a given chat model and guard (the server gets ``graph``)."""
    tenant_key = os.environ.get("GUARD_PLUGIN_TENANT_KEY", "").strip() or "tenant_id"
    guarded = SafetyMiddleware(guard, tenant_key=tenant_key)
    return create_agent(model, tools=TOOLS, system_prompt=SYSTEM_PROMPT, middleware=[guarded])


graph = build_graph(make_model(), make_guard())
