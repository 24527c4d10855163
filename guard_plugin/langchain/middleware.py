"""``SafetyMiddleware``: content safety for ``create_agent`` at all three surfaces (see
:mod:`guard_plugin.langchain`). Each hook is written once, as a generator of typed steps that
a sync and an async driver run."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import types
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal
from uuid import uuid4

from langchain.agents.middleware import AgentMiddleware
from langchain.agents.middleware.types import (
    AgentState,
    ModelRequest,
    ModelResponse,
    PrivateStateAttr,
    ToolCallRequest,
)
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from typing_extensions import NotRequired

try:  # LangChain >= 1.2: state updates from wrap_model_call (needed to hold a response)
    from langchain.agents.middleware.types import ExtendedModelResponse
    from langgraph.types import Command
except ImportError:  # pragma: no cover
    ExtendedModelResponse = None  # type: ignore[assignment,misc]

from guard_plugin import lc_messages as lc
from guard_plugin.check import Guard, as_guard
from guard_plugin.decision import Decision
from guard_plugin.errors import ConfigError, GuardBlocked
from guard_plugin.lc_messages import Check
from guard_plugin.policy import resolve_tenant
from guard_plugin.types import Action, Surface

__all__ = [
    "HELD_TOOLS_KEY_PREFIX",
    "REVIEW_KEY_PREFIX",
    "REVIEW_TOOL",
    "SAFETY_INSTRUCTION",
    "CallModel",
    "Check",
    "RunChecks",
    "SafetyMiddleware",
    "Speculate",
]

log = logging.getLogger(__name__)

SAFETY_INSTRUCTION = (
    "Your previous answer was withheld by the content safety policy. Answer again, helpfully, "
    "without the unsafe content; if the request itself is unsafe, decline briefly."
)

REVIEW_TOOL = "content_safety_review"
"""Name of the pseudo-tool call that stands in for a response while a person reviews it."""

REVIEW_KEY_PREFIX = "guard_plugin_review:"
"""State key of a response held for review: the prefix plus the middleware's name."""

HELD_TOOLS_KEY_PREFIX = "guard_plugin_held_tools:"
"""State key of tool results held for review, by tool call id (prefix plus name)."""


def _merge_held(old: Any, new: Any) -> dict[str, Any]:
    """Reducer of held tool results: parallel tool calls each add theirs; ``None`` clears."""
    if new is None:
        return {}
    return {**(old or {}), **new}


@functools.cache
def _state_schema(review_key: str, held_key: str) -> type:
    """The agent state plus private keys (in neither the agent's input nor its output): a
    response held for review, and tool results held for review. One pair per middleware
    instance, so two instances never write the same key in one step."""
    annotations = {
        review_key: NotRequired[Annotated[dict[str, Any] | None, PrivateStateAttr]],
        held_key: NotRequired[Annotated[dict[str, Any] | None, PrivateStateAttr, _merge_held]],
    }
    return types.new_class(
        "SafetyState", (AgentState,), {}, lambda ns: ns.update(__annotations__=annotations)
    )


# A middleware hook is written once, as a generator of steps that a sync or an async driver
# runs: `RunChecks` is answered with one Decision per check, `CallModel` with the model's
# response.


@dataclass(frozen=True)
class RunChecks:
    checks: list[Check]


@dataclass(frozen=True)
class CallModel:
    """Call the model; ``quiet``: with its tokens shown to no stream consumer."""

    request: ModelRequest
    quiet: bool = False


@dataclass(frozen=True)
class StreamModel:
    """Call the model with its answer moderated as it streams; answered with the streamer
    and the model's response (what it said until a check stopped it, if one did)."""

    request: ModelRequest
    tenant: str | None


@dataclass(frozen=True)
class FinishStream:
    """Decide a streamed answer (``ResponseStreamer.decide``); answered with the decision."""

    streamer: lc.ResponseStreamer
    message: AIMessage | None
    inputs: list[Any]
    check: dict[str, Any]


@dataclass(frozen=True)
class CloseStream:
    """Show the rest of the decided message and end the stream."""

    streamer: lc.ResponseStreamer
    final: AIMessage | None


@dataclass(frozen=True)
class Speculate:
    """Run ``checks`` and call the model with ``request`` at once; answered with the
    decisions and the model's response (or the exception it raised, or a cancellation)."""

    checks: list[Check]
    request: ModelRequest


_Step = RunChecks | CallModel | Speculate | StreamModel | FinishStream | CloseStream
_Flow = Generator[_Step, Any, Any]


class SafetyMiddleware(AgentMiddleware):
    """Content safety for ``create_agent``: user input, tool results, responses and tool calls.

    - ``guard``: a :class:`~guard_plugin.Guard` or a classifier spec.
    - ``apply_to_input`` / ``apply_to_tool_results`` / ``apply_to_output``: the surfaces.
    - ``tenant``: fixed tenant; otherwise ``runtime.context.<tenant_key>`` or
      ``config["configurable"][tenant_key]``, both of which a LangGraph server's client sets;
      ``tenant_key="auth:FIELD"`` reads only the user the server's custom auth returned (its
      ``FIELD``), and a run without one is refused.
    - ``on_block``: ``"end"`` applies the decision natively (refusal, same-id replacement,
      unsafe tool calls dropped and the turn ended); ``"error"`` raises
      :class:`~guard_plugin.GuardBlocked` instead.
    - ``escalate``: use ``interrupt()`` for ``escalate`` (needs a checkpointer); otherwise the
      tenant's escalation fallback applies.
    - ``hold_output``: show no token of a response before the whole response is checked (the
      checked message reaches stream consumers whole); without it a streamed response is
      shown window by window as it passes its checks, by the tenant's ``streaming`` policy
      (see the module docs); ``regenerate_on_rewrite``: when a response is to be rewritten, ask the
      model once more with a safety instruction and re-check it (block if it is still unsafe).

    Put it first in ``middleware=[...]`` (the outermost layer): it then checks exactly what the
    model is sent, and no other layer sees an unchecked response or retries a review pause.
    """

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
        if on_block not in ("end", "error"):
            raise ConfigError(
                f"SafetyMiddleware(on_block={on_block!r}): use 'end' (answer with the refusal "
                "and end the turn) or 'error' (raise GuardBlocked)"
            )
        for option, value in (
            ("apply_to_input", apply_to_input),
            ("apply_to_tool_results", apply_to_tool_results),
            ("apply_to_output", apply_to_output),
            ("escalate", escalate),
            ("hold_output", hold_output),
            ("regenerate_on_rewrite", regenerate_on_rewrite),
        ):
            if not isinstance(value, bool):
                raise ConfigError(f"SafetyMiddleware({option}=...) takes True or False")
        if not isinstance(tenant_key, str) or not tenant_key:
            raise ConfigError("SafetyMiddleware(tenant_key=...) is the name of a config key")
        self.guard = as_guard(guard)
        self.apply_to_input = apply_to_input
        self.apply_to_tool_results = apply_to_tool_results
        self.apply_to_output = apply_to_output
        self.tenant = tenant
        self.tenant_key = tenant_key
        self.on_block = on_block
        self.escalate = escalate
        self.hold_output = hold_output
        self.regenerate_on_rewrite = regenerate_on_rewrite
        self._name = name
        self.review_key = REVIEW_KEY_PREFIX + self.name
        self.held_tools_key = HELD_TOOLS_KEY_PREFIX + self.name
        self.state_schema = _state_schema(self.review_key, self.held_tools_key)
        self._decided = lc.decided_results(self.guard)

    @property
    def name(self) -> str:
        return self._name or type(self).__name__

    # -- the two drivers ------------------------------------------------------------------------

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], Any]) -> Any:
        return self._drive(self._flow(request), handler)

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[Any]]
    ) -> Any:
        return await self._adrive(self._flow(request), handler)

    def wrap_tool_call(self, request: ToolCallRequest, handler: Callable[..., Any]) -> Any:
        refused = self._drive(self._call_flow(request), None)
        if refused is not None:  # a call no guard decided, not allowed: it does not run
            return refused
        # stream consumers see the tool's run end with the decided result (lc.tool_runs)
        run = lc.quiet_tool(request) if self.apply_to_tool_results else request
        try:
            result = self._drive(self._tool_flow(request, handler(run)), None)
        except BaseException as err:
            lc.finish_tool_run(run, error=err)
            raise
        lc.finish_tool_run(run, result)
        return result

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[..., Awaitable[Any]]
    ) -> Any:
        refused = await self._adrive(self._call_flow(request), None)
        if refused is not None:
            return refused
        run = lc.quiet_tool(request) if self.apply_to_tool_results else request
        try:
            result = await self._adrive(self._tool_flow(request, await handler(run)), None)
        except BaseException as err:
            await lc.afinish_tool_run(run, error=err)
            raise
        await lc.afinish_tool_run(run, result)
        return result

    def _drive(self, flow: _Flow, model: Callable[[Any], Any] | None) -> Any:
        value: Any = None
        streams: list[lc.ResponseStreamer] = []
        try:
            while True:
                try:
                    step = flow.send(value)
                except StopIteration as done:
                    return done.value
                if isinstance(step, RunChecks):
                    value = lc.run_checks(self.guard, step.checks)
                    continue
                assert model is not None, "a tool flow never calls the model"
                if isinstance(step, CallModel):
                    value = _quietly(model, step.request) if step.quiet else model(step.request)
                elif isinstance(step, Speculate):
                    value = self._speculate(step, model)
                elif isinstance(step, StreamModel):
                    streamer = self._streamer(step, is_async=False)
                    streams.append(streamer)
                    with streamer.capturing():
                        value = streamer, _stopped_or(model, step.request, streamer)
                elif isinstance(step, FinishStream):
                    value = step.streamer.decide(step.message, step.inputs, step.check)
                else:
                    streams.remove(step.streamer)
                    step.streamer.close(step.final)
        except BaseException as err:
            for s in streams:
                s.close(None, err)
            raise

    async def _adrive(self, flow: _Flow, model: Callable[[Any], Awaitable[Any]] | None) -> Any:
        value: Any = None
        streams: list[lc.ResponseStreamer] = []
        try:
            while True:
                try:
                    step = flow.send(value)
                except StopIteration as done:
                    return done.value
                if isinstance(step, RunChecks):
                    value = await lc.arun_checks(self.guard, step.checks)
                    continue
                assert model is not None, "a tool flow never calls the model"
                if isinstance(step, CallModel):
                    if step.quiet:
                        with lc.quiet():
                            value = await model(step.request)
                    else:
                        value = await model(step.request)
                elif isinstance(step, Speculate):
                    value = await self._aspeculate(step, model)
                elif isinstance(step, StreamModel):
                    streamer = self._streamer(step, is_async=True)
                    streams.append(streamer)
                    async with streamer.acapturing():
                        try:
                            value = streamer, await model(step.request)
                        except lc.StreamStopped:
                            value = streamer, ModelResponse(result=[streamer.partial()])
                elif isinstance(step, FinishStream):
                    value = await step.streamer.adecide(step.message, step.inputs, step.check)
                else:
                    streams.remove(step.streamer)
                    await step.streamer.aclose(step.final)
        except BaseException as err:
            for s in streams:
                await s.aclose(None, err)
            raise

    def _streamer(self, step: StreamModel, *, is_async: bool) -> lc.ResponseStreamer:
        r = step.request
        system = [r.system_message] if r.system_message is not None else []
        return lc.ResponseStreamer(
            self.guard,
            model=r.model,
            messages=[*system, *r.messages],
            tenant=step.tenant,
            is_async=is_async,
        )

    def _speculate(self, step: Speculate, model: Callable[[Any], Any]) -> Any:
        """The model in a thread of its own (in this run's context, its tokens shown to no
        stream consumer) while the checks run here; a blocked turn still waits for the model,
        whose answer is then dropped."""
        ctx = contextvars.copy_context()
        with ThreadPoolExecutor(1, thread_name_prefix="guard-plugin-speculate") as pool:
            answer = pool.submit(ctx.run, _quietly, model, step.request)
            ds = lc.run_checks(self.guard, step.checks)
            try:
                response: Any = answer.result()
            except Exception as err:  # noqa: BLE001 (raised later, if the answer is used)
                response = err
        return ds, response

    async def _aspeculate(self, step: Speculate, model: Callable[[Any], Awaitable[Any]]) -> Any:
        """The model as a task beside the checks; cancelled as soon as a check does not
        allow (its answer could not be used)."""
        with lc.quiet():  # the task copies the context: its model call shows no tokens
            task = asyncio.ensure_future(model(step.request))
        try:
            ds = await lc.arun_checks(self.guard, step.checks)
        except BaseException:
            task.cancel()
            raise
        if any(d.action is not Action.ALLOW for d in ds):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            return ds, asyncio.CancelledError("a check did not allow the turn")
        try:
            return ds, await task
        except Exception as err:  # noqa: BLE001 (raised by the caller, as a plain call would)
            return ds, err

    # -- one tool result, decided as the tool returns it ------------------------------------------

    def _call_flow(self, request: ToolCallRequest) -> _Flow:
        """A call whose assistant turn no guard decided (one a caller wrote into the state)
        is checked before it runs; returns the answer to a call that may not run
        (:mod:`guard_plugin.lc_messages.calls`)."""
        if not self.apply_to_output:
            return None
        config = lc.run_config()
        tenant = resolve_tenant(
            self.tenant, getattr(request.runtime, "context", None), config, self.tenant_key
        )
        scope = self.guard.scope_of(tenant)
        check = lc.call_check(request, self._decided, scope, tenant, config)
        if check is None:
            return None
        (d,) = yield RunChecks([check])
        refused = lc.refused_call(request, d, self.guard, self._decided, scope)
        if refused is not None:
            self._raise_if_blocking(lc.Outcome([refused], decisions=[d]))
        return refused

    def _tool_flow(self, request: ToolCallRequest, result: Any) -> _Flow:
        """Decide a tool's result before it enters the state: what the state, the streams, the
        checkpoints and a ``return_direct`` caller see is already decided. An escalated result
        is held: a placeholder takes its place, and it is reviewed before the next model call."""
        writes = lc.tool_writes(result, request.tool_call.get("id"))
        if writes is None:
            return result
        config = lc.run_config()
        tenant = resolve_tenant(
            self.tenant, getattr(request.runtime, "context", None), config, self.tenant_key
        )
        scope = self.guard.scope_of(tenant)
        msg = writes.own if self.apply_to_tool_results else None
        assert msg is None or isinstance(msg, ToolMessage)
        checks, others = lc.writes_checks(
            writes, self._decided, scope, tenant, config, own=msg is not None, applies=self._applies
        )
        if not checks:
            return writes.rebuild() if writes.changed else result
        ds = yield RunChecks(checks)
        rest = ds[1:] if msg is not None else ds
        replaced = lc.settle_writes(writes, others, rest, self.guard, self._decided, scope)
        self._raise_if_blocking(lc.Outcome(list(replaced.values()), decisions=list(rest)))
        if msg is None:
            return writes.rebuild(replaced=replaced)
        d = ds[0]
        if d.action is Action.ESCALATE and self.escalate and lc.can_interrupt():
            if self.on_block == "error":
                raise GuardBlocked(d)
            if msg.id is None:  # the placeholder and a restored original share one id
                msg = msg.model_copy(update={"id": str(uuid4())})
            pending = self.guard.messages_of(d).review_pending_tool
            placeholder = msg.model_copy(update={"content": pending, "artifact": None})
            bind = lc.held_bind(config, tenant, msg.tool_call_id)
            record = lc.seal(msg, self.guard, bind=bind, decision=d.to_dict())
            self._decided.add(placeholder, scope)
            self.guard.record_hold(d)
            held = {self.held_tools_key: {msg.tool_call_id: record}}
            return writes.rebuild(placeholder, replaced, held)
        outcome = lc.apply_tool_result(msg, d, guard=self.guard, escalate=False)
        self._raise_if_blocking(outcome)
        new = outcome.messages[0] if outcome.messages else msg
        assert isinstance(new, ToolMessage)
        self._decided.add(new, scope)
        if new is msg and not replaced and not writes.changed:
            return result
        return writes.rebuild(new, replaced)

    def _settle_held_tools(
        self, msgs: Sequence[BaseMessage], held: Mapping[str, Any], tenant: str | None, config: Any
    ) -> list[BaseMessage]:
        """Held tool results, before the model may read them: a reviewer decides each (an
        interrupt per result); if a new user turn came first, they stay withheld (audited).
        Returns the messages that take the placeholders' places."""
        last_ai = max((i for i, m in enumerate(msgs) if isinstance(m, AIMessage)), default=-1)
        abandoned = any(isinstance(m, HumanMessage) for m in msgs[last_ai + 1 :])
        out: list[BaseMessage] = []
        for m in msgs:
            if not isinstance(m, ToolMessage) or m.tool_call_id not in held:
                continue
            bind = lc.held_bind(config, tenant, m.tool_call_id)
            found = lc.read_held(held[m.tool_call_id], self.guard, bind=bind)
            if found is None:  # a damaged or foreign record: the result stays withheld
                log.error("a tool result held for review could not be opened; it stays withheld")
                out.append(m.model_copy(update={"content": self._refusal(None), "status": "error"}))
            elif abandoned:
                out.append(lc.withhold(m, found[1], self.guard))
            else:  # on_block="error" never holds, so nothing here raises
                out.append(lc.review_held_tool(m, *found, self.guard, escalate=True))
        return out

    # -- one model call, checked ----------------------------------------------------------------

    def _flow(self, request: ModelRequest) -> _Flow:
        config = lc.run_config()
        tenant = resolve_tenant(
            self.tenant, getattr(request.runtime, "context", None), config, self.tenant_key
        )
        state: Mapping[str, Any] = request.state or {}
        held_tools = state.get(self.held_tools_key) or {}
        settled: list[BaseMessage] = []
        if held_tools:
            settled = self._settle_held_tools(request.messages, held_tools, tenant, config)
            self._decided.add_all(settled, self.guard.scope_of(tenant))
            by_id = {m.id: m for m in settled}
            request = request.override(messages=[by_id.get(m.id, m) for m in request.messages])  # type: ignore[misc]
        result = yield from self._flow_after_tools(request, tenant, config)
        if settled:
            result = _with_updates(settled, result)
        if held_tools:  # settled: the held originals go
            result = _with_command(result, {self.held_tools_key: None})
        return result

    def _flow_after_tools(self, request: ModelRequest, tenant: str | None, config: Any) -> _Flow:
        state: Mapping[str, Any] = request.state or {}
        record = state.get(self.review_key)
        if record is None:
            return (yield from self._checked_call(request, tenant, config))
        msgs = request.messages
        if isinstance(record, Mapping) and record.get("kind") == "input":
            return (yield from self._held_input(request, record, tenant, config))
        held = _read_record(record, self.guard, tenant, config)
        if held is not None and msgs and msgs[-1].id == held.review_id:
            return self._answer_review(held)
        if held is None:
            log.error("a response held for review could not be read; it stays withheld")
        else:  # a new turn arrived instead of the review's answer
            log.warning(
                "a response held for review (message %s) was not reviewed; it stays withheld",
                held.anchor,
            )
        # The placeholder becomes the refusal, its pseudo-call goes, the review is dropped.
        anchor, review_id = _record_ids(record, msgs)
        closed = AIMessage(id=anchor, content=self._refusal(held))
        self._decided.add(closed, self.guard.scope_of(tenant))
        placed = anchor is not None and any(m.id == anchor for m in msgs)
        kept = [
            closed if placed and m.id == anchor else m
            for m in msgs
            if review_id is None or m.id != review_id
        ]
        result = yield from self._checked_call(request.override(messages=kept), tenant, config)
        updates: list[BaseMessage] = [closed] if placed else []
        return _with_command(
            _with_updates(updates, result),
            {"messages": [RemoveMessage(id=review_id)] if review_id else [], self.review_key: None},
        )

    def _held_input(
        self,
        request: ModelRequest,
        record: Mapping[str, Any],
        tenant: str | None,
        config: Any,
    ) -> _Flow:
        """A user turn held for review: ask the reviewer (on the way back from the hold), or,
        when a new turn came instead, keep it withheld. Approval restores it and the model is
        called with it; rejection ends the turn with the refusal."""
        msgs = request.messages
        anchor, review_id = record.get("anchor"), record.get("review_id")
        bind = lc.held_bind(config, tenant, anchor if isinstance(anchor, str) else None)
        found = lc.read_held(record.get("sealed"), self.guard, bind=bind)
        original: HumanMessage | None = None
        d: Decision | None = None
        if found is not None and isinstance(found[0], HumanMessage):
            original, d = found[0], found[1]
        if original is None:
            log.error("a user turn held for review could not be read; it stays withheld")
        resumed = original is not None and msgs and msgs[-1].id == review_id
        texts = self.guard.messages_of(d, tenant)
        action = Action.BLOCK
        if resumed:
            assert d is not None and original is not None
            outcome = lc.apply_input(original, d, guard=self.guard, escalate=True)
            self._raise_if_blocking(outcome)
            action = Action.BLOCK if outcome.end else Action.ALLOW
        elif d is not None:
            log.warning("a user turn held for review was not reviewed; it stays withheld")
            self.guard.record_override(d, Action.BLOCK, reason=lc.ABANDONED)
        gone = [RemoveMessage(id=i) for i in (anchor, review_id) if isinstance(i, str)]
        clear = {"messages": gone, self.review_key: None}
        drop = {anchor, review_id}
        if action is Action.ALLOW and original is not None:
            kept = [original if m.id == original.id else m for m in msgs if m.id not in drop]
            self._decided.add(original, self.guard.scope_of(tenant))  # a person approved it
            result = yield from self._checked_call(
                request.override(messages=kept), tenant, config, skip_input=True
            )
            return _with_command(_with_updates([original], result), clear)
        # withheld: the turn keeps the redaction note in the history, the turn is refused
        input_id = record.get("input_id")
        redacted: list[BaseMessage] = [
            m.model_copy(update={"content": texts.redaction})
            for m in msgs
            if isinstance(m, HumanMessage) and m.id == input_id
        ]
        self._decided.add_all(redacted, self.guard.scope_of(tenant))
        by_id = {m.id: m for m in redacted}
        remaining: list[Any] = [by_id.get(m.id, m) for m in msgs if m.id not in drop]
        if resumed:  # rejected: the turn ends with the refusal, the model is not called
            refusal = AIMessage(content=texts.refusal)
            return _with_command(ModelResponse(result=[*redacted, refusal]), clear)
        result = yield from self._checked_call(request.override(messages=remaining), tenant, config)
        return _with_command(_with_updates(redacted, result), clear)

    def _hold_input(
        self,
        human: HumanMessage,
        d: Decision,
        updates: list[BaseMessage],
        bind: tuple[str | None, Any],
    ) -> Any:
        """Keep an escalated user turn out of the conversation until a person answers: a
        placeholder takes its id, the original waits sealed in the private review key, and
        the turn comes straight back to the model step for the review (as a held response
        does). A new turn instead of the answer leaves it withheld."""
        pending = self.guard.messages_of(d).review_pending_input
        anchor = str(uuid4())
        review_id = f"{anchor}-review"
        text = lc.preview(lc.text_of(human), lc.shown(d, self.guard))
        requests = [{"name": "user_message", "args": {"text": text}}]
        record = {
            "kind": "input",
            "anchor": anchor,
            "review_id": review_id,
            "input_id": human.id,
            "sealed": lc.seal(
                human,
                self.guard,
                bind=lc.held_bind(bind[1], bind[0], anchor),
                decision=d.to_dict(),
                requests=requests,
            ),
        }
        call = {"name": REVIEW_TOOL, "args": {}, "id": review_id, "type": "tool_call"}
        placeholder = human.model_copy(update={"content": pending})
        ai = AIMessage(id=anchor, content=pending, tool_calls=[call])
        waiting = ToolMessage(
            id=review_id, tool_call_id=review_id, name=REVIEW_TOOL, content=pending
        )
        self._decided.add_all([*updates, placeholder, ai, waiting], self.guard.scope_of(bind[0]))
        self.guard.record_hold(d)
        return ExtendedModelResponse(
            model_response=ModelResponse(result=[*updates, placeholder, ai, waiting]),
            command=Command(update={self.review_key: record}),
        )

    def _checked_call(
        self,
        request: ModelRequest,
        tenant: str | None,
        config: Any,
        *,
        skip_input: bool = False,
    ) -> _Flow:
        msgs = request.messages
        scope = self.guard.scope_of(tenant)
        updates: list[BaseMessage] = []
        found = lc.find_input(msgs) if self.apply_to_input and not skip_input else None
        # Tool results the model has not seen and the tool boundary did not decide (results a
        # caller put in the input, or tools run outside this middleware).
        current = lc.find_tool_results(msgs)
        tools = (
            [m for m in current if not self._decided.contains(m, scope)]
            if self.apply_to_tool_results
            else []
        )
        # Every other message this guard has not decided: history a caller sent.
        skip = {i for i, m in enumerate(msgs) if any(m is t for t in current)}
        if found is not None:
            skip.add(found[0])
        history = [
            h
            for h in lc.find_history(msgs, self._decided, scope, tenant, config, skip=skip)
            if self._applies(h.check.kwargs["surface"])
        ]
        checks = [Check(m.content, lc.tool_check_args(m, tenant, config)) for m in tools]
        checks += [h.check for h in history]
        if found is not None:
            kwargs = lc.check_args(Surface.INPUT, tenant, config, found[1].id)
            checks.append(Check(found[1].content, kwargs))
        spec: Any = None
        if checks:
            if self.guard.policies.get_or_default(tenant).policy.speculative:
                # the model answers while the checks run; its tokens are shown to no stream
                # consumer, and its answer is used only if the checks leave the request as
                # it is
                ds, spec = yield Speculate(checks, request)
            else:
                ds = yield RunChecks(checks)
            early, updates = self._apply_checks(
                request, (tenant, config, scope), found, tools, history, ds
            )
            if early is not None:
                self._drop(spec, ds)
                return early
        if updates:
            by_id = {m.id: m for m in updates}
            request = request.override(messages=[by_id.get(m.id, m) for m in msgs])  # type: ignore[misc]
        # Everything the model is now sent has been decided.
        self._decided.add_all(request.messages, scope)
        streamed = self.apply_to_output and lc.streaming_wanted(request.model)
        if spec is not None and not updates:  # the speculative call saw just this request
            if isinstance(spec, BaseException):
                raise spec
            response = spec
        elif streamed and not self.hold_output:
            self._drop(spec, checks and ds)
            response = yield from self._streamed_call(request, tenant, config)
            response = yield from self._checked_rest(response, tenant, config)
            return _with_updates(updates, self._remember(response, scope))
        else:
            self._drop(spec, checks and ds)
            response = yield CallModel(request, quiet=self.apply_to_output and self.hold_output)
        if self.apply_to_output:
            response = yield from self._checked_response(
                request, response, tenant, config, quiet=streamed
            )
            response = yield from self._checked_rest(response, tenant, config)
            response = self._remember(response, scope)
        return _with_updates(updates, response)

    def _checked_rest(self, response: Any, tenant: str | None, config: Any) -> _Flow:
        """Every other message the model step returns (a middleware inside this one may
        return more than the model's answer), decided as history is, beside the response;
        the results of the response's own calls (structured output) were decided with it."""
        if not isinstance(response, ModelResponse) or len(response.result) < 2:
            return response
        msgs, idx = _ai_of(response)
        writes = lc.message_writes(msgs, idx)
        ai = writes.own
        calls = {c["id"] for c in ai.tool_calls} if isinstance(ai, AIMessage) else set()
        scope = self.guard.scope_of(tenant)
        _, items = lc.writes_checks(
            writes, self._decided, scope, tenant, config, own=False, applies=self._applies
        )
        items = [
            h
            for h in items
            if not (isinstance(h.message, ToolMessage) and h.message.tool_call_id in calls)
        ]
        replaced: dict[int, BaseMessage] = {}
        if items:
            ds = yield RunChecks([h.check for h in items])
            replaced = lc.settle_writes(writes, items, ds, self.guard, self._decided, scope)
            self._raise_if_blocking(lc.Outcome(list(replaced.values()), decisions=list(ds)))
        result = writes.rebuild(replaced=replaced)
        return ModelResponse(result=result, structured_response=response.structured_response)

    def _streamed_call(self, request: ModelRequest, tenant: str | None, config: Any) -> _Flow:
        """The model's answer moderated as it streams (:mod:`guard_plugin.streams`): shown
        window by window as each passes; the decided message ends the stream and is what the
        state gets, keeping what was shown in front of a refusal."""
        streamer, response = yield StreamModel(request, tenant)
        rc = _check_of(request, response)
        message = rc.message if rc is not None else None
        check = lc.check_args(Surface.RESPONSE, tenant, config, message.id if message else None)
        d = yield FinishStream(streamer, message, list(rc.inputs) if rc else [], check)
        if rc is not None and d is not None:
            response = yield from self._checked_response(
                request, response, tenant, config, decided=d, shown=streamer.shown
            )
            original = rc.message
            response = _map_ai(response, lambda m: lc.shown_first(m, streamer.shown, original))
        yield CloseStream(streamer, _final_ai(response))
        return response

    def _apply_checks(
        self,
        request: ModelRequest,
        run: tuple[str | None, Any, str],
        found: tuple[int, HumanMessage] | None,
        tools: list[ToolMessage],
        history: list[lc.HistoryItem],
        ds: list[Decision],
    ) -> tuple[Any, list[BaseMessage]]:
        """The checks' decisions applied: the message updates, and the model step's result
        where the turn ends here (refused, or held for review) instead of calling the model."""
        tenant, config, scope = run
        updates: list[BaseMessage] = []
        for m, d in zip(tools, ds, strict=False):
            outcome = lc.apply_tool_result(m, d, guard=self.guard, escalate=self.escalate)
            self._raise_if_blocking(outcome)
            updates += outcome.messages
        past = ds[len(tools) : len(tools) + len(history)]
        replaced, refused = lc.apply_history(history, past, self.guard)
        self._raise_if_blocking(lc.Outcome(replaced, decisions=list(past)))
        updates += replaced
        if found is not None:
            d_in = ds[-1]
            if (
                d_in.action is Action.ESCALATE
                and self.escalate
                and self.on_block != "error"
                and _can_hold_turn(request)
                and not refused
            ):
                return self._hold_input(found[1], d_in, updates, (tenant, config)), updates
            outcome = lc.apply_input(found[1], d_in, guard=self.guard, escalate=self.escalate)
            self._raise_if_blocking(outcome)
            if outcome.end:  # refused: the model is not called
                self._decided.add_all([*updates, *outcome.messages], scope)
                return _with_updates(updates, ModelResponse(result=outcome.messages)), updates
            updates += outcome.messages
        if refused:  # an unsafe user turn in the history: the turn is refused
            refusal = AIMessage(id=str(uuid4()), content=self._refusal(None, tenant))
            self._decided.add_all([*updates, refusal], scope)
            return _with_updates(updates, ModelResponse(result=[refusal])), updates
        return None, updates

    def _drop(self, spec: Any, ds: Any) -> None:
        """A speculative answer the checks did not let through: it goes nowhere, and the
        audit says so, with the tokens it cost where the model reported them."""
        if spec is None:
            return
        msgs, idx = _ai_of(spec) if not isinstance(spec, BaseException) else ([], None)
        lc.record_dropped(self.guard, list(ds or ()), msgs[idx] if idx is not None else None)

    def _remember(self, response: Any, scope: str) -> Any:
        """A decided response, remembered (with an id, so the next call knows it) as decided."""
        if not isinstance(response, (ModelResponse, AIMessage)):
            return response  # held for review: the placeholder is not the response
        msgs, _ = _ai_of(response)
        named = [
            m.model_copy(update={"id": str(uuid4())})
            if isinstance(m, AIMessage) and not m.id
            else m
            for m in msgs
        ]
        self._decided.add_all(named, scope)
        if isinstance(response, AIMessage):
            return named[0]
        return ModelResponse(result=named, structured_response=response.structured_response)

    def _applies(self, surface: Surface) -> bool:
        return {
            Surface.INPUT: self.apply_to_input,
            Surface.TOOL: self.apply_to_tool_results,
            Surface.RESPONSE: self.apply_to_output,
        }[Surface(surface)]

    def _checked_response(
        self,
        request: ModelRequest,
        response: Any,
        tenant: str | None,
        config: Any,
        *,
        decided: Decision | None = None,
        shown: str = "",
        quiet: bool = False,
    ) -> _Flow:
        """Decide the response (or apply ``decided``, a streamed response's decision) and
        apply the decision; a regenerated answer (never after text was shown) is called
        ``quiet`` when the run streams."""
        rc = _check_of(request, response)
        if rc is None:
            return response
        kwargs = lc.check_args(Surface.RESPONSE, tenant, config, rc.message.id)
        if decided is not None:
            d = decided
        else:
            (d,) = yield RunChecks([Check(rc.inputs, kwargs, inputs=True)])
        if d.action is Action.REWRITE and self.regenerate_on_rewrite and not shown.strip():
            quiet = quiet or decided is not None
            response = yield CallModel(self._regenerate_request(request), quiet=quiet)
            rc = _check_of(request, response)
            if rc is None:
                return response
            kwargs["request_id"] = lc.check_id(config, rc.message.id, Surface.RESPONSE)
            (d,) = yield RunChecks([Check(rc.inputs, kwargs, inputs=True)])
            if d.action is Action.REWRITE:  # one regeneration only: still unsafe is a block
                self.guard.record_override(
                    d, Action.BLOCK, reason="still to be rewritten after one regeneration"
                )
                d = replace(d, action=Action.BLOCK)
            # an escalation after regeneration goes to a person like any other
        if d.action is Action.ESCALATE and self.escalate and _can_hold(request, response):
            return self._hold(rc, d, lc.held_bind(config, tenant, rc.message.id))
        outcome = lc.apply_response(rc, d, guard=self.guard, escalate=False)
        self._raise_if_blocking(outcome)
        if not outcome.messages:
            return response
        new = outcome.messages[0]
        assert isinstance(new, AIMessage)
        return _replace_ai(response, new)

    # -- review of a held response --------------------------------------------------------------

    def _hold(self, rc: lc.ResponseCheck, d: Decision, bind: dict[str, Any]) -> Any:
        """Keep the response out of the conversation and come straight back for the review.

        The placeholder makes one answered call to a ``content_safety_review`` pseudo-tool:
        ``create_agent`` routes a turn whose calls are all answered back to the model step,
        whatever other middleware sits in between, and that is where the review happens."""
        ai = rc.message if rc.message.id else rc.message.model_copy(update={"id": str(uuid4())})
        bind = {**bind, "ref": ai.id}
        pending = self.guard.messages_of(d).review_pending
        review_id = f"{ai.id}-review"
        record = {
            "anchor": ai.id,
            "review_id": review_id,
            "sealed": lc.seal(
                ai,
                self.guard,
                bind=bind,
                decision=d.to_dict(),
                requests=lc.review_requests(ai, d, self.guard),
            ),
        }
        call = {"name": REVIEW_TOOL, "args": {}, "id": review_id, "type": "tool_call"}
        placeholder = AIMessage(id=ai.id, content=pending, tool_calls=[call])
        waiting = ToolMessage(
            id=review_id, tool_call_id=review_id, name=REVIEW_TOOL, content=pending
        )
        self._decided.add_all([placeholder, waiting], self.guard.scope_of(bind["tenant"]))
        self.guard.record_hold(d)
        return ExtendedModelResponse(
            model_response=ModelResponse(result=[placeholder, waiting]),
            command=Command(update={self.review_key: record}),
        )

    def _answer_review(self, held: _Held) -> Any:
        """Back at the model step with a held response: ask (or, on resume, hear) the reviewer
        before anything else; the answer takes the placeholder's place."""
        resume = lc.interrupt(lc.review_payload(held.decision, Surface.RESPONSE, held.requests))
        outcome = lc.answer_review(
            held.message, held.requests, resume, held.decision, self.guard, answer_calls=True
        )
        self._raise_if_blocking(outcome)
        final = outcome.messages or [held.message]
        # the reviewed response and the reviewer's answers to calls (a person's words, not tool
        # output) are decided
        self._decided.add_all(final, self.guard.scope_of(held.decision.tenant))
        update = {"messages": [RemoveMessage(id=held.review_id)], self.review_key: None}
        return ExtendedModelResponse(
            model_response=ModelResponse(result=list(final)), command=Command(update=update)
        )

    def _refusal(self, held: _Held | None, tenant: str | None = None) -> str:
        return self.guard.messages_of(held.decision if held is not None else None, tenant).refusal

    # -- helpers --------------------------------------------------------------------------------

    def _raise_if_blocking(self, outcome: lc.Outcome) -> None:
        """``on_block="error"``: a decision that changes the conversation raises instead."""
        if self.on_block == "error" and outcome.messages:
            for d in outcome.decisions:
                if d.action in (Action.BLOCK, Action.ESCALATE):
                    raise GuardBlocked(d)

    def _regenerate_request(self, request: ModelRequest) -> ModelRequest:
        base = request.system_message.content if request.system_message else ""
        text = f"{base}\n\n{SAFETY_INSTRUCTION}" if base else SAFETY_INSTRUCTION
        return request.override(system_message=SystemMessage(content=text))


@dataclass(frozen=True)
class _Held:
    """A response held for review, as read back from the state."""

    anchor: str
    review_id: str
    message: AIMessage
    decision: Decision
    requests: list[dict[str, Any]]


def _read_record(record: Any, guard: Guard, tenant: str | None, config: Any) -> _Held | None:
    """The held review in the state, or None when it cannot be opened (fail closed: the caller
    keeps the response withheld)."""
    try:
        bind = lc.held_bind(config, tenant, str(record["anchor"]))
        sealed = lc.unseal(record["sealed"], guard, bind=bind)
        held = _Held(
            anchor=str(record["anchor"]),
            review_id=str(record["review_id"]),
            message=sealed["message"],
            decision=Decision.from_dict(sealed["decision"]),
            requests=[dict(r) for r in sealed["requests"]],
        )
    except Exception:  # noqa: BLE001 (an unreadable record is withheld)
        return None
    if not isinstance(held.message, AIMessage) or not all("part" in r for r in held.requests):
        return None
    return held


def _record_ids(record: Any, messages: Sequence[BaseMessage]) -> tuple[str | None, str | None]:
    """The placeholder's id and its pseudo-call's id: from the record, or, when the record
    cannot tell, from the last placeholder in the conversation."""
    if isinstance(record, Mapping):
        anchor, review_id = record.get("anchor"), record.get("review_id")
        if isinstance(anchor, str) and isinstance(review_id, str):
            return anchor, review_id
    for m in reversed(messages):
        if isinstance(m, AIMessage) and [c["name"] for c in m.tool_calls] == [REVIEW_TOOL]:
            return m.id, m.tool_calls[0]["id"]
    return None, None


def _can_hold_turn(request: ModelRequest) -> bool:
    """Whether the run can come back to the model step for a review: a checkpointer, and
    tools (``create_agent`` builds the edge back only then)."""
    return (
        ExtendedModelResponse is not None
        and lc.can_interrupt()
        and any(not isinstance(t, dict) for t in request.tools)
    )


def _can_hold(request: ModelRequest, response: Any) -> bool:
    """Whether a response can wait for review: the run has a checkpointer, the agent has tools
    (only then does ``create_agent`` build the edge back to the model step), and the response
    carries no structured output (which cannot wait in the checkpoint)."""
    return (
        ExtendedModelResponse is not None
        and lc.can_interrupt()
        and any(not isinstance(t, dict) for t in request.tools)
        and getattr(response, "structured_response", None) is None
    )


def _quietly(model: Callable[[Any], Any], request: ModelRequest) -> Any:
    """Call the model with its tokens shown to no stream consumer."""
    with lc.quiet():
        return model(request)


def _stopped_or(
    model: Callable[[Any], Any], request: ModelRequest, streamer: lc.ResponseStreamer
) -> Any:
    """The model's response, or, when a check stopped its stream, what it said until then."""
    try:
        return model(request)
    except lc.StreamStopped:
        return ModelResponse(result=[streamer.partial()])


def _final_ai(result: Any) -> AIMessage | None:
    """The assistant message a model step's result ends with."""
    if ExtendedModelResponse is not None and isinstance(result, ExtendedModelResponse):
        result = result.model_response
    msgs, idx = _ai_of(result)
    m = msgs[idx] if idx is not None else None
    return m if isinstance(m, AIMessage) else None


def _map_ai(result: Any, fn: Callable[[AIMessage], AIMessage]) -> Any:
    """The result with its assistant message passed through ``fn``."""
    if ExtendedModelResponse is not None and isinstance(result, ExtendedModelResponse):
        inner = _map_ai(result.model_response, fn)
        return ExtendedModelResponse(model_response=inner, command=result.command)
    msgs, idx = _ai_of(result)
    if idx is None:
        return result
    old = msgs[idx]
    assert isinstance(old, AIMessage)
    new = fn(old)
    if new is old:
        return result
    if isinstance(result, ModelResponse):
        msgs[idx] = new
        return ModelResponse(result=msgs, structured_response=result.structured_response)
    return new


def _ai_of(response: Any) -> tuple[list[BaseMessage], int | None]:
    msgs = list(response.result) if isinstance(response, ModelResponse) else [response]
    idx = next((i for i in range(len(msgs) - 1, -1, -1) if isinstance(msgs[i], AIMessage)), None)
    return msgs, idx


def _check_of(request: ModelRequest, response: Any) -> lc.ResponseCheck | None:
    msgs, idx = _ai_of(response)
    return lc.find_response([*request.messages, msgs[idx]]) if idx is not None else None


def _replace_ai(response: Any, new: AIMessage) -> Any:
    """The response with its assistant message replaced; results of dropped calls (structured
    output tools) go too, and with them the structured response, which also goes when the
    text changed (a provider's structured output is parsed from the text)."""
    msgs, idx = _ai_of(response)
    if idx is None:  # pragma: no cover - only called after a response check found the message
        return response
    old = msgs[idx]
    msgs[idx] = new
    if not isinstance(response, ModelResponse):
        return new
    structured = response.structured_response if new.content == old.content else None
    kept = {c["id"] for c in new.tool_calls}
    dropped = {c["id"] for c in getattr(old, "tool_calls", [])} - kept
    if dropped:
        before = len(msgs)
        msgs = [m for m in msgs if not (isinstance(m, ToolMessage) and m.tool_call_id in dropped)]
        if len(msgs) != before:
            structured = None
    return ModelResponse(result=msgs, structured_response=structured)


def _with_updates(updates: list[BaseMessage], result: Any) -> Any:
    """The model step's result with the replaced input / tool messages written first (same ids,
    so the state's copies are replaced in place)."""
    if not updates:
        return result
    if ExtendedModelResponse is not None and isinstance(result, ExtendedModelResponse):
        inner = _with_updates(updates, result.model_response)
        return ExtendedModelResponse(model_response=inner, command=result.command)
    if isinstance(result, ModelResponse):
        return ModelResponse(
            result=[*updates, *result.result], structured_response=result.structured_response
        )
    return ModelResponse(result=[*updates, result])


def _with_command(result: Any, update: dict[str, Any]) -> Any:
    """Add a state update to the model step's result; the result's own update wins, and
    message updates from both are kept (``update``'s first)."""
    if isinstance(result, ExtendedModelResponse):
        own = dict(result.command.update or {}) if result.command is not None else {}
        merged = {**update, **own}
        if "messages" in update and "messages" in own:
            merged["messages"] = [*update["messages"], *own["messages"]]
        return ExtendedModelResponse(
            model_response=result.model_response, command=Command(update=merged)
        )
    inner = result if isinstance(result, ModelResponse) else ModelResponse(result=[result])
    return ExtendedModelResponse(model_response=inner, command=Command(update=update))
