"""A batching worker: one thread owns the model, callers get futures.

Requests queue up (bounded: a full queue is a :class:`QueueFullError`, not unbounded memory).
When the model is idle the worker runs what is waiting at once, with no pause to wait for
companions; while it is busy, requests queue and the next batch takes them all (up to
``max_batch_size``). So one request alone pays no batching delay, and batches form by
themselves under load. ``max_wait_s`` > 0 brings back a pause for companions, for a load
that arrives in bursts slower than one batch. Every request of one call (the parts of a
check) enters the queue at once, so they are never split by a batch that starts between
them. Futures are ``concurrent.futures.Future`` objects, so threads wait on them directly and
asyncio code wraps them with :func:`asyncio.wrap_future`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from guard_plugin import telemetry
from guard_plugin.errors import (
    ClassifierError,
    ClassifierTimeout,
    ClassifierUnavailable,
    QueueFullError,
)

__all__ = ["BatchStats", "BatchWorker"]

Req = TypeVar("Req")
Res = TypeVar("Res")


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
        max_wait_s: float = 0.0,
        max_queue: int = 1024,
        name: str = "guard-plugin-batcher",
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_s >= 0")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._pending: deque[_Job[Req, Res]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.stats = BatchStats()
        self.name = name
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        telemetry.watch(name, self)

    # -- callers ------------------------------------------------------------------------------

    def submit(self, request: Req) -> Future[Res]:
        return self.submit_all([request])[0]

    def submit_all(self, requests: Sequence[Req]) -> list[Future[Res]]:
        """Queue ``requests`` together (all or none: a full queue refuses the whole call)."""
        jobs: list[_Job[Req, Res]] = [_Job(r, Future()) for r in requests]
        with self._cv:
            if self._closed:
                raise ClassifierUnavailable("the classifier has been closed")
            if len(self._pending) + len(jobs) > self.max_queue:
                self.stats.queue_full += 1
                raise QueueFullError(
                    f"the classifier queue is full ({self.max_queue} requests waiting); "
                    "retry later, raise max_queue, or spread load over more replicas"
                )
            self._pending.extend(jobs)
            self.stats.requests += len(jobs)
            self._cv.notify()
        return [j.future for j in jobs]

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
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued(self) -> int:
        """Requests waiting for the model (not counting the batch it is running)."""
        with self._cv:
            return len(self._pending)

    def telemetry_gauges(self) -> dict[str, list[tuple[dict[str, str], int]]]:
        return {"queue_depth": [({}, self.queued)]}

    # -- the worker ---------------------------------------------------------------------------

    def _next_batch(self) -> list[_Job[Req, Res]] | None:
        """What the model runs next: everything waiting, up to ``max_batch_size``, as soon as
        there is anything (after ``max_wait_s`` for companions, where set). ``None`` once
        closed and drained."""
        with self._cv:
            self._cv.wait_for(lambda: self._pending or self._closed)
            if not self._pending:
                return None
            if self.max_wait_s > 0 and len(self._pending) < self.max_batch_size:
                self._cv.wait_for(
                    lambda: len(self._pending) >= self.max_batch_size or self._closed,
                    timeout=self.max_wait_s,
                )
            n = min(len(self._pending), self.max_batch_size)
            return [self._pending.popleft() for _ in range(n)]

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._execute(batch)

    def _execute(self, batch: list[_Job[Req, Res]]) -> None:
        live = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.stats.batches += 1
        self.stats.max_batch = max(self.stats.max_batch, len(live))
        telemetry.record_batch(self.name, len(live))
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
