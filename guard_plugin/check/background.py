"""Work a check leaves running after its decision: the reasoning run of ``reasoning: audit``
policies, on one background thread per Guard."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["Background"]

_log = logging.getLogger("guard_plugin.check")


class Background:
    """One lazily started worker thread; :meth:`flush` waits for what was submitted."""

    def __init__(self, name: str = "guard-reasoning") -> None:
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix=self._name)
            fut = self._pool.submit(fn)
            self._pending.add(fut)
        fut.add_done_callback(self._forget)

    def _forget(self, fut: Future[None]) -> None:
        with self._lock:
            self._pending.discard(fut)

    def flush(self, timeout: float | None = None) -> None:
        with self._lock:
            pending = list(self._pending)
        for fut in pending:
            try:
                fut.result(timeout=timeout)
            except Exception:  # noqa: BLE001 (logged; a failed audit run never reaches the caller)
                _log.exception("background reasoning audit failed")

    def close(self) -> None:
        self.flush()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
