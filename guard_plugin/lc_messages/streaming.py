"""A chat model's streamed answer, shown only as it passes its checks.

LangChain hands a model's tokens to every handler of the run (LangGraph's ``messages`` stream,
``astream_events``, a user's callback handler) as they are generated. To moderate them, the
model call runs *quiet*: with the run's callbacks replaced by tracers only, plus a capture
handler that feeds each piece to a :mod:`guard_plugin.streams` moderator. Text that passed is
then shown through a chat-model run of its own (a *release run*) under the run's callbacks,
so every consumer sees it as an ordinary token stream, with the message id of the final,
decided message (which the graph then writes to the state). Tool-call chunks are never
shown before their decision: they go out with the final message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    BaseCallbackHandler,
    BaseCallbackManager,
    CallbackManager,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult
from langchain_core.runnables.config import ensure_config, var_child_runnable_config
from langchain_core.tracers.base import AsyncBaseTracer, BaseTracer

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.lc_messages.base import last_index, text_of
from guard_plugin.media import FailedPart
from guard_plugin.prompting import SafetyInput
from guard_plugin.streams import AsyncStreamModerator, StreamModerator
from guard_plugin.types import TEXT, Surface

try:  # the marker LangChain reads to stream a model inside invoke()
    from langchain_core.tracers._streaming import _StreamingCallbackHandler
except ImportError:  # pragma: no cover
    _StreamingCallbackHandler = object  # type: ignore[assignment,misc]
try:
    from langchain_core.tracers._streaming import _V2StreamingCallbackHandler
except ImportError:  # pragma: no cover
    _V2StreamingCallbackHandler = _StreamingCallbackHandler  # type: ignore[assignment,misc]

__all__ = [
    "ResponseStreamer",
    "StreamStopped",
    "completing_chunk",
    "handlers_only",
    "keeps_quiet",
    "quiet",
    "quiet_config",
    "shown_first",
    "streaming_wanted",
]

log = logging.getLogger(__name__)

CUSTOM_TEXT = "guard_plugin.text"
CUSTOM_END = "guard_plugin.end"


class StreamStopped(Exception):
    """Raised into a model's stream when a check stopped it: the model is read no further."""


class _QuietStops(logging.Filter):
    """LangChain logs "Error in <handler>.<event> callback" before re-raising what a handler
    raises; a stopped stream is the policy working, not an error. Every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            len(args) == 3 and args[0] == "_Capture" and str(args[2]).startswith("StreamStopped(")
        )


logging.getLogger("langchain_core.callbacks.manager").addFilter(_QuietStops())


def _handlers(config: Any) -> list[BaseCallbackHandler]:
    cbs = (config or {}).get("callbacks")
    if isinstance(cbs, BaseCallbackManager):
        return list(cbs.handlers)
    return list(cbs or [])


def streaming_wanted(model: Any = None) -> bool:
    """Whether anyone streams this run's model tokens: a stream handler (LangGraph's
    ``messages`` mode, ``astream_events``) is attached, or the model streams on its own."""
    if getattr(model, "streaming", False) is True:
        return True
    return any(
        isinstance(h, (_StreamingCallbackHandler, _V2StreamingCallbackHandler))
        for h in _handlers(ensure_config())
    )


def keeps_quiet(h: BaseCallbackHandler) -> bool:
    """Tracers stay on a quiet model run (an operator's record); stream handlers and any
    other handler (which could show tokens) do not."""
    return isinstance(h, (BaseTracer, AsyncBaseTracer)) and not isinstance(
        h, (_StreamingCallbackHandler, _V2StreamingCallbackHandler)
    )


def quiet_config(config: Any = None, capture: BaseCallbackHandler | None = None) -> Any:
    """``config`` (default: the current one) with its callbacks reduced to tracers (plus
    ``capture``): a model called with it shows its tokens to no consumer."""
    quiet = handlers_only(config, keeps_quiet)
    if capture is not None:
        cbs = quiet["callbacks"]
        if isinstance(cbs, BaseCallbackManager):
            cbs.add_handler(capture, inherit=True)
        else:
            quiet["callbacks"] = [*cbs, capture]
    return quiet


def handlers_only(config: Any, keep: Callable[[BaseCallbackHandler], bool]) -> Any:
    """``config`` (default: the current one) with only the callback handlers ``keep``
    accepts."""
    config = ensure_config(config)
    cbs = config.get("callbacks")
    if isinstance(cbs, BaseCallbackManager):
        manager = cbs.copy()
        for h in list(manager.handlers) + list(manager.inheritable_handlers):
            if not keep(h):
                manager.remove_handler(h)
        return {**config, "callbacks": manager}
    return {**config, "callbacks": [h for h in (cbs or []) if keep(h)]}


@contextlib.contextmanager
def quiet(capture: BaseCallbackHandler | None = None) -> Iterator[None]:
    """Run what is inside with :func:`quiet_config`: a model called inside (with no config
    of its own) shows its tokens to no consumer."""
    token = var_child_runnable_config.set(quiet_config(None, capture))
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)


class _Capture(BaseCallbackHandler, _StreamingCallbackHandler):
    """Feeds the first chat-model run's text pieces to a streamer (and makes the model
    stream: LangChain streams inside ``invoke`` when a handler of this kind is attached)."""

    run_inline = True
    raise_error = True

    def __init__(self, streamer: ResponseStreamer) -> None:
        self.streamer = streamer
        self.run_id: Any = None

    def tap_output_iter(self, run_id: Any, output: Any) -> Any:
        return output

    def tap_output_aiter(self, run_id: Any, output: Any) -> Any:
        return output

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: Any, **kw: Any
    ) -> None:
        if self.run_id is None:
            self.run_id = run_id

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, run_id: Any, **kw: Any) -> None:
        if run_id != self.run_id:
            return
        msg = getattr(chunk, "message", None)
        text = chunk.text if chunk is not None else token
        self.streamer.piece(text if isinstance(text, str) else "", getattr(msg, "id", None))


class ResponseStreamer:
    """One streamed model answer: captured quietly, checked by window, shown as it passes.

    Sync: ``with streamer.capturing(): response = model(request)``, then :meth:`decide` and
    :meth:`close`; async: the same with :meth:`acapturing`, :meth:`adecide`, :meth:`aclose`.
    ``messages`` are what the model is sent: the answer is checked against the last user
    turn among them.
    """

    def __init__(
        self,
        guard: Guard,
        *,
        model: Any,
        messages: Sequence[BaseMessage],
        tenant: str | None,
        is_async: bool,
    ) -> None:
        self.guard = guard
        self.model = model
        self.tenant = tenant
        self.messages = list(messages)
        self.config = ensure_config()
        human = last_index(self.messages, HumanMessage)
        context = text_of(self.messages[human]) if human is not None else ""
        moderator = AsyncStreamModerator if is_async else StreamModerator
        self.mod: StreamModerator | AsyncStreamModerator = moderator(
            guard, context=context, tenant=tenant
        )
        self.id: str | None = None
        self.text: list[str] = []  # everything the model said
        self.shown = ""  # what consumers were shown
        self.run: Any = None
        self._releaser: asyncio.Task[None] | None = None
        self._ended = False
        self._writer = _writer()
        self._loop = _loop() if is_async else None

    # -- the model's side ----------------------------------------------------------------------

    def piece(self, text: str, message_id: str | None) -> None:
        if self.id is None and message_id:
            self.id = message_id
        self.text.append(text)
        if isinstance(self.mod, StreamModerator):
            out = self.mod.push(text)
            if out:
                self._emit(out)
        elif _loop() is self._loop:
            self._apush(text)
        else:  # a sync model inside an async run (in a worker thread)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._apush, text)
        if self.mod.stopped is not None:
            raise StreamStopped

    def _apush(self, text: str) -> None:
        assert isinstance(self.mod, AsyncStreamModerator)
        self.mod.feed(text)  # the releaser shows what passed
        self._kick()

    def _uncovered(
        self, message: AIMessage | None, inputs: Sequence[SafetyInput | FailedPart]
    ) -> bool:
        """Whether ``message`` is not the text that streamed through this streamer's checks
        (a retry or another model answered instead)."""
        return (
            message is not None
            and bool(inputs)
            and self.mod.stopped is None
            and text_of(message) != "".join(self.text)
        )

    def _check_args(self, check: Mapping[str, Any] | None) -> dict[str, Any]:
        return dict(check) if check else {"surface": Surface.RESPONSE, "tenant": self.tenant}

    def partial(self) -> AIMessage:
        """What the model said before a check stopped it."""
        return AIMessage(content="".join(self.text), id=self.id)

    # -- sync -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def capturing(self) -> Iterator[None]:
        """Start the release run; a model called inside streams into this streamer."""
        self.start()
        with quiet(_Capture(self)):
            yield

    def start(self) -> None:
        self.run = self._start()

    async def astart(self) -> None:
        self.run = await self._astart()

    def quiet_config(self, config: Any) -> Any:
        """``config`` for a model call that streams into this streamer (and to nobody else)."""
        return quiet_config(config, _Capture(self))

    def decide(
        self,
        message: AIMessage | None,
        inputs: Sequence[SafetyInput | FailedPart],
        check: Mapping[str, Any] | None = None,
    ) -> Decision | None:
        """The decision on the answer ``message`` (its response check's ``inputs``): wait for
        the window checks and check the rest with its tool calls; an answer that is not the
        text that streamed (a retry, or another model, answered) is checked whole, with
        ``check`` (the check's keyword arguments). None when there was nothing to check."""
        assert isinstance(self.mod, StreamModerator)
        out = self.mod.wait()
        if out:
            self._emit(out)
        self.mod.finish(_response_extra(inputs))  # the rest is shown from the final message
        if self._uncovered(message, inputs):
            return self.guard.check(list(inputs), **self._check_args(check))
        return self._decision()

    def close(self, final: AIMessage | None, error: BaseException | None = None) -> None:
        """Show the rest of ``final`` (the decided message) and end the release run."""
        if isinstance(self.mod, StreamModerator):
            self.mod.close()
        if self.run is None:
            return
        run, self.run = self.run, None
        if final is None:
            run.on_llm_error(error or StreamStopped("the stream ended without a message"))
            return
        for chunk in self._rest(final):
            self._write(chunk)
            run.on_llm_new_token(chunk.text, chunk=chunk)
        run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=final)]]))
        self._write_end(final)

    def _emit(self, out: str) -> None:
        self.shown += out
        chunk = self._chunk(out)
        self._write(chunk)
        if self.run is not None:
            self.run.on_llm_new_token(out, chunk=chunk)

    # -- async ------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def acapturing(self) -> Any:
        await self.astart()
        with quiet(_Capture(self)):
            yield

    async def adecide(
        self,
        message: AIMessage | None,
        inputs: Sequence[SafetyInput | FailedPart],
        check: Mapping[str, Any] | None = None,
    ) -> Decision | None:
        """The async twin of :meth:`decide`."""
        assert isinstance(self.mod, AsyncStreamModerator)
        task = self._releaser
        if task is not None:  # let it show what passed (it ends when no check is left)
            await asyncio.shield(task)
        self._ended = True
        out = await self.mod.wait()
        if out:
            await self._aemit(out)
        await self.mod.finish(_response_extra(inputs))
        if self._uncovered(message, inputs):
            return await self.guard.acheck(list(inputs), **self._check_args(check))
        return self._decision()

    async def aclose(self, final: AIMessage | None, error: BaseException | None = None) -> None:
        await self._stop_releaser()
        if isinstance(self.mod, AsyncStreamModerator):
            await self.mod.close()
        if self.run is None:
            return
        run, self.run = self.run, None
        if final is None:
            await run.on_llm_error(error or StreamStopped("the stream ended without a message"))
            return
        for chunk in self._rest(final):
            self._write(chunk)
            await run.on_llm_new_token(chunk.text, chunk=chunk)
        await run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=final)]]))
        self._write_end(final)

    def _kick(self) -> None:
        if self._releaser is None and not self._ended:
            self._releaser = asyncio.get_running_loop().create_task(self._release())

    async def _release(self) -> None:
        mod = self.mod
        assert isinstance(mod, AsyncStreamModerator)
        while not self._ended:
            out = await mod.released_more()
            if out:
                await self._aemit(out)
            elif mod.stopped is not None or not mod.checking:
                self._releaser = None
                return

    async def _stop_releaser(self) -> None:
        self._ended = True
        task, self._releaser = self._releaser, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _aemit(self, out: str) -> None:
        self.shown += out
        chunk = self._chunk(out)
        self._write(chunk)
        if self.run is not None:
            await self.run.on_llm_new_token(out, chunk=chunk)

    # -- shared -----------------------------------------------------------------------------------

    def _decision(self) -> Decision | None:
        ds = self.mod.decisions
        return self.mod.stopped or (ds[-1] if ds else None)

    def _chunk(self, text: str) -> ChatGenerationChunk:
        return ChatGenerationChunk(message=AIMessageChunk(content=text, id=self.id))

    def _rest(self, final: AIMessage) -> list[ChatGenerationChunk]:
        self.id = final.id or self.id
        msg = completing_chunk(final, self.shown)
        return [ChatGenerationChunk(message=msg)] if msg is not None else []

    def _write(self, chunk: ChatGenerationChunk) -> None:
        if self._writer is not None and chunk.text:
            self._writer({"type": CUSTOM_TEXT, "message_id": self.id, "text": chunk.text})

    def _write_end(self, final: AIMessage) -> None:
        if self._writer is not None:
            self._writer({"type": CUSTOM_END, "message_id": final.id, "text": text_of(final)})

    def _manager_args(self) -> tuple[dict[str, Any], dict[str, Any]]:
        m = self.model
        config = self.config
        ls: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            ls = dict(m._get_ls_params())
        configure = {
            "inheritable_callbacks": config.get("callbacks"),
            "local_callbacks": getattr(m, "callbacks", None),
            "verbose": bool(getattr(m, "verbose", False)),
            "inheritable_tags": config.get("tags"),
            "local_tags": getattr(m, "tags", None),
            "inheritable_metadata": {**(config.get("metadata") or {}), **ls},
            "local_metadata": getattr(m, "metadata", None),
        }
        serialized: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            serialized = dict(m._serialized)
        name = getattr(m, "name", None) or (type(m).__name__ if m is not None else "model")
        start = {"name": name, "batch_size": 1}
        return configure, {"serialized": serialized, **start}

    def _start(self) -> Any:
        configure, start = self._manager_args()
        manager = CallbackManager.configure(**configure)
        serialized = start.pop("serialized")
        (run,) = manager.on_chat_model_start(serialized, [self.messages], **start)
        return run

    async def _astart(self) -> Any:
        configure, start = self._manager_args()
        manager = AsyncCallbackManager.configure(**configure)
        serialized = start.pop("serialized")
        (run,) = await manager.on_chat_model_start(serialized, [self.messages], **start)
        return run


def completing_chunk(final: AIMessage, shown: str) -> AIMessageChunk | None:
    """The chunk that completes ``shown`` into ``final`` (the decided message): its text
    after the shown part, and its tool calls; None when nothing is left."""
    text = text_of(final)
    rest = text[len(shown) :] if text.startswith(shown) else text
    calls = [
        {
            "name": c["name"],
            "args": _json(c.get("args", {})),
            "id": c.get("id"),
            "index": i,
            "type": "tool_call_chunk",
        }
        for i, c in enumerate(final.tool_calls)
    ]
    if not rest and not calls:
        return None
    return AIMessageChunk(content=rest, id=final.id, tool_call_chunks=calls)


def shown_first(final: AIMessage, shown: str, original: AIMessage) -> AIMessage:
    """``final`` (the decided message) keeping what consumers were already shown: where the
    decision replaced the text, the shown part stays in front of the replacement, so the
    state and the stream agree (no late rewrite of shown text)."""
    text = text_of(final)
    if not shown.strip() or text == text_of(original) or text.startswith(shown):
        return final
    return final.model_copy(update={"content": f"{shown}\n\n{text}" if text else shown})


def _response_extra(
    inputs: Sequence[SafetyInput | FailedPart],
) -> list[SafetyInput | FailedPart]:
    """The inputs of a response check other than its text (its tool calls)."""
    return [i for i in inputs if i.part != TEXT]


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _writer() -> Any:
    try:
        from langgraph.config import get_stream_writer

        return get_stream_writer()
    except Exception:  # noqa: BLE001 (outside a graph run: no custom stream)
        return None


def _json(args: Any) -> str:
    import json

    return json.dumps(args, ensure_ascii=False, default=str)
