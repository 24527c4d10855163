"""``SafetyCallbackHandler``: stops any chain or runnable whose input, output or tool output
is not allowed. Callbacks cannot change what flows through a chain, so ``rewrite`` and
``escalate`` block too (after the ``escalation_handler``, if given, has had its say)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import LLMResult

from guard_plugin import lc_messages as lc
from guard_plugin.check import Guard, as_guard
from guard_plugin.decision import Decision
from guard_plugin.errors import GuardBlocked
from guard_plugin.streams import StreamModerator
from guard_plugin.types import Action, Surface

__all__ = ["EscalationHandler", "SafetyCallbackHandler"]

EscalationHandler = Callable[[Decision], bool]
"""Called for ``escalate`` where no interrupt is possible: True allows, False blocks."""


class _QuietBlocks(logging.Filter):
    """LangChain logs "Error in <handler>.<event> callback" before re-raising any exception a
    handler raises; for this handler's GuardBlocked that is the policy working, not an error,
    and the caller gets the exception anyway. Every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            len(args) == 3
            and args[0] == "SafetyCallbackHandler"
            and str(args[2]).startswith("GuardBlocked(")
        )


logging.getLogger("langchain_core.callbacks.manager").addFilter(_QuietBlocks())


class SafetyCallbackHandler(BaseCallbackHandler):
    """Stops a chain or runnable when its input, output or a tool's output is unsafe.

    Raises :class:`~guard_plugin.GuardBlocked` (``raise_error`` is on, so it propagates) from
    ``on_chat_model_start`` (the last user turn, new tool results, and every other message
    the model is sent that no guard of this :class:`~guard_plugin.Guard` decided, each by its
    role: a caller's earlier turns, assistant turns it wrote), ``on_llm_end`` (the response,
    with its tool calls; an allowed one is remembered as decided) and ``on_tool_end``.
    Callbacks cannot change what flows through a chain, so ``rewrite`` and ``escalate``
    block too; ``escalation_handler`` may approve an escalated decision first. Works in sync
    and async chains (LangChain runs sync handlers of async chains in a worker thread).

    Streaming: a callback sees tokens but cannot hold them back from other handlers. Give
    the handlers that show tokens to ``stream_to`` instead of to the chain: they receive
    ``on_llm_new_token`` only for text that passed its check (window by window, by the
    tenant's ``streaming`` policy); a window that is not allowed stops the model with
    :class:`~guard_plugin.GuardBlocked`, and they receive the refusal as the last token.
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
        stream_to: Sequence[BaseCallbackHandler] = (),
    ) -> None:
        self.guard = as_guard(guard)
        self.tenant = tenant
        self.check_inputs = check_inputs
        self.check_outputs = check_outputs
        self.check_tools = check_tools
        self.escalation_handler = escalation_handler
        self._context: dict[UUID, str] = {}
        self.decisions: list[Decision] = []
        self.stream_to = list(stream_to)
        self._streams: dict[UUID, StreamModerator] = {}
        #: messages this guard decided (shared with the other adapters of the same Guard)
        self._decided = lc.decided_results(self.guard)

    def _enforce(self, d: Decision) -> None:
        self.decisions.append(d)
        if d.allowed:
            return
        if (
            d.action is Action.ESCALATE
            and self.escalation_handler is not None
            and self.guard.ask_handler(d, self.escalation_handler)
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
        scope = self.guard.scope_of(self.tenant)
        for convo in messages:
            found = lc.find_input(convo)
            human = next((m for m in reversed(convo) if isinstance(m, HumanMessage)), None)
            self._context[run_id] = lc.text_of(human)
            current = lc.find_tool_results(convo)
            skip = {i for i, m in enumerate(convo) if any(m is t for t in current)}
            if self.check_inputs and found is not None:
                skip.add(found[0])
                self._decide(found[1], found[1].content, scope, surface=Surface.INPUT)
            if self.check_tools:
                for tm in current:
                    if not self._decided.contains(tm, scope):
                        self._decide(tm, tm.content, scope, **lc.tool_check_args(tm, self.tenant))
            # every other message the model is sent that no guard decided (earlier turns)
            for h in lc.find_history(convo, self._decided, scope, self.tenant, None, skip=skip):
                if self._checks(h.check.kwargs["surface"]):
                    self._enforce(h.check.run(self.guard))
                    self._decided.add(h.message, scope)

    def _decide(self, msg: BaseMessage, content: Any, scope: str, **kwargs: Any) -> None:
        kwargs.setdefault("tenant", self.tenant)
        self._enforce(self.guard.check_content(content, **kwargs))
        self._decided.add(msg, scope)

    def _checks(self, surface: Surface | str) -> bool:
        return {
            Surface.INPUT: self.check_inputs,
            Surface.TOOL: self.check_tools,
            Surface.RESPONSE: self.check_outputs,
        }[Surface(surface)]

    def on_llm_new_token(self, token: Any, *, run_id: UUID, chunk: Any = None, **kw: Any) -> None:
        if not self.stream_to or not self.check_outputs:
            return
        mod = self._streams.get(run_id)
        if mod is None:
            context = self._context.get(run_id, "")
            mod = self._streams[run_id] = StreamModerator(
                self.guard, context=context, tenant=self.tenant
            )
        text = chunk.text if chunk is not None else token
        self._forward(mod.push(text if isinstance(text, str) else ""), run_id)
        if mod.stopped is not None:
            self._streams.pop(run_id, None)
            self._forward(mod.ending(), run_id)
            mod.close()
            self.decisions.append(mod.stopped)
            raise GuardBlocked(mod.stopped)

    def _forward(self, text: str, run_id: UUID) -> None:
        if text:
            for h in self.stream_to:
                h.on_llm_new_token(text, run_id=run_id)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        context = self._context.pop(run_id, "")
        mod = self._streams.pop(run_id, None)
        if not self.check_outputs:
            return
        if mod is not None:  # what is left of the stream goes out once the whole passed
            held = mod.wait()
            mod.close()
            try:
                self._check_response(response, context)
            except GuardBlocked as blocked:
                refusal = self.guard.messages_of(blocked.decision, self.tenant).refusal
                self._forward(f"\n\n{refusal}" if mod.released else refusal, run_id)
                raise
            gens = response.generations[0] if response.generations else []
            full = gens[0].text if gens else ""
            self._forward(held + full[mod.released :], run_id)  # the whole passed
            return
        self._check_response(response, context)

    def _check_response(self, response: LLMResult, context: str) -> None:
        for gens in response.generations:
            for gen in gens:
                msg = getattr(gen, "message", None)
                ai = msg if isinstance(msg, AIMessage) else AIMessage(content=gen.text)
                rc = lc.find_response([HumanMessage(content=context), ai])
                if rc is not None:
                    self._enforce(
                        self.guard.check(rc.inputs, surface=Surface.RESPONSE, tenant=self.tenant)
                    )
                    self._decided.add(ai, self.guard.scope_of(self.tenant))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._context.pop(run_id, None)
        mod = self._streams.pop(run_id, None)
        if mod is not None:
            mod.close()

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
