"""Any stream of text pieces, moderated: ``for text in guard.stream(pieces, context=...)``.

The pieces may be strings or objects with a string ``text`` or ``content`` (a LangChain
message chunk, an OpenAI delta); what comes out is text that may be shown, in order, and, when
a check stops the stream, the tenant's refusal as its last piece. The source is read no
further after a stop and is closed when the consumer stops reading.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from guard_plugin.media import FailedPart
from guard_plugin.policy import Streaming
from guard_plugin.prompting import SafetyInput
from guard_plugin.streams.moderator import AsyncStreamModerator, StreamModerator

if TYPE_CHECKING:
    from guard_plugin.check import Guard
    from guard_plugin.decision import Decision

__all__ = ["AsyncModeratedStream", "ModeratedStream", "astream", "piece_text", "stream"]


def piece_text(piece: Any) -> str:
    """The text of one streamed piece."""
    if isinstance(piece, str):
        return piece
    for name in ("text", "content"):
        value = getattr(piece, name, None)
        if isinstance(value, str):
            return str(value)
        if callable(value):
            value = value()
        if isinstance(value, str):
            return value
    if isinstance(piece, dict) and isinstance(piece.get("content"), str):
        return str(piece["content"])
    raise TypeError(
        f"a stream piece must be text (a str, or an object with a str .text or .content), "
        f"not {type(piece).__name__}"
    )


class _Result:
    _mod: StreamModerator | AsyncStreamModerator | None = None

    @property
    def stopped(self) -> Decision | None:
        """The decision that stopped the stream, if one did."""
        return self._mod.stopped if self._mod is not None else None

    @property
    def decisions(self) -> list[Decision]:
        """Every check's decision, in order (after the stream was read)."""
        return self._mod.decisions if self._mod is not None else []


class ModeratedStream(_Result):
    """Iterate it for the text that may be shown; see :func:`stream`."""

    def __init__(self, guard: Guard, pieces: Iterable[Any], **options: Any) -> None:
        self._guard, self._pieces, self._options = guard, pieces, options
        self._extra: Sequence[SafetyInput | FailedPart] = options.pop("final_inputs", ())

    def __iter__(self) -> Iterator[str]:
        source = iter(self._pieces)
        mod = self._mod = StreamModerator(self._guard, **self._options)
        try:
            for piece in source:
                out = mod.push(piece_text(piece))
                if out:
                    yield out
                if mod.stopped is not None:
                    break
            else:
                out = mod.finish(self._extra)
                if out:
                    yield out
                return
            yield mod.ending()
        finally:
            mod.close()
            close = getattr(source, "close", None)
            if callable(close):
                close()


class AsyncModeratedStream(_Result):
    """Iterate it with ``async for`` for the text that may be shown; see :func:`astream`."""

    def __init__(
        self, guard: Guard, pieces: AsyncIterable[Any] | Iterable[Any], **options: Any
    ) -> None:
        self._guard, self._pieces, self._options = guard, pieces, options
        self._extra: Sequence[SafetyInput | FailedPart] = options.pop("final_inputs", ())

    async def __aiter__(self) -> AsyncIterator[str]:
        pump = _Pump(_aiter(self._pieces), AsyncStreamModerator(self._guard, **self._options))
        self._mod = pump.mod
        try:
            while (out := await pump.step(self._extra)) is not None:
                if out:
                    yield out
        finally:
            await pump.close()


class _Pump:
    """Reads the source and the moderator's releases together: text comes out as soon as
    its check passes, not only when the next piece arrives."""

    def __init__(self, source: AsyncIterator[Any], mod: AsyncStreamModerator) -> None:
        self.source, self.mod = source, mod
        self.nxt: asyncio.Future[Any] | None = asyncio.ensure_future(anext(source))
        self.rel: asyncio.Future[str] | None = None
        self.done = False

    async def step(self, extra: Sequence[SafetyInput | FailedPart]) -> str | None:
        """The next text to hand out ("" for none yet), or None at the end."""
        mod = self.mod
        if self.done:
            return None
        if mod.stopped is not None:
            self.done = True
            return mod.ending()
        if self.rel is None and mod.checking:
            self.rel = asyncio.ensure_future(mod.released_more())
        assert self.nxt is not None
        waits = {self.nxt} if self.rel is None else {self.nxt, self.rel}
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if self.rel is not None and self.rel in done:
            out, self.rel = self.rel.result(), None
            return out
        try:
            piece = self.nxt.result()
        except StopAsyncIteration:
            self.nxt = None
            self.done = True
            await _cancel(self.rel)
            self.rel = None
            return await mod.finish(extra)
        self.nxt = asyncio.ensure_future(anext(self.source))
        return mod.push(piece_text(piece))

    async def close(self) -> None:
        await _cancel(self.nxt)
        await _cancel(self.rel)
        await self.mod.close()
        aclose = getattr(self.source, "aclose", None)
        if callable(aclose):
            with contextlib.suppress(Exception):
                await aclose()


async def _cancel(fut: asyncio.Future[Any] | None) -> None:
    if fut is not None and not fut.done():
        fut.cancel()
        with contextlib.suppress(BaseException):
            await fut


async def _aiter(pieces: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    if isinstance(pieces, AsyncIterable):
        async for p in pieces:
            yield p
    else:
        for p in pieces:
            yield p


def stream(
    guard: Guard,
    pieces: Iterable[Any],
    *,
    context: str = "",
    tenant: str | None = None,
    request_id: str | None = None,
    settings: Streaming | None = None,
    final_inputs: Sequence[SafetyInput | FailedPart] = (),
) -> ModeratedStream:
    """Moderate a response stream: the text that may be shown, piece by piece (see the
    module docs). ``context`` is the user turn it answers; ``final_inputs`` are checked with
    the last window (tool calls, say). The result's ``stopped`` says what stopped it."""
    return ModeratedStream(
        guard,
        pieces,
        context=context,
        tenant=tenant,
        request_id=request_id,
        settings=settings,
        final_inputs=final_inputs,
    )


def astream(
    guard: Guard,
    pieces: AsyncIterable[Any] | Iterable[Any],
    *,
    context: str = "",
    tenant: str | None = None,
    request_id: str | None = None,
    settings: Streaming | None = None,
    final_inputs: Sequence[SafetyInput | FailedPart] = (),
) -> AsyncModeratedStream:
    """The async twin of :func:`stream`: released text comes out as soon as its check
    passes, not only when the next piece arrives."""
    return AsyncModeratedStream(
        guard,
        pieces,
        context=context,
        tenant=tenant,
        request_id=request_id,
        settings=settings,
        final_inputs=final_inputs,
    )
