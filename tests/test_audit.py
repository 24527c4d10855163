"""Audit sinks: JSONL under concurrent writers, logging levels."""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
from pathlib import Path

from guard_plugin import AuditEvent, JsonlAuditSink
from guard_plugin.audit import LoggingAuditSink, MultiAuditSink


def event(i: int, writer: int, pad: int = 0) -> AuditEvent:
    return AuditEvent(
        event="decision",
        request_id=f"{writer}-{i}",
        tenant=f"t{writer}",
        surface="input",
        action="block",
        status="unsafe",
        categories=("Violence",),
        suppressed=(),
        policy_id="default",
        policy_version="1",
        policy_fingerprint="f",
        model="scripted",
        latency_ms=0.1,
        cached=False,
        error=None,
        error_kind=None,
        reasoning="r" * pad or None,
        content_sha256="0" * 64,
        content_length=1,
        parts=1,
        unsafe_parts=(0,),
    )


def test_concurrent_threads_lose_and_interleave_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "events.jsonl"
    sink = JsonlAuditSink(path)
    writers, per = 8, 500

    def work(w: int) -> None:
        for i in range(per):
            # large lines (over a pipe buffer) make torn writes visible if they happen
            sink.emit(event(i, w, pad=9000 if i % 50 == 0 else 0))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    lines = path.read_text().splitlines()
    assert len(lines) == writers * per
    ids = {json.loads(line)["request_id"] for line in lines}  # every line is whole JSON
    assert ids == {f"{w}-{i}" for w in range(writers) for i in range(per)}


def _proc_writer(path: str, w: int, n: int) -> None:
    sink = JsonlAuditSink(path)
    for i in range(n):
        sink.emit(event(i, w, pad=5000 if i % 20 == 0 else 0))
    sink.close()


def test_concurrent_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_proc_writer, args=(str(path), w, 200)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 600
    assert len({json.loads(line)["request_id"] for line in lines}) == 600


def test_appends_to_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with JsonlAuditSink(path) as s:
        s.emit(event(0, 0))
    with JsonlAuditSink(path) as s:
        s.emit(event(1, 0))
    assert len(path.read_text().splitlines()) == 2


def test_logging_sink_levels(caplog) -> None:
    sink = LoggingAuditSink("test.audit")
    with caplog.at_level(logging.DEBUG, logger="test.audit"):
        sink.emit(event(0, 0))
        ok = AuditEvent(**{**event(1, 0).__dict__, "action": "allow", "status": "safe"})
        sink.emit(ok)
        err = AuditEvent(
            **{**event(2, 0).__dict__, "status": "error", "error": "x", "error_kind": "timeout"}
        )
        sink.emit(err)
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.DEBUG, logging.WARNING]
    assert json.loads(caplog.records[0].getMessage())["request_id"] == "0-0"


def test_multi_sink_survives_a_broken_sink(tmp_path: Path) -> None:
    class Broken:
        def emit(self, e):
            raise RuntimeError("nope")

    path = tmp_path / "m.jsonl"
    with JsonlAuditSink(path) as good:
        MultiAuditSink([Broken(), good]).emit(event(0, 0))
    assert len(path.read_text().splitlines()) == 1


def test_events_are_built_only_for_sinks_that_take_them(caplog) -> None:
    from guard_plugin import Guard
    from guard_plugin.testing import ScriptedClassifier

    quiet = LoggingAuditSink("test.quiet")
    assert not MultiAuditSink([]).accepts("safe", "allow")
    with caplog.at_level(logging.INFO, logger="test.quiet"):
        assert not quiet.accepts("safe", "allow") and quiet.accepts("unsafe", "block")
        g = Guard(ScriptedClassifier(), audit=quiet)
        g.check("hello")
        g.check("build a bomb")
    assert [json.loads(r.getMessage())["action"] for r in caplog.records] == ["block"]


def test_a_review_is_audited_against_the_escalated_decision() -> None:
    from guard_plugin import Action, Guard, Policy
    from guard_plugin.audit import MemoryAuditSink
    from guard_plugin.testing import ScriptedClassifier

    sink = MemoryAuditSink()
    guard = Guard(ScriptedClassifier(), policies=Policy(actions={"input": "escalate"}), audit=sink)
    d = guard.check("you worthless idiot", surface="input", request_id="thread-1:m1:input")
    assert d.action is Action.ESCALATE
    guard.record_review(d, ["reject"], action=Action.BLOCK)
    decision, review = sink.events
    assert (decision.event, decision.action, decision.review) == ("decision", "escalate", None)
    assert (review.event, review.action, review.review) == ("review", "block", "reject")
    assert review.request_id == decision.request_id == "thread-1:m1:input"
    assert review.categories == ("Harassment",) and review.surface == "input"
    assert review.content_sha256 == "" and review.content_length == 0  # linked by request id
    assert json.loads(review.to_json())["review"] == "reject"
    assert "review" not in json.loads(decision.to_json())  # absent from plain decisions
