"""NeMo Guardrails rail actions backed by the shared Guard.

``guard_plugin_check_input``, ``guard_plugin_check_output``, ``guard_plugin_check_tool_input``
(a tool's result) and ``guard_plugin_check_tool_output`` (the tool calls the bot asks for;
Colang 2: ``GuardPluginCheckInputAction`` ...). What they return is chosen by feature, not
by version: a ``RailOutcome`` where NeMo has it (0.24: ``allow`` / ``block`` / ``transform``
for rewrite, ``metadata["policy_violations"]``), else ``{"allowed", "policy_violations"}`` with
an ``output_mapping`` (0.22 / 0.23). Each accepts ``**kwargs``, since streaming output rails
call actions directly. Nothing raises for a classifier failure: it is a decision through the
tenant's ``on_error`` (block by default), audited like every other.

The guard, the tenant and the escalation handler are process-wide settings
(:func:`configure`, :data:`tenant_var`), because NeMo builds actions from a config folder.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from guard_plugin.check import Guard
from guard_plugin.classifiers.registry import is_stand_in, spec_from_env
from guard_plugin.decision import Decision
from guard_plugin.errors import MediaError
from guard_plugin.media import FailedPart, content_text, rewrite_content
from guard_plugin.media.formats import call_text, read_call
from guard_plugin.policy import PolicyStore, resolve_tenant
from guard_plugin.prompting import SafetyInput
from guard_plugin.types import Action, PartRef, Surface

__all__ = [
    "ACTIONS",
    "configure",
    "get_guard",
    "guard_plugin_check_input",
    "guard_plugin_check_output",
    "guard_plugin_check_tool_input",
    "guard_plugin_check_tool_output",
    "make_actions",
    "tenant_var",
]

log = logging.getLogger(__name__)

#: The tenant of the current request; set it around ``rails.generate_async`` (or pass
#: ``tenant_id`` in a ``{"role": "context"}`` message).
tenant_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "guard_plugin_tenant", default=None
)

_state: dict[str, Any] = {"guard": None, "escalation_handler": None}
_lock = threading.Lock()


def configure(
    guard: Guard | None = None,
    *,
    classifier: str | None = None,
    policies: str | os.PathLike[str] | PolicyStore | None = None,
    escalation_handler: Callable[[Decision], bool] | None = None,
) -> Guard:
    """Set the guard the rail actions use (or build one from a classifier spec and policies).
    ``escalation_handler(decision) -> bool`` approves (True) or refuses an escalation."""
    with _lock:
        if guard is None:
            guard = Guard(classifier or _default_spec(), policies=policies or _default_policies())
        _state["guard"] = guard
        _state["escalation_handler"] = escalation_handler
        return guard


def _default_spec() -> str:
    spec = spec_from_env(where="the guard_plugin NeMo rails")
    if is_stand_in(spec):
        log.warning(
            "guard_plugin rails use the scripted stand-in (NOT a safety model); "
            "set GUARD_PLUGIN_CLASSIFIER"
        )
    return spec


def _default_policies() -> Any:
    return os.environ.get("GUARD_PLUGIN_POLICIES") or "builtin"


def ensure_configured() -> None:
    """Fail at start-up, not on the first turn, when no guard is set and no classifier spec
    is in the environment (a :class:`~guard_plugin.ConfigError` saying how to set one)."""
    with _lock:
        configured = _state["guard"] is not None
    if not configured:
        spec_from_env(where="the guard_plugin NeMo rails")


def get_guard() -> Guard:
    """The configured guard, built from the environment on first use."""
    with _lock:
        guard = _state["guard"]
    return guard if guard is not None else configure()


def _tenant(context: dict[str, Any] | None) -> str | None:
    return resolve_tenant(tenant_var.get(), context, None, "tenant_id")


def _resolve(d: Decision, guard: Guard) -> Action:
    """Escalations go to the handler; without one (or when it refuses), the fallback applies."""
    if d.action is not Action.ESCALATE:
        return d.action
    handler = _state["escalation_handler"]
    if handler is not None:
        return Action.ALLOW if guard.ask_handler(d, handler) else Action.BLOCK
    return Action(guard.policy_of(d).escalation.fallback)


def _result(
    d: Decision,
    guard: Guard,
    kind: str,
    rail_outcome: Any,
    target: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Any:
    """What an action returns: a ``RailOutcome`` (``None`` for the class: the legacy dict),
    with ``extra`` in its metadata."""
    act = _resolve(d, guard)
    violations = list(d.categories)
    if rail_outcome is None:
        return {"allowed": act is Action.ALLOW, "policy_violations": violations}
    meta = {
        **(extra or {}),
        "policy_violations": violations,
        # the tenant's own words to the user; the shipped flows say them
        "refusal": guard.messages_of(d).refusal,
        "guard_plugin": {
            "action": d.action.value,
            "status": d.status,
            "score": d.score,
            "request_id": d.request_id,
        },
    }
    if act is Action.ALLOW:
        return rail_outcome.allow(metadata=meta)
    if act is Action.REWRITE and kind in target and d.replacement:
        return rail_outcome.transform(rewrites=[(target[kind], d.replacement)], metadata=meta)
    return rail_outcome.block(reason=d.error or ", ".join(violations) or None, metadata=meta)


def _decided_chunks(chunks: str, d: Decision, guard: Guard) -> str:
    """Retrieved text as its decision leaves it: whole, rewritten (its unsafe windows
    redacted), or the redaction note in its place."""
    act = _resolve(d, guard)
    if act is Action.ALLOW:
        return chunks
    if act is Action.REWRITE:
        try:
            rewritten = rewrite_content(chunks, d)
        except Exception:  # noqa: BLE001 (the safe parts cannot be rebuilt: withhold it all)
            rewritten = None
        if isinstance(rewritten, str):
            return rewritten
        return d.replacement or guard.messages_of(d).redaction
    return guard.messages_of(d).redaction


def _with_thinking(bot: Any, thinking: Any) -> Any:
    """The bot message with the reasoning NeMo kept apart (``$bot_thinking``, returned to the
    caller before the answer), as one content to check; the message alone when there is none."""
    if not isinstance(thinking, str) or not thinking.strip():
        return bot
    return [
        {"type": "text", "text": content_text(bot)},
        {"type": "reasoning", "reasoning": thinking},
    ]


def _empty_last(events: list[Any] | None, kind: str, field: str, empty: Any) -> None:
    """Empty ``field`` of the turn's last ``kind`` event. NeMo returns to the caller what two
    events hold whatever its rails decided: ``BotThinking`` (the reasoning trace, as
    ``reasoning_content`` or ``<think>`` tags) and ``BotToolCalls`` (the calls, even those a
    tool output rail stopped)."""
    for event in reversed(events or []):
        if isinstance(event, dict) and event.get("type") == kind:
            event[field] = empty
            return


def _drop_thinking(events: list[Any] | None) -> None:
    _empty_last(events, "BotThinking", "content", "")


_NOT_CALLS = "the bot's tool calls are not a list of calls with a name (LangChain's or OpenAI's)"


def _call_inputs(calls: Any, user: str) -> list[SafetyInput | FailedPart]:
    """One response input per tool call, with the user turn as context; what is not a call
    is no verdict (``on_error`` decides)."""
    inputs: list[SafetyInput | FailedPart] = []
    if not isinstance(calls, list):
        return [FailedPart(PartRef("tool_calls"), MediaError(_NOT_CALLS))]
    for n, call in enumerate(calls):
        read = read_call(call)
        if read is None:
            inputs.append(FailedPart(PartRef("tool_calls", n), MediaError(_NOT_CALLS)))
            continue
        name, args, call_id = read
        inputs.append(
            SafetyInput(
                text=user,
                response=call_text(name, args),
                surface=Surface.RESPONSE,
                tool_name=name,
                part=PartRef.tool_call(call_id),
            )
        )
    return inputs


def _drop_tool_calls(events: list[Any] | None) -> None:
    _empty_last(events, "BotToolCalls", "tool_calls", [])


def _decorate(action: Callable[..., Any], legacy: bool, fn: Callable[..., Any], name: str) -> Any:
    params = inspect.signature(action).parameters
    if legacy and "output_mapping" in params:
        return action(name=name, output_mapping=lambda r: not r["allowed"])(fn)
    return action(name=name)(fn)


def make_actions(rail_outcome: Any, action: Callable[..., Any]) -> dict[str, Any]:
    """Build the actions for a NeMo with (``rail_outcome`` = the ``RailOutcome`` class)
    or without (``None``) the 0.24 return contract; ``action`` is NeMo's decorator."""
    legacy = rail_outcome is None
    target: dict[str, Any] = {}
    if not legacy:
        from nemoguardrails.actions.rail_outcome import TransformTarget

        target = {"input": TransformTarget.USER_MESSAGE, "output": TransformTarget.BOT_MESSAGE}

    def result(d: Decision, guard: Guard, kind: str, extra: dict[str, Any] | None = None) -> Any:
        return _result(d, guard, kind, rail_outcome, target, extra)

    def decorate(fn: Callable[..., Any], name: str) -> Any:
        return _decorate(action, legacy, fn, name)

    async def check_input(
        context: dict[str, Any] | None = None, user_message: Any = None, **kwargs: Any
    ) -> Any:
        guard = get_guard()
        ctx = context or {}
        content = user_message if user_message is not None else ctx.get("user_message", "")
        tenant = _tenant(ctx)
        chunks = ctx.get("relevant_chunks")
        if not isinstance(chunks, str) or not chunks.strip():
            d = await guard.acheck_content(content, surface=Surface.INPUT, tenant=tenant)
            return result(d, guard, "input", {"relevant_chunks_changed": False})
        # retrieved text a caller sent (a context message's relevant_chunks) goes into the
        # prompt beside the user's turn: it is checked as tool output, in the same batch
        d, dc = await asyncio.gather(
            guard.acheck_content(content, surface=Surface.INPUT, tenant=tenant),
            guard.acheck_content(
                chunks, surface=Surface.TOOL, tenant=tenant, tool_name="retrieval"
            ),
        )
        decided = _decided_chunks(chunks, dc, guard)
        extra = {"relevant_chunks": decided, "relevant_chunks_changed": decided != chunks}
        return result(d, guard, "input", extra)

    async def check_output(
        context: dict[str, Any] | None = None,
        user_message: Any = None,
        bot_message: Any = None,
        events: list[Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        guard = get_guard()
        ctx = context or {}
        user = user_message if user_message is not None else ctx.get("user_message", "")
        bot = bot_message if bot_message is not None else ctx.get("bot_message", "")
        thinking = ctx.get("bot_thinking")
        content = _with_thinking(bot, thinking)
        d = await guard.acheck_content(
            content, surface=Surface.RESPONSE, tenant=_tenant(ctx), context=content_text(user)
        )
        out = result(d, guard, "output")
        if content is not bot and _resolve(d, guard) is not Action.ALLOW:
            _drop_thinking(events)  # NeMo hands the trace to the caller whatever rails decide
        return out

    async def check_tool_input(
        tool_message: Any = None,
        tool_name: str | None = None,
        tool_call_id: str | None = None,
        context: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        guard = get_guard()
        ctx = context or {}
        content = tool_message if tool_message is not None else ctx.get("tool_message", "")
        d = await guard.acheck_content(
            content,
            surface=Surface.TOOL,
            tenant=_tenant(ctx),
            tool_name=tool_name or ctx.get("tool_name"),
        )
        return result(d, guard, "tool")

    async def check_tool_output(
        tool_calls: Any = None,
        context: dict[str, Any] | None = None,
        events: list[Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        guard = get_guard()
        ctx = context or {}
        calls = tool_calls if tool_calls is not None else ctx.get("tool_calls")
        inputs = _call_inputs(calls, content_text(ctx.get("user_message", "")))
        d = await guard.acheck(inputs, surface=Surface.RESPONSE, tenant=_tenant(ctx))
        out = result(d, guard, "tool_output")  # a call cannot be rewritten: not allowed blocks
        if _resolve(d, guard) is not Action.ALLOW:
            _drop_tool_calls(events)  # NeMo returns the calls it saw unless they are gone
        return out

    return {
        "guard_plugin_check_input": decorate(check_input, "guard_plugin_check_input"),
        "guard_plugin_check_tool_output": decorate(
            check_tool_output, "guard_plugin_check_tool_output"
        ),
        "guard_plugin_check_output": decorate(check_output, "guard_plugin_check_output"),
        "guard_plugin_check_tool_input": decorate(
            check_tool_input, "guard_plugin_check_tool_input"
        ),
    }


def _detect() -> dict[str, Any]:
    from nemoguardrails.actions.actions import action

    try:
        from nemoguardrails.actions.rail_outcome import RailOutcome
    except ImportError:  # NeMo Guardrails 0.23 and earlier
        return make_actions(None, action)
    return make_actions(RailOutcome, action)


ACTIONS = _detect()
guard_plugin_check_input = ACTIONS["guard_plugin_check_input"]
guard_plugin_check_output = ACTIONS["guard_plugin_check_output"]
guard_plugin_check_tool_input = ACTIONS["guard_plugin_check_tool_input"]
guard_plugin_check_tool_output = ACTIONS["guard_plugin_check_tool_output"]


#: NeMo's own output action, which ``content safety check output`` runs.
NEMO_OUTPUT_ACTION = "content_safety_check_output"


def _blocked(outcome: Any) -> bool:
    """Whether what NeMo's content safety action returned stops the turn: a ``RailOutcome``
    that is not an allow (0.24), else a result that does not say ``allowed`` (0.22 / 0.23
    return a dict or a bool)."""
    if hasattr(outcome, "is_blocked"):
        return bool(outcome.is_blocked)
    if isinstance(outcome, dict):
        return outcome.get("allowed") is not True
    return outcome is not True


def thinking_checked(original: Callable[..., Any]) -> Callable[..., Any]:
    """NeMo's ``content_safety_check_output`` (``original``), with the reasoning trace checked
    too. NeMo's own flows check the answer only and hand the trace (``$bot_thinking``) to the
    caller whatever they decided; here the trace goes through the same action as a second
    bot message, beside the answer's check, and a turn that either check stops returns no
    trace. The answer's check is NeMo's, unchanged; without a trace nothing else runs."""
    params = inspect.signature(original).parameters
    forward_events = "events" in params
    takes_bot_message = "bot_message" in params

    async def content_safety_check_output(**kwargs: Any) -> Any:
        events = kwargs.get("events")
        if not forward_events:
            kwargs.pop("events", None)
        ctx = kwargs.get("context") or {}
        thinking = ctx.get("bot_thinking")
        if not isinstance(thinking, str) or not thinking.strip():
            return await original(**kwargs)
        # the trace as the bot message, wherever this NeMo's action reads one from
        as_trace = {**kwargs, "context": {**ctx, "bot_message": thinking}}
        if takes_bot_message:
            as_trace["bot_message"] = thinking
        answer: Any
        trace: Any
        answer, trace = await asyncio.gather(
            original(**kwargs),
            original(**as_trace),
            return_exceptions=True,
        )
        for outcome in (answer, trace):
            if isinstance(outcome, BaseException) or _blocked(outcome):
                _drop_thinking(events)  # NeMo hands the trace to the caller whatever rails decide
                if isinstance(outcome, BaseException):
                    raise outcome
                return outcome
        return answer

    # NeMo passes an action the arguments its signature names: NeMo's, and the events (all
    # keyword-only, which is how NeMo passes them; **kwargs stays last)
    sig = inspect.signature(original)
    kw_only = inspect.Parameter.KEYWORD_ONLY
    plain = [p for p in params.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    named = [p.replace(kind=kw_only) for p in plain]
    if not forward_events:
        named.append(inspect.Parameter("events", kw_only, default=None))
    rest = [p for p in params.values() if p.kind is p.VAR_KEYWORD]
    content_safety_check_output.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[*named, *rest]
    )
    content_safety_check_output.action_meta = dict(  # type: ignore[attr-defined]
        getattr(original, "action_meta", {}) or {}, name=NEMO_OUTPUT_ACTION
    )
    return content_safety_check_output


def nemo_output_action() -> Callable[..., Any] | None:
    """:func:`thinking_checked` around NeMo's own output action, or None where this NeMo has
    none of that name."""
    try:
        from nemoguardrails.library.content_safety import actions as library
    except ImportError:  # pragma: no cover
        return None
    original = getattr(library, NEMO_OUTPUT_ACTION, None)
    return thinking_checked(original) if callable(original) else None
