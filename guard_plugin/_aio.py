"""Small asyncio helpers shared by the core and the remote backend."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import sys
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

__all__ = ["LoopThread", "within"]

if sys.version_info >= (3, 11):

    async def within(call: Awaitable[_T], seconds: float) -> _T:
        """Await ``call`` with a deadline. Unlike ``wait_for`` this runs it in the current
        task: a backend that answers without suspending costs no trip through the loop."""
        async with asyncio.timeout(seconds):
            return await call

else:  # pragma: no cover - Python 3.10

    async def within(call: Awaitable[_T], seconds: float) -> _T:
        return await asyncio.wait_for(call, seconds)


async def _in_context(coro: Coroutine[Any, Any, _T], ctx: contextvars.Context) -> _T:
    """``coro`` with ``ctx``'s variables set (in this task's own context: nothing leaks)."""
    for var, value in ctx.items():
        var.set(value)
    return await coro


class LoopThread:
    """A private event loop in a daemon thread, started on first use.

    Sync callers run coroutines on it and wait with a deadline; at the deadline the coroutine
    is cancelled, which closes its sockets. A blocking HTTP client cannot do that: its timeouts
    apply to each read, so a server that sends a byte now and then holds it for as long as it
    likes.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            if self._loop is None or not alive or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop, if started (for clean-up of objects bound to it)."""
        return self._loop

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None) -> _T:
        """Run ``coro`` on the loop, in a copy of the caller's context variables (so a trace
        span current in the caller is current there too); raise ``TimeoutError`` (after
        cancelling it) when it has not finished within ``timeout`` seconds."""
        fut = asyncio.run_coroutine_threadsafe(
            _in_context(coro, contextvars.copy_context()), self._ensure()
        )
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"not finished within {timeout:.3f} s") from None

    def close(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            if not thread.is_alive():
                loop.close()
