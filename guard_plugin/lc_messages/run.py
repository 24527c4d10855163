"""The graph run a check is made in: its config and runtime context, the tenant they name,
request ids stable across a resumed run, and LangGraph's ``interrupt()``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guard_plugin.policy import resolve_tenant
from guard_plugin.types import Surface

__all__ = ["can_interrupt", "check_args", "check_id", "interrupt", "run_config", "run_tenant"]


def run_config() -> Any:
    """The config of the graph run this is called in; ``None`` outside a run."""
    try:
        from langgraph.config import get_config

        return get_config()
    except Exception:  # noqa: BLE001 (no langgraph, or outside a graph run: no config)
        return None


def run_tenant(explicit: str | None, key: str, context: Any = None) -> tuple[str | None, Any]:
    """The tenant of a check made inside a graph run (explicit, else the runtime context's
    ``key``, else ``configurable[key]``), and the run's config."""
    config = run_config()
    if context is None and explicit is None:
        try:
            from langgraph.runtime import get_runtime

            context = get_runtime().context
        except Exception:  # noqa: BLE001 (outside a graph run: no runtime context)
            context = None
    return resolve_tenant(explicit, context, config, key), config


def check_id(
    config: Mapping[str, Any] | None, message_id: str | None, surface: Surface
) -> str | None:
    """A request id for checking one message on one surface in one thread: a check that runs
    again when a paused run resumes gets the same id, and so does the review of it. None
    (the guard makes a random one) outside a thread or for a message without an id."""
    thread = ((config or {}).get("configurable") or {}).get("thread_id")
    if thread is None or not message_id:
        return None
    return f"{thread}:{message_id}:{surface.value}"


def check_args(
    surface: Surface, tenant: str | None, config: Mapping[str, Any] | None, message_id: str | None
) -> dict[str, Any]:
    """The keyword arguments of a check of one message in a graph run: surface, tenant and a
    request id stable across a resumed run (:func:`check_id`)."""
    return {
        "surface": surface,
        "tenant": tenant,
        "request_id": check_id(config, message_id, surface),
    }


def can_interrupt() -> bool:
    """True inside a graph run that has a checkpointer; without one an interrupt could never
    be resumed, so escalation falls back to the tenant's escalation policy instead."""
    config = run_config()
    # LangGraph's key for the run's checkpointer (None when compiled without one).
    return (
        bool(config) and (config.get("configurable") or {}).get("__pregel_checkpointer") is not None
    )


def interrupt(payload: dict[str, Any]) -> Any:
    """LangGraph's ``interrupt()``: pauses the run (raises) until it is resumed, then returns
    the resume value."""
    from langgraph.types import interrupt as _interrupt

    return _interrupt(payload)
