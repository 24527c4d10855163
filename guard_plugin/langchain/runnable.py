"""``guard_runnable``: an LCEL guard, ``guard_in | chain | guard_out``."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableLambda

from guard_plugin import lc_messages as lc
from guard_plugin.check import Guard, as_guard
from guard_plugin.errors import GuardBlocked
from guard_plugin.policy import resolve_tenant
from guard_plugin.types import Surface

__all__ = ["guard_runnable"]


def _content_of(value: Any) -> tuple[Any, str]:
    """The content to check in an LCEL value, and the context text."""
    if isinstance(value, BaseMessage):
        return value.content, ""
    if isinstance(value, dict) and "messages" in value:
        value = value["messages"]
    elif isinstance(value, dict):  # prompt variables: check their text
        return "\n".join(str(v) for v in value.values() if isinstance(v, (str, int, float))), ""
    if isinstance(value, list) and value and all(isinstance(m, BaseMessage) for m in value):
        last = value[-1]
        human = next((m for m in reversed(value[:-1]) if isinstance(m, HumanMessage)), None)
        return last.content, lc.text_of(human)
    if hasattr(value, "to_messages"):  # prompt values
        msgs = value.to_messages()
        return (msgs[-1].content if msgs else ""), ""
    return value, ""


def guard_runnable(
    guard: Guard | str, *, surface: Surface | str = Surface.INPUT, tenant: str | None = None
) -> Runnable[Any, Any]:
    """A runnable that passes its input through unchanged when it is allowed and raises
    :class:`~guard_plugin.GuardBlocked` otherwise: ``guard_in | chain | guard_out``.

    Strings, messages, message lists, prompt values, ``{"messages": [...]}`` and dicts of prompt
    variables (their text values) are understood;
    on the response surface a message list's last message is checked with the preceding user
    turn as context. The tenant comes from ``tenant`` or ``config["configurable"]["tenant_id"]``.
    """
    g = as_guard(guard)
    surf = Surface(surface)

    def _tenant(config: Any) -> str | None:
        return resolve_tenant(tenant, None, config, "tenant_id")

    def check(value: Any, config: Any = None) -> Any:
        content, context = _content_of(value)
        d = g.check_content(content, surface=surf, tenant=_tenant(config), context=context)
        if not d.allowed:
            raise GuardBlocked(d)
        return value

    async def acheck(value: Any, config: Any = None) -> Any:
        content, context = _content_of(value)
        d = await g.acheck_content(content, surface=surf, tenant=_tenant(config), context=context)
        if not d.allowed:
            raise GuardBlocked(d)
        return value

    return RunnableLambda(check, afunc=acheck, name=f"guard_plugin[{surf.value}]")
