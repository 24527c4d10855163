"""A streamed response, checked as it streams: windows (:mod:`.windows`) are checked one
after another beside the stream, and text is released by the tenant's ``streaming.mode``.

:class:`StreamModerator` (threads) and :class:`AsyncStreamModerator` (asyncio) share one
state machine, :class:`_State`: ``push`` a piece of the response and get the text that may be
shown now; ``finish`` checks what is left (with the response's tool calls, which are never
released before their decision) and returns the rest. Checks run one at a time per stream; a
window that waits while an earlier one is checked is merged into the next check, so a slow
classifier is asked less often rather than falling behind. A window that is not allowed stops
the stream: nothing more is released, and the caller ends the stream with :meth:`ending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guard_plugin import telemetry
from guard_plugin.media import FailedPart
from guard_plugin.policy import Streaming
from guard_plugin.prompting import SafetyInput
from guard_plugin.streams.windows import Window, Windows
from guard_plugin.types import TEXT, Action, Surface

if TYPE_CHECKING:
    from guard_plugin.check import Guard
    from guard_plugin.decision import Decision

__all__ = ["AsyncStreamModerator", "StreamModerator", "settings_of"]


def settings_of(guard: Guard, tenant: str | None) -> Streaming:
    """The tenant's ``streaming`` settings (the default policy's for a tenant the store
    refuses: its checks are refused anyway)."""
    try:
        return guard.policies.get_or_default(tenant).policy.streaming
    except Exception:  # noqa: BLE001 (an invalid tenant id: its first check says so)
        return Streaming()


@dataclass(frozen=True)
class _Pending:
    window: Window
    text: str  # the text the window's check covers


class _State:
    """What a moderated stream knows: the windows cut, the checks waiting, what passed and
    what was shown. Not thread-safe on its own (the sync moderator holds a lock)."""

    def __init__(
        self,
        guard: Guard,
        *,
        context: str,
        tenant: str | None,
        request_id: str | None,
        settings: Streaming | None,
    ) -> None:
        self.guard = guard
        self.context = context
        self.tenant = tenant
        # every check of the stream shares it: `<id>:w1`, `<id>:w2`, ... in the audit
        self.request_id = request_id or f"stream-{uuid.uuid4().hex[:16]}"
        self.span = telemetry.stream_span(self.request_id)  # the parent of its checks
        self._span_open = True
        self.settings = settings or settings_of(guard, tenant)
        self.hold = self.settings.mode == "hold"
        self.windows = Windows(self.settings)
        self.waiting: deque[_Pending] = deque()
        self.checking = False
        self.passed = 0  # offset up to which text passed its check
        self.released = 0  # offset up to which text was handed out
        self._unreleased = ""  # text from `released` to the end
        self.stopped: Decision | None = None  # the decision that stopped the stream
        self.decisions: list[Decision] = []
        self.shown_text = False  # some non-space text was handed out
        self.checks = 0

    # -- the stream's side --------------------------------------------------------------------

    def push(self, piece: str) -> None:
        if self.stopped is not None or not piece:
            return
        self._unreleased += piece
        for w in self.windows.push(piece):
            self.waiting.append(_Pending(w, self.windows.text(w.start, w.end)))

    def take(self) -> str:
        """The text that may be shown now (each character once)."""
        if self.stopped is not None:
            return ""
        upto = self.passed if self.hold else self.windows.length
        n = upto - self.released
        if n <= 0:
            return ""
        out, self._unreleased = self._unreleased[:n], self._unreleased[n:]
        self.released = upto
        self.shown_text = self.shown_text or bool(out.strip())
        return out

    # -- the checker's side -------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether a check can start now."""
        return not self.checking and bool(self.waiting) and self.stopped is None

    def next_check(self) -> tuple[Window, list[SafetyInput], str | None] | None:
        """The next check to run (windows waiting are merged where one check covers them)."""
        if self.checking or not self.waiting or self.stopped is not None:
            return None
        first = self.waiting.popleft()
        last = first
        while self.waiting and self.waiting[0].window.start <= first.window.new_from:
            last = self.waiting.popleft()
        self.checking = True
        return last.window, [self._input(last.text)], self._rid()

    def final_check(
        self, extra: Sequence[SafetyInput | FailedPart]
    ) -> tuple[Window | None, list[SafetyInput | FailedPart], str | None] | None:
        """The check of what is left when the stream ends: the last window and ``extra``
        (the response's tool calls); None when nothing is left to check."""
        if self.stopped is not None:
            return None
        w = self.windows.close()
        inputs: list[SafetyInput | FailedPart] = (
            [self._input(self.windows.text(w.start, w.end))] if w is not None else []
        )
        inputs += list(extra)
        if not inputs:
            self.passed = self.windows.length  # white space only
            return None
        self.checking = True
        return w, inputs, self._rid()

    def done(self, window: Window | None, decision: Decision) -> None:
        self.checking = False
        self.decisions.append(decision)
        if decision.action is not Action.ALLOW:
            if self.stopped is None:
                self._stop(decision)
            return
        end = window.end if window is not None else self.windows.length
        self.passed = max(self.passed, end)
        if window is not None and window.final:
            self.passed = self.windows.length

    def _stop(self, decision: Decision) -> None:
        self.stopped = decision
        self.waiting.clear()
        unchecked = self.released - self.passed
        if unchecked > 0:  # mode `first`: text was shown before its check
            self.guard.record_override(
                decision,
                decision.action,
                reason=f"stream stopped after {unchecked} characters were shown unchecked "
                "(streaming.mode: first)",
            )

    def _input(self, text: str) -> SafetyInput:
        return SafetyInput(text=self.context, response=text, surface=Surface.RESPONSE, part=TEXT)

    def _rid(self) -> str:
        self.checks += 1
        return f"{self.request_id}:w{self.checks}"

    def end_span(self) -> None:
        if self._span_open:
            self._span_open = False
            stopped = self.stopped.action.value if self.stopped is not None else None
            telemetry.end_stream(
                self.span, checks=self.checks, shown=self.released, stopped=stopped
            )

    def ending(self) -> str:
        """What ends a stopped stream: the tenant's refusal, after a blank line when text was
        shown (what was shown stays as it was)."""
        if self.stopped is None:
            return ""
        refusal = self.guard.messages_of(self.stopped, self.tenant).refusal
        return f"\n\n{refusal}" if self.shown_text else refusal


class _Base:
    def __init__(
        self,
        guard: Guard,
        *,
        context: str = "",
        tenant: str | None = None,
        request_id: str | None = None,
        settings: Streaming | None = None,
    ) -> None:
        self._s = _State(
            guard, context=context, tenant=tenant, request_id=request_id, settings=settings
        )

    @property
    def settings(self) -> Streaming:
        return self._s.settings

    @property
    def stopped(self) -> Decision | None:
        """The decision that stopped the stream (None while it goes on or when it passed)."""
        return self._s.stopped

    @property
    def decisions(self) -> list[Decision]:
        """Every check's decision so far, in order."""
        return list(self._s.decisions)

    @property
    def checking(self) -> bool:
        """Whether a window is being checked or waits for its check."""
        return self._s.checking or bool(self._s.waiting)

    @property
    def length(self) -> int:
        """Characters pushed so far."""
        return self._s.windows.length

    @property
    def released(self) -> int:
        """Characters handed out so far."""
        return self._s.released

    def ending(self) -> str:
        return self._s.ending()


class StreamModerator(_Base):
    """A response stream checked beside it, for threads: checks run on a worker thread of
    this stream's own, ``push`` and ``take`` never wait for one.

    ``context`` is the user turn the response answers. Use it as a context manager (or call
    :meth:`close`) so an abandoned stream leaves no thread behind."""

    def __init__(self, guard: Guard, **options: Any) -> None:
        super().__init__(guard, **options)
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StreamModerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(self, piece: str) -> str:
        """Append ``piece``; the text that may be shown now."""
        with self._cv:
            self._s.push(piece)
            if self._s.waiting and self._thread is None and not self._closed:
                with telemetry.within(self._s.span):  # the checks nest under the stream
                    ctx = contextvars.copy_context()  # and the caller's settings
                self._thread = threading.Thread(
                    target=ctx.run, args=(self._work,), name="guard-plugin-stream", daemon=True
                )
                self._thread.start()
            self._cv.notify_all()
            return self._s.take()

    def take(self) -> str:
        with self._cv:
            return self._s.take()

    def wait(self, timeout: float | None = None) -> str:
        """Wait until no window waits for its check (or the stream stopped); what may be
        shown then."""
        with self._cv:
            self._cv.wait_for(
                lambda: (
                    self._s.stopped is not None or (not self._s.waiting and not self._s.checking)
                ),
                timeout,
            )
            return self._s.take()

    def finish(self, extra: Sequence[SafetyInput | FailedPart] = ()) -> str:
        """The stream ended: wait for the checks, check the rest with ``extra``; the text
        left to show (the ending, if the stream stopped)."""
        out = self.wait()
        with self._cv:
            step = self._s.final_check(extra)
        if step is not None:
            w, inputs, rid = step
            with telemetry.within(self._s.span):
                d = self._s.guard.check(
                    inputs, surface=Surface.RESPONSE, tenant=self._s.tenant, request_id=rid
                )
            with self._cv:
                self._s.done(w, d)
        with self._cv:
            out += self._s.take()
        self.close()
        return out + self.ending()

    def close(self) -> None:
        """Stop checking (an abandoned stream): waiting windows are dropped."""
        with self._cv:
            self._closed = True
            self._s.waiting.clear()
            self._cv.notify_all()
            self._s.end_span()

    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or self._s.ready())
                step = None if self._closed else self._s.next_check()
                if step is None:
                    if self._closed:
                        self._thread = None
                        self._cv.notify_all()
                        return
                    continue
            w, inputs, rid = step
            d = self._s.guard.check(
                inputs, surface=Surface.RESPONSE, tenant=self._s.tenant, request_id=rid
            )
            with self._cv:
                self._s.done(w, d)
                self._cv.notify_all()


class AsyncStreamModerator(_Base):
    """A response stream checked beside it, for asyncio: checks run in a task of this
    stream's own; ``push`` and ``take`` never wait for one. Use ``async with`` (or call
    :meth:`close`) so an abandoned stream leaves no task behind."""

    def __init__(self, guard: Guard, **options: Any) -> None:
        super().__init__(guard, **options)
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncStreamModerator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def push(self, piece: str) -> str:
        """Append ``piece``; the text that may be shown now."""
        self.feed(piece)
        return self._s.take()

    def feed(self, piece: str) -> None:
        """Append ``piece`` without taking what may be shown (a releaser takes it)."""
        self._s.push(piece)
        self._kick()
        self._changed.set()

    def take(self) -> str:
        return self._s.take()

    async def released_more(self) -> str:
        """Wait until more text may be shown, the stream stopped, or no check is left."""
        while True:
            out = self._s.take()
            if out or self._s.stopped is not None or not (self._s.waiting or self._s.checking):
                return out
            self._changed.clear()
            await self._changed.wait()

    async def wait(self) -> str:
        out = ""
        while self._s.stopped is None and (self._s.waiting or self._s.checking):
            out += await self.released_more()
        return out + self._s.take()

    async def finish(self, extra: Sequence[SafetyInput | FailedPart] = ()) -> str:
        out = await self.wait()
        step = self._s.final_check(extra)
        if step is not None:
            w, inputs, rid = step
            with telemetry.within(self._s.span):
                d = await self._s.guard.acheck(
                    inputs, surface=Surface.RESPONSE, tenant=self._s.tenant, request_id=rid
                )
            self._s.done(w, d)
        out += self._s.take()
        await self.close()
        return out + self.ending()

    async def close(self) -> None:
        self._s.waiting.clear()
        self._s.end_span()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _kick(self) -> None:
        if self._s.waiting and (self._task is None or self._task.done()):
            with telemetry.within(self._s.span):  # the checks nest under the stream
                self._task = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        while (step := self._s.next_check()) is not None:
            w, inputs, rid = step
            try:
                d = await self._s.guard.acheck(
                    inputs, surface=Surface.RESPONSE, tenant=self._s.tenant, request_id=rid
                )
            except BaseException:
                self._s.checking = False
                raise
            self._s.done(w, d)
            self._changed.set()
        self._changed.set()
