"""``guard_runnable``: an LCEL guard, ``guard_in | chain | guard_out``.

On the response surface it also streams: ``(prompt | model | guard_out).stream(...)`` yields
the model's text as each window passes its check (:mod:`guard_plugin.streams`, the tenant's
``streaming`` policy); a stopped stream ends with a chunk carrying the tenant's refusal, and
tool-call chunks come out only after their decision. ``invoke`` checks the whole value and
raises :class:`~guard_plugin.GuardBlocked` as before. In ``astream_events`` the guard's own
``on_chain_stream`` events (name ``guard_plugin[response]``) carry the checked text; the
model's ``on_chat_model_stream`` events are the model's, sent before the guard sees them:
read the guard's (``include_names=["guard_plugin[response]"]``), or put
:func:`guarded_model` in the model's place, which hides the model's own token events."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    message_chunk_to_message,
)
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda

from guard_plugin import lc_messages as lc
from guard_plugin.check import Guard, as_guard
from guard_plugin.errors import GuardBlocked
from guard_plugin.policy import resolve_tenant
from guard_plugin.streams import AsyncStreamModerator, StreamModerator
from guard_plugin.types import Surface

__all__ = ["guard_runnable", "guarded_model"]


def _is_content(value: Any) -> bool:
    """Whether ``value`` is one piece of content (text, bytes, a content block or a list of
    them), checked whole so its images and documents are read as such."""
    if isinstance(value, (str, bytes, bytearray)):
        return True
    if isinstance(value, Mapping):
        return "type" in value
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, str) or (isinstance(v, Mapping) and "type" in v) for v in value)
    )


def _gathered(value: Any, messages: list[BaseMessage], contents: list[Any]) -> None:
    """Every message and every piece of content in an LCEL input, in order: messages (also
    inside prompt values, lists and dicts of prompt variables, at any depth) and content."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, BaseMessage):
        messages.append(value)
    elif hasattr(value, "to_messages") and callable(value.to_messages):  # prompt values
        messages.extend(value.to_messages())
    elif _is_content(value):
        contents.append(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            _gathered(v, messages, contents)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _gathered(v, messages, contents)
    elif isinstance(value, (int, float)):
        contents.append(str(value))
    else:  # anything else is checked as it is (what cannot be read is no verdict)
        contents.append(value)


def _content_of(value: Any) -> tuple[Any, str]:
    """The content to check in an LCEL value, and the context text (the response side)."""
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

    On the input and tool surfaces everything the input holds is checked: strings, content
    blocks, and every message of a message list, a prompt value, ``{"messages": [...]}`` or a
    dict of prompt variables (at any depth), each message by its role as a caller's history
    is (:mod:`guard_plugin.lc_messages.history`); the input passes only if every check allows
    it. On the response surface a message list's last message is checked with the preceding
    user turn as context. The tenant comes from ``tenant`` or
    ``config["configurable"]["tenant_id"]``.
    """
    r = _Guarded(as_guard(guard), Surface(surface), tenant)
    name = f"guard_plugin[{r.surface.value}]"
    if r.surface is not Surface.RESPONSE:
        return RunnableLambda(r.check, afunc=r.acheck, name=name)
    return RunnableGenerator(r.transform, r.atransform, name=name)


class _Guarded:
    """The steps of :func:`guard_runnable`."""

    def __init__(self, guard: Guard, surface: Surface, tenant: str | None) -> None:
        self.g, self.surface, self.tenant = guard, surface, tenant

    def _tenant(self, config: Any) -> str | None:
        return resolve_tenant(self.tenant, None, config, "tenant_id")

    def _checks(self, value: Any, config: Any) -> list[lc.Check]:
        tenant = self._tenant(config)
        if self.surface is Surface.RESPONSE:
            content, context = _content_of(value)
            kwargs = {"surface": self.surface, "tenant": tenant, "context": context}
            return [lc.Check(content, kwargs)]
        messages: list[BaseMessage] = []
        contents: list[Any] = []
        _gathered(value, messages, contents)
        checks = [lc.Check(c, {"surface": self.surface, "tenant": tenant}) for c in contents]
        scope = self.g.scope_of(tenant)
        history = lc.find_history(messages, lc.Decided(), scope, tenant, None)
        return checks + [h.check for h in history]

    @staticmethod
    def _passed(value: Any, ds: list[Any]) -> Any:
        refused = next((d for d in ds if not d.allowed), None)
        if refused is not None:
            raise GuardBlocked(refused)
        return value

    def check(self, value: Any, config: Any = None) -> Any:
        return self._passed(value, lc.run_checks(self.g, self._checks(value, config)))

    async def acheck(self, value: Any, config: Any = None) -> Any:
        return self._passed(value, await lc.arun_checks(self.g, self._checks(value, config)))

    def transform(self, values: Iterator[Any], config: Any = None) -> Iterator[Any]:
        s = _Stream(self.g, self._tenant(config), is_async=False)
        assert isinstance(s.mod, StreamModerator)
        try:
            for value in values:
                if not s.streamable(value):
                    yield self.check(value, config)
                    continue
                yield from s.out(s.push(value))
                if s.mod.stopped is not None:
                    yield from s.out(s.mod.ending())
                    return
            yield from s.out(s.mod.finish(s.extra()))
            yield from s.calls()
        finally:
            s.mod.close()

    async def atransform(
        self, values: AsyncIterator[Any], config: Any = None
    ) -> AsyncIterator[Any]:
        s = _Stream(self.g, self._tenant(config), is_async=True)
        assert isinstance(s.mod, AsyncStreamModerator)
        try:
            async for value in values:
                if not s.streamable(value):
                    yield await self.acheck(value, config)
                    continue
                for chunk in s.out(s.push(value)):
                    yield chunk
                if s.mod.stopped is not None:
                    for chunk in s.out(s.mod.ending()):
                        yield chunk
                    return
            for chunk in [*s.out(await s.mod.finish(s.extra())), *s.calls()]:
                yield chunk
        finally:
            await s.mod.close()


class _Stream:
    """One streamed response through the response guard: its text moderated, its tool-call
    chunks kept until the end."""

    def __init__(self, guard: Guard, tenant: str | None, *, is_async: bool) -> None:
        cls = AsyncStreamModerator if is_async else StreamModerator
        self.mod: StreamModerator | AsyncStreamModerator = cls(guard, tenant=tenant)
        self.message: AIMessageChunk | None = None
        self.strings = False

    @staticmethod
    def streamable(value: Any) -> bool:
        return isinstance(value, (str, AIMessageChunk))

    def push(self, value: Any) -> str:
        if isinstance(value, str):
            self.strings = True
            return self.mod.push(value)
        self.message = value if self.message is None else self.message + value
        return self.mod.push(value.text if isinstance(value.text, str) else "")

    def out(self, text: str) -> list[Any]:
        if not text:
            return []
        if self.strings or self.message is None:
            return [text]
        return [AIMessageChunk(content=text, id=self.message.id)]

    def extra(self) -> list[Any]:
        """The response's tool calls, checked with its last window."""
        m = self.message
        if m is None or not m.tool_calls:
            return []
        rc = lc.find_response([AIMessage(content="", id=m.id, tool_calls=m.tool_calls)])
        return list(rc.inputs) if rc is not None else []

    def calls(self) -> list[Any]:
        """The tool-call chunks, once their check passed."""
        m = self.message
        if m is None or not m.tool_call_chunks or self.mod.stopped is not None:
            return []
        return [AIMessageChunk(content="", id=m.id, tool_call_chunks=m.tool_call_chunks)]


def guarded_model(
    model: Any, guard: Guard | str, *, tenant: str | None = None
) -> Runnable[Any, Any]:
    """A chat model whose answer streams only as it passes its checks, for LCEL chains:
    ``prompt | guarded_model(model, guard)``.

    The model answers quietly (its own token events reach no consumer, ``astream_events``
    included); ``.stream`` / ``.astream`` yield the checked text window by window, and
    ``astream_events`` shows it as the model's chat-model events. A blocked answer ends with
    the tenant's refusal after what was shown; tool calls come out only after their
    decision; ``invoke`` returns the decided message. The user turn the answer is checked
    against is the last human message of the model's input."""
    gm = _GuardedModel(as_guard(guard), model, tenant)
    name = f"guarded[{getattr(model, 'name', None) or type(model).__name__}]"
    return RunnableGenerator(gm.transform, gm.atransform, name=name)


class _GuardedModel:
    def __init__(self, guard: Guard, model: Any, tenant: str | None) -> None:
        self.g, self.model, self.tenant = guard, model, tenant

    def _streamer(self, value: Any, config: Any, is_async: bool) -> lc.ResponseStreamer:
        return lc.ResponseStreamer(
            self.g,
            model=self.model,
            messages=self.model._convert_input(value).to_messages(),
            tenant=resolve_tenant(self.tenant, None, config, "tenant_id"),
            is_async=is_async,
        )

    @staticmethod
    def _answer(s: lc.ResponseStreamer, said: Any) -> tuple[AIMessage, Any]:
        """What the model said, as a message (what it said until a check stopped it), and
        its response check."""
        ai = s.partial() if s.mod.stopped is not None or said is None else said
        ai = message_chunk_to_message(ai) if isinstance(ai, AIMessageChunk) else ai
        assert isinstance(ai, AIMessage)
        return ai, lc.find_response([*s.messages, ai])

    def _decided(self, s: lc.ResponseStreamer, ai: AIMessage, rc: Any, d: Any) -> AIMessage:
        """The decided message: the answer, or what the decision leaves of it, keeping what
        was shown in front of a refusal."""
        if rc is None or d is None:
            return ai
        outcome = lc.apply_response(rc, d, guard=self.g, escalate=False)
        final = outcome.messages[0] if outcome.messages else ai
        assert isinstance(final, AIMessage)
        return lc.shown_first(final, s.shown, ai)

    def transform(self, values: Iterator[Any], config: Any = None) -> Iterator[Any]:
        value = _one(values)
        s = self._streamer(value, config, is_async=False)
        s.start()
        final, said, sent = None, None, 0
        try:
            with contextlib.suppress(lc.StreamStopped):
                for chunk in self.model.stream(value, lc.quiet_config(config)):
                    said = chunk if said is None else said + chunk
                    s.piece(chunk.text, chunk.id)
                    if len(s.shown) > sent:
                        yield AIMessageChunk(content=s.shown[sent:], id=s.id)
                        sent = len(s.shown)
            ai, rc = self._answer(s, said)
            d = s.decide(ai, rc.inputs if rc is not None else [])
            final = self._decided(s, ai, rc, d)
            yield from _completing(final, s.shown[:sent])
        finally:
            s.close(final)

    async def atransform(
        self, values: AsyncIterator[Any], config: Any = None
    ) -> AsyncIterator[Any]:
        value = None
        async for v in values:
            value = v if value is None else value + v
        s = self._streamer(value, config, is_async=True)
        await s.astart()
        final, said, sent = None, None, 0
        try:
            with contextlib.suppress(lc.StreamStopped):
                async for chunk in self.model.astream(value, lc.quiet_config(config)):
                    said = chunk if said is None else said + chunk
                    s.piece(chunk.text, chunk.id)
                    if len(s.shown) > sent:
                        yield AIMessageChunk(content=s.shown[sent:], id=s.id)
                        sent = len(s.shown)
            ai, rc = self._answer(s, said)
            d = await s.adecide(ai, rc.inputs if rc is not None else [])
            final = self._decided(s, ai, rc, d)
            for chunk in _completing(final, s.shown[:sent]):
                yield chunk
        finally:
            await s.aclose(final)


def _one(values: Iterator[Any]) -> Any:
    value = None
    for v in values:
        value = v if value is None else value + v
    return value


def _completing(final: AIMessage, yielded: str) -> list[AIMessageChunk]:
    """What completes the text already yielded into the decided message."""
    chunk = lc.completing_chunk(final, yielded)
    return [chunk] if chunk is not None else []
