"""The batching worker: batches form, futures resolve from threads and asyncio, back-pressure."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from guard_plugin.classifiers.batching import BatchWorker
from guard_plugin.errors import ClassifierTimeout, ClassifierUnavailable, QueueFullError


def test_concurrent_submitters_are_batched() -> None:
    seen: list[int] = []

    def run(batch: list[int]) -> list[int]:
        seen.append(len(batch))
        time.sleep(0.01)
        return [x * 2 for x in batch]

    w: BatchWorker[int, int] = BatchWorker(run, max_batch_size=8, max_wait_s=0.005)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        results[i] = w.run([i])[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    assert results == {i: i * 2 for i in range(32)}
    assert max(seen) > 1 and max(seen) <= 8 and sum(seen) == 32


def test_async_and_thread_callers_share_one_worker() -> None:
    w: BatchWorker[int, int] = BatchWorker(lambda b: [x + 1 for x in b], max_batch_size=16)

    async def many() -> list[object]:
        return await asyncio.gather(*(w.arun([i]) for i in range(50)))

    out = asyncio.run(many())
    assert [r[0] for r in out] == [i + 1 for i in range(50)]  # type: ignore[index]
    assert w.run([5, 6]) == [6, 7]
    w.close()


def test_queue_full_is_a_clear_counted_error() -> None:
    gate = threading.Event()
    w: BatchWorker[int, int] = BatchWorker(
        lambda b: (gate.wait(5), b)[1], max_batch_size=1, max_queue=2
    )
    first = w.submit(0)
    time.sleep(0.05)  # the worker holds request 0; the queue is empty again
    w.submit(1)
    w.submit(2)
    with pytest.raises(QueueFullError, match="queue is full"):
        w.submit(3)
    with pytest.raises(QueueFullError):
        w.run([4, 5])
    assert w.stats.queue_full == 2
    gate.set()
    assert first.result(5) == 0
    w.close()


def test_timeout_cancels_waiting_requests() -> None:
    gate = threading.Event()
    calls: list[list[int]] = []

    def run(b: list[int]) -> list[int]:
        calls.append(b)
        gate.wait(5)
        return b

    w: BatchWorker[int, int] = BatchWorker(run, max_batch_size=1)
    (res,) = w.run([1], timeout=0.05)
    assert isinstance(res, ClassifierTimeout)
    (res2,) = w.run([2], timeout=0.01)  # queued behind 1, cancelled before it runs
    assert isinstance(res2, ClassifierTimeout)
    gate.set()
    time.sleep(0.05)
    w.close()
    assert calls == [[1]]


def test_a_failing_batch_fails_only_its_requests() -> None:
    def run(b: list[int]) -> list[int]:
        if 13 in b:
            raise RuntimeError("CUDA error")
        return b

    w: BatchWorker[int, int] = BatchWorker(run, max_batch_size=1)
    bad, good = w.run([13]), w.run([1])
    assert isinstance(bad[0], ClassifierUnavailable) and "CUDA error" in str(bad[0])
    assert good == [1]
    w.close()


def test_close_serves_accepted_requests_and_refuses_new_ones() -> None:
    gate = threading.Event()
    w: BatchWorker[int, int] = BatchWorker(lambda b: (gate.wait(5), b)[1], max_batch_size=1)
    running = w.submit(1)
    time.sleep(0.05)
    queued = w.submit(2)
    closer = threading.Thread(target=w.close)
    closer.start()
    time.sleep(0.05)
    gate.set()
    closer.join(5)
    assert running.result(1) == 1
    assert queued.result(1) == 2
    with pytest.raises(ClassifierUnavailable, match="closed"):
        w.submit(3)


def test_async_callers_that_give_up_take_their_requests_back() -> None:
    """400 checks whose callers are cancelled (an outer deadline) while the model is busy: the
    model runs the batch it had started and nothing more."""
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    def run_batch(reqs: list[int]) -> list[int]:
        started.set()
        release.wait(10)
        ran.extend(reqs)
        return reqs

    worker: BatchWorker[int, int] = BatchWorker(run_batch, max_batch_size=8, max_wait_s=0)

    async def burst() -> None:
        first = asyncio.ensure_future(worker.arun([-1]))
        await asyncio.to_thread(started.wait, 10)  # the model is busy with the first request
        callers = [asyncio.ensure_future(worker.arun([i])) for i in range(400)]
        await asyncio.sleep(0)  # every request is queued
        for c in callers:
            c.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        release.set()
        assert await first == [-1]

    asyncio.run(burst())
    worker.close()
    assert ran == [-1]


def test_an_idle_worker_runs_a_lone_request_at_once_and_batches_what_queues_while_busy() -> None:
    """Driven by events, not timing: the first request runs alone (no pause for companions);
    the five that arrive while it runs go together in the next batch."""
    busy, release = threading.Event(), threading.Event()
    sizes: list[int] = []

    def run_batch(reqs: list[int]) -> list[int]:
        sizes.append(len(reqs))
        if reqs == [0]:
            busy.set()
            assert release.wait(10)
        return reqs

    worker: BatchWorker[int, int] = BatchWorker(run_batch, max_batch_size=16)
    first = worker.submit(0)
    assert busy.wait(10)  # dispatched without any companion
    later = [worker.submit(i) for i in range(1, 6)]
    assert worker.queued == 5
    release.set()
    assert first.result(10) == 0 and [f.result(10) for f in later] == [1, 2, 3, 4, 5]
    worker.close()
    assert sizes == [1, 5]


def test_the_requests_of_one_call_are_never_split_by_a_starting_batch() -> None:
    sizes: list[int] = []
    worker: BatchWorker[int, int] = BatchWorker(lambda r: sizes.append(len(r)) or r)
    for _ in range(50):
        assert worker.run(list(range(7)), timeout=10) == list(range(7))
    worker.close()
    assert set(sizes) == {7}


def test_a_full_queue_refuses_the_whole_call() -> None:
    release = threading.Event()
    worker: BatchWorker[int, int] = BatchWorker(
        lambda r: release.wait(10) and r, max_batch_size=1, max_queue=3
    )
    worker.submit(0)
    with pytest.raises(QueueFullError):
        worker.submit_all([1, 2, 3, 4])
    assert worker.queued <= 1
    release.set()
    worker.close()
