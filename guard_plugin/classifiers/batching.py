"""A batching worker: one thread owns the model, callers get futures.

Requests queue up (bounded: a full queue is a :class:`QueueFullError`, not unbounded memory).
The worker takes the first waiting request, gathers more for up to ``max_wait_s`` or until
``max_batch_size``, runs them as one batch, and resolves each request's future. Futures are
``concurrent.futures.Future`` objects, so threads wait on them directly and asyncio code wraps
them with :func:`asyncio.wrap_future`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from guard_plugin.errors import (
    ClassifierError,
    ClassifierTimeout,
    ClassifierUnavailable,
    QueueFullError,
)

__all__ = ["BatchStats", "BatchWorker"]

Req = TypeVar("Req")
Res = TypeVar("Res")

_STOP = object()


@dataclass
class BatchStats:
    requests: int = 0
    batches: int = 0
    queue_full: int = 0
    max_batch: int = 0
    failures: int = 0
    sizes: list[int] = field(default_factory=list, repr=False)


@dataclass
class _Job(Generic[Req, Res]):
    request: Req
    future: Future[Res]


class BatchWorker(Generic[Req, Res]):
    """Runs ``run_batch(list_of_requests) -> list_of_results`` on a single worker thread.

    ``run_batch`` must return one result per request; an exception it raises fails every
    request of that batch with :class:`ClassifierUnavailable`.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Req]], Sequence[Res]],
        *,
        max_batch_size: int = 16,
        max_wait_s: float = 0.002,
        max_queue: int = 1024,
        name: str = "guard-plugin-batcher",
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_s >= 0")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._lock = threading.Lock()
        self.stats = BatchStats()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- callers ------------------------------------------------------------------------------

    def submit(self, request: Req) -> Future[Res]:
        fut: Future[Res] = Future()
        with self._lock:
            if self._closed:
                raise ClassifierUnavailable("the classifier has been closed")
            try:
                self._queue.put_nowait(_Job(request, fut))
            except queue.Full:
                self.stats.queue_full += 1
                raise QueueFullError(
                    f"the classifier queue is full ({self.max_queue} requests waiting); "
                    "retry later, raise max_queue, or spread load over more replicas"
                ) from None
            self.stats.requests += 1
        return fut

    def submit_all(self, requests: Sequence[Req]) -> list[Future[Res]]:
        futures: list[Future[Res]] = []
        try:
            for r in requests:
                futures.append(self.submit(r))
        except ClassifierError:
            for f in futures:
                f.cancel()
            raise
        return futures

    def run(
        self, requests: Sequence[Req], timeout: float | None = None
    ) -> list[Res | ClassifierError]:
        """Submit and wait (threads)."""
        futures = self.submit_all(requests)
        done, _ = wait_futures(futures, timeout=timeout)
        return [_outcome(f, f in done, timeout) for f in futures]

    async def arun(
        self, requests: Sequence[Req], timeout: float | None = None
    ) -> list[Res | ClassifierError]:
        """Submit and await (asyncio); the event loop is never blocked. A caller that gives
        up (its task cancelled, say by an outer deadline) takes its requests back: the ones
        the worker has not started never reach the model."""
        futures = self.submit_all(requests)
        wrapped = [asyncio.wrap_future(f) for f in futures]
        try:
            done, _ = await asyncio.wait(wrapped, timeout=timeout)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return [_outcome(f, w in done, timeout) for f, w in zip(futures, wrapped, strict=True)]

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking requests; requests accepted before the call are still served."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the worker ---------------------------------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Job[Req, Res]] = [first]  # type: ignore[list-item]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get_nowait()
                        if remaining <= 0
                        else self._queue.get(timeout=remaining)
                    )
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._execute(batch)
        self._drain()

    def _execute(self, batch: list[_Job[Req, Res]]) -> None:
        live = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.stats.batches += 1
        self.stats.max_batch = max(self.stats.max_batch, len(live))
        if len(self.stats.sizes) < 10_000:
            self.stats.sizes.append(len(live))
        try:
            results = list(self._run_batch([j.request for j in live]))
            if len(results) != len(live):
                raise RuntimeError(
                    f"batch returned {len(results)} results for {len(live)} requests"
                )
        except Exception as err:  # noqa: BLE001 (each caller gets the failure as its result)
            self.stats.failures += 1
            failure = ClassifierUnavailable(f"batch failed: {type(err).__name__}: {err}")
            failure.__cause__ = err
            for j in live:
                j.future.set_exception(failure)
            return
        for j, res in zip(live, results, strict=True):
            j.future.set_result(res)

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(ClassifierUnavailable("the classifier was closed"))


def _outcome(fut: Future[Any], done: bool, timeout: float | None) -> Any:
    if not done:
        fut.cancel()  # drops it if the worker has not started it yet
        return ClassifierTimeout(
            f"no model output within {timeout:.3f}s" if timeout is not None else "timed out"
        )
    if fut.cancelled():
        return ClassifierUnavailable("the request was cancelled")
    err = fut.exception()
    if err is None:
        return fut.result()
    if isinstance(err, ClassifierError):
        return err
    wrapped = ClassifierUnavailable(f"{type(err).__name__}: {err}")
    wrapped.__cause__ = err
    return wrapped
