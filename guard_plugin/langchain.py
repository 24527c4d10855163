"""LangChain adapters: agent middleware, a callback handler, and an LCEL runnable guard.

``SafetyMiddleware`` guards an agent built with ``langchain.agents.create_agent`` at all
three surfaces, with the vocabulary of LangChain's ``PIIMiddleware``::

    agent = create_agent(model, tools, middleware=[SafetyMiddleware(guard)],
                         checkpointer=InMemorySaver())      # a checkpointer enables escalation

Where each check runs, and why there:

- the user's turn and new tool results in ``before_model`` (the user's turn once per run,
  before the first model call: a block ends the run with no model call; tool results before
  the model reads them; a safe place to ``interrupt()``, since nothing that ran before it is
  run again on resume);
- the model's response, text and tool-call arguments, in ``after_model`` (before any tool
  runs; the reviewer sees the message that will be kept).

Streaming: with ``stream_mode="messages"`` a model's tokens reach the consumer while they are
generated, before ``after_model`` can check them. ``hold_output=True`` moves the response
check into the model call itself and tags that call ``nostream``: consumers then receive the
checked message only, whole, when the model step ends. In that mode an escalated response
cannot pause for review (the model step would be re-run on resume) and gets the tenant's
escalation fallback instead.

``SafetyCallbackHandler`` observes any chain or runnable and can only stop it: callbacks
cannot rewrite or interrupt, so ``rewrite`` and ``escalate`` become a block (after the
tenant's ``escalation_handler``, if given, has had its say).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal
from uuid import UUID

try:
    from langchain.agents.middleware import AgentMiddleware, hook_config
    from langchain.agents.middleware.types import ModelRequest, ModelResponse
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.messages import (
        AIMessage,
        BaseMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )
    from langchain_core.outputs import LLMResult
    from langchain_core.runnables import Runnable, RunnableLambda
except ImportError as _err:  # pragma: no cover
    raise ImportError(
        "guard_plugin.langchain needs LangChain 1.x: pip install 'guard-plugin[langchain]'"
    ) from _err

from guard_plugin import _lc_messages as lc
from guard_plugin.decision import Decision
from guard_plugin.errors import GuardBlocked
from guard_plugin.guard import Guard
from guard_plugin.types import Action, Surface

__all__ = ["SafetyCallbackHandler", "SafetyMiddleware", "guard_runnable"]

EscalationHandler = Callable[[Decision], bool]
"""Called for ``escalate`` where no interrupt is possible: True allows, False blocks."""

SAFETY_INSTRUCTION = (
    "Your previous answer was withheld by the content safety policy. Answer again, helpfully, "
    "without the unsafe content; if the request itself is unsafe, decline briefly."
)


def _as_guard(guard: Guard | str) -> Guard:
    return Guard(guard) if isinstance(guard, str) else guard


def _config() -> Any:
    try:
        from langgraph.config import get_config

        return get_config()
    except Exception:  # outside a graph run
        return None


class SafetyMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Content safety for ``create_agent``: user input, tool results, responses and tool calls.

    - ``guard``: a :class:`~guard_plugin.Guard` or a classifier spec.
    - ``apply_to_input`` / ``apply_to_tool_results`` / ``apply_to_output``: the surfaces.
    - ``tenant``: fixed tenant; otherwise ``runtime.context.<tenant_key>`` or
      ``config["configurable"][tenant_key]``.
    - ``on_block``: ``"end"`` applies the decision natively (refusal, same-id replacement,
      jump to end); ``"error"`` raises :class:`~guard_plugin.GuardBlocked` instead.
    - ``escalate``: use ``interrupt()`` for ``escalate`` (needs a checkpointer); otherwise the
      tenant's escalation fallback applies.
    - ``hold_output``: check the response inside the model call so streamed tokens never
      leak (see the module docs); ``regenerate_on_rewrite``: when a response is to be
      rewritten, ask the model once more with a safety instruction and re-check it (block if
      it is still unsafe). Both imply the in-call check.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> SafetyMiddleware:
        # create_agent adds a model-call layer only for classes that define one; the plain
        # middleware has none, so it costs nothing per model call.
        if cls is SafetyMiddleware and (
            kwargs.get("hold_output") or kwargs.get("regenerate_on_rewrite")
        ):
            cls = _HoldingSafetyMiddleware
        return super().__new__(cls)

    def __init__(
        self,
        guard: Guard | str,
        *,
        apply_to_input: bool = True,
        apply_to_tool_results: bool = True,
        apply_to_output: bool = True,
        tenant: str | None = None,
        tenant_key: str = "tenant_id",
        on_block: Literal["end", "error"] = "end",
        escalate: bool = True,
        hold_output: bool = False,
        regenerate_on_rewrite: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.guard = _as_guard(guard)
        self.apply_to_input = apply_to_input
        self.apply_to_tool_results = apply_to_tool_results
        self.apply_to_output = apply_to_output
        self.tenant = tenant
        self.tenant_key = tenant_key
        self.on_block = on_block
        self.escalate = escalate
        self.hold_output = hold_output or regenerate_on_rewrite
        self.regenerate_on_rewrite = regenerate_on_rewrite
        self._name = name

    @property
    def name(self) -> str:
        return self._name or type(self).__name__.lstrip("_").replace("Holding", "")

    # -- helpers --------------------------------------------------------------------------------

    def _tenant(self, runtime: Any) -> str | None:
        return lc.resolve_tenant(
            self.tenant, getattr(runtime, "context", None), _config(), self.tenant_key
        )

    def _raise_if_blocking(self, outcome: lc.Outcome) -> None:
        """``on_block="error"``: a decision that changes the conversation raises instead."""
        if self.on_block == "error" and outcome.messages:
            for d in outcome.decisions:
                if d.action in (Action.BLOCK, Action.ESCALATE):
                    raise GuardBlocked(d)

    def _result(self, outcome: lc.Outcome) -> dict[str, Any] | None:
        self._raise_if_blocking(outcome)
        if not outcome.messages:
            return None
        update: dict[str, Any] = {"messages": outcome.messages}
        if outcome.end:
            update["jump_to"] = "end"
        return update

    def _merge(self, outcomes: Sequence[lc.Outcome]) -> dict[str, Any] | None:
        merged = lc.Outcome()
        for o in outcomes:
            merged.messages += o.messages
            merged.decisions += o.decisions
            merged.end = merged.end or o.end
        return self._result(merged)

    def _apply_input(self, found: tuple[int, HumanMessage], d: Decision) -> dict[str, Any] | None:
        return self._result(lc.apply_input(found[1], d, guard=self.guard, escalate=self.escalate))

    def _apply_tools(
        self, msgs: list[ToolMessage], ds: Sequence[Decision]
    ) -> dict[str, Any] | None:
        return self._merge(
            [
                lc.apply_tool_result(m, d, guard=self.guard, escalate=self.escalate)
                for m, d in zip(msgs, ds, strict=True)
            ]
        )

    # -- user input and tool results: one node before each model call ------------------------
    # The user's turn is found only while no assistant turn follows it, so it is checked once
    # per run, before the first model call; later calls see the new tool results instead.
    # One hook instead of two saves a graph step per model call.

    def _before(self, state: Any) -> tuple[Any, list[ToolMessage]]:
        msgs = state["messages"]
        found = lc.find_input(msgs) if self.apply_to_input else None
        tools = lc.find_tool_results(msgs) if self.apply_to_tool_results else []
        return found, tools

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        found, msgs = self._before(state)
        if found is None and not msgs:
            return None
        tenant = self._tenant(runtime)
        if found is not None:
            d = self.guard.check_content(found[1].content, surface=Surface.INPUT, tenant=tenant)
            return self._apply_input(found, d)
        ds = [self.guard.check_content(m.content, **lc.tool_check_args(m, tenant)) for m in msgs]
        return self._apply_tools(msgs, ds)

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        found, msgs = self._before(state)
        if found is None and not msgs:
            return None
        tenant = self._tenant(runtime)
        if found is not None:
            d = await self.guard.acheck_content(
                found[1].content, surface=Surface.INPUT, tenant=tenant
            )
            return self._apply_input(found, d)
        ds = await asyncio.gather(
            *(self.guard.acheck_content(m.content, **lc.tool_check_args(m, tenant)) for m in msgs)
        )
        return self._apply_tools(msgs, ds)

    # -- responses and tool calls ---------------------------------------------------------------

    @hook_config(can_jump_to=["end"])
    def after_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        rc = (
            lc.find_response(state["messages"])
            if self.apply_to_output and not self.hold_output
            else None
        )
        if rc is None:
            return None
        d = self.guard.check(rc.inputs, surface=Surface.RESPONSE, tenant=self._tenant(runtime))
        return self._result(lc.apply_response(rc, d, guard=self.guard, escalate=self.escalate))

    @hook_config(can_jump_to=["end"])
    async def aafter_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        rc = (
            lc.find_response(state["messages"])
            if self.apply_to_output and not self.hold_output
            else None
        )
        if rc is None:
            return None
        d = await self.guard.acheck(
            rc.inputs, surface=Surface.RESPONSE, tenant=self._tenant(runtime)
        )
        return self._result(lc.apply_response(rc, d, guard=self.guard, escalate=self.escalate))


def _nostream(model: Any) -> Any:
    tags = list(getattr(model, "tags", None) or [])
    return model if "nostream" in tags else model.model_copy(update={"tags": [*tags, "nostream"]})


def _ai_of(response: Any) -> tuple[list[BaseMessage], int | None]:
    msgs = list(response.result) if isinstance(response, ModelResponse) else [response]
    idx = next((i for i in range(len(msgs) - 1, -1, -1) if isinstance(msgs[i], AIMessage)), None)
    return msgs, idx


class _HoldingSafetyMiddleware(SafetyMiddleware):
    """SafetyMiddleware with the response check inside the model call (``hold_output``)."""

    def _held(self, request: ModelRequest, response: Any, d: Decision, rc: lc.ResponseCheck) -> Any:
        outcome = lc.apply_response(rc, d, guard=self.guard, escalate=False)
        self._raise_if_blocking(outcome)
        msgs, idx = _ai_of(response)
        if outcome.messages and idx is not None:
            msgs[idx] = outcome.messages[0]
        if isinstance(response, ModelResponse):
            return ModelResponse(result=msgs, structured_response=response.structured_response)
        return msgs[idx] if idx is not None else response

    def _regenerate_request(self, request: ModelRequest) -> ModelRequest:
        base = request.system_message.content if request.system_message else ""
        text = f"{base}\n\n{SAFETY_INSTRUCTION}" if base else SAFETY_INSTRUCTION
        return request.override(system_message=SystemMessage(content=text))

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], Any]) -> Any:
        if not self.apply_to_output:
            return handler(request)
        request = request.override(model=_nostream(request.model))
        tenant = self._tenant(request.runtime)
        response = handler(request)
        rc = _check_of(request, response)
        if rc is None:
            return response
        d = self.guard.check(rc.inputs, surface=Surface.RESPONSE, tenant=tenant)
        if d.action is Action.REWRITE and self.regenerate_on_rewrite:
            response = handler(self._regenerate_request(request))
            rc = _check_of(request, response)
            if rc is None:
                return response
            d = _strict(self.guard.check(rc.inputs, surface=Surface.RESPONSE, tenant=tenant))
        return self._held(request, response, d, rc)

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[Any]]
    ) -> Any:
        if not self.apply_to_output:
            return await handler(request)
        request = request.override(model=_nostream(request.model))
        tenant = self._tenant(request.runtime)
        response = await handler(request)
        rc = _check_of(request, response)
        if rc is None:
            return response
        d = await self.guard.acheck(rc.inputs, surface=Surface.RESPONSE, tenant=tenant)
        if d.action is Action.REWRITE and self.regenerate_on_rewrite:
            response = await handler(self._regenerate_request(request))
            rc = _check_of(request, response)
            if rc is None:
                return response
            d = _strict(await self.guard.acheck(rc.inputs, surface=Surface.RESPONSE, tenant=tenant))
        return self._held(request, response, d, rc)


def _check_of(request: ModelRequest, response: Any) -> lc.ResponseCheck | None:
    msgs, idx = _ai_of(response)
    return lc.find_response([*request.messages, msgs[idx]]) if idx is not None else None


def _strict(d: Decision) -> Decision:
    """After one regeneration, anything short of allow is a block."""
    if d.action in (Action.ALLOW, Action.BLOCK):
        return d
    from dataclasses import replace

    return replace(d, action=Action.BLOCK)


# -- callbacks ------------------------------------------------------------------------------------


class SafetyCallbackHandler(BaseCallbackHandler):
    """Stops a chain or runnable when its input, output or a tool's output is unsafe.

    Raises :class:`~guard_plugin.GuardBlocked` (``raise_error`` is on, so it propagates) from
    ``on_chat_model_start`` (the last user turn and new tool results), ``on_llm_end`` (the
    response, with its tool calls) and ``on_tool_end``. Callbacks cannot change what flows
    through a chain, so ``rewrite`` and ``escalate`` block too; ``escalation_handler`` may
    approve an escalated decision first. Works in sync and async chains (LangChain runs sync
    handlers of async chains in a worker thread).
    """

    raise_error = True
    run_inline = True

    def __init__(
        self,
        guard: Guard | str,
        *,
        tenant: str | None = None,
        check_inputs: bool = True,
        check_outputs: bool = True,
        check_tools: bool = True,
        escalation_handler: EscalationHandler | None = None,
    ) -> None:
        self.guard = _as_guard(guard)
        self.tenant = tenant
        self.check_inputs = check_inputs
        self.check_outputs = check_outputs
        self.check_tools = check_tools
        self.escalation_handler = escalation_handler
        self._context: dict[UUID, str] = {}
        self.decisions: list[Decision] = []

    def _enforce(self, d: Decision) -> None:
        self.decisions.append(d)
        if d.allowed:
            return
        if (
            d.action is Action.ESCALATE
            and self.escalation_handler is not None
            and self.escalation_handler(d)
        ):
            return
        raise GuardBlocked(d)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        for convo in messages:
            found = lc.find_input(convo)
            human = next((m for m in reversed(convo) if isinstance(m, HumanMessage)), None)
            self._context[run_id] = lc.text_of(human)
            if self.check_inputs and found is not None:
                self._enforce(
                    self.guard.check_content(
                        found[1].content, surface=Surface.INPUT, tenant=self.tenant
                    )
                )
            if self.check_tools:
                for tm in lc.find_tool_results(convo):
                    self._enforce(
                        self.guard.check_content(
                            tm.content, surface=Surface.TOOL, tenant=self.tenant, tool_name=tm.name
                        )
                    )

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        context = self._context.pop(run_id, "")
        if not self.check_outputs:
            return
        for gens in response.generations:
            for gen in gens:
                msg = getattr(gen, "message", None)
                ai = msg if isinstance(msg, AIMessage) else AIMessage(content=gen.text)
                rc = lc.find_response([HumanMessage(content=context), ai])
                if rc is not None:
                    self._enforce(
                        self.guard.check(rc.inputs, surface=Surface.RESPONSE, tenant=self.tenant)
                    )

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._context.pop(run_id, None)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if not self.check_tools:
            return
        if isinstance(output, ToolMessage):
            d = self.guard.check_content(output.content, **lc.tool_check_args(output, self.tenant))
        else:
            d = self.guard.check_content(
                output if isinstance(output, (str, list)) else str(output),
                surface=Surface.TOOL,
                tenant=self.tenant,
            )
        self._enforce(d)


# -- LCEL -----------------------------------------------------------------------------------------


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
    g = _as_guard(guard)
    surf = Surface(surface)

    def _tenant(config: Any) -> str | None:
        return lc.resolve_tenant(tenant, None, config, "tenant_id")

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
