"""Audit events: one per decision (errors included), to pluggable sinks.

An event records what was decided and why, never the content itself unless the tenant's policy
opts in (``audit.include_content``); a SHA-256 and the length identify the content instead.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from guard_plugin.decision import Decision

__all__ = [
    "AuditEvent",
    "AuditSink",
    "JsonlAuditSink",
    "LoggingAuditSink",
    "MemoryAuditSink",
    "MultiAuditSink",
]

_log = logging.getLogger(__name__)
# A library does not print on its own: without this, Python's last-resort handler would
# write every non-allow decision to stderr in applications that never configured logging.
logging.getLogger("guard_plugin.audit").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class AuditEvent:
    """One audit record. ``event`` is ``decision`` (a check), ``reasoning`` (the trace of a
    check, in ``reasoning: audit`` mode), ``review`` (a person's answer to an escalated
    decision: ``review`` holds the answers in request order, ``action`` what followed, and
    ``request_id`` links it to the decision; it carries no content hash) or ``override`` (an
    adapter applied another action than the decision's: ``action`` is what it applied,
    ``reason`` why)."""

    event: str  # "decision" | "reasoning" | "review" | "override"
    request_id: str | None
    tenant: str | None
    surface: str
    action: str
    status: str
    categories: tuple[str, ...]
    suppressed: tuple[str, ...]
    policy_id: str
    policy_version: str
    policy_fingerprint: str
    model: str | None
    latency_ms: float
    cached: bool
    error: str | None
    error_kind: str | None
    reasoning: str | None
    content_sha256: str
    content_length: int
    parts: int
    unsafe_parts: tuple[int, ...]
    score: float | None = None
    threshold_unapplied: bool = False
    tool_name: str | None = None
    content: str | None = None
    review: str | None = None
    reason: str | None = None
    #: the OpenTelemetry trace and span the check ran in (hex), where there was one
    trace_id: str | None = None
    span_id: str | None = None
    ts: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    )

    @classmethod
    def for_decision(cls, decision: Decision, event: str = "decision", **fields: Any) -> AuditEvent:
        """An event recording ``decision``; ``fields`` give what the decision does not hold
        (content hash and length, tool name, content) or override what it does."""
        values: dict[str, Any] = {
            "event": event,
            "request_id": decision.request_id,
            "tenant": decision.tenant,
            "surface": decision.surface.value,
            "action": decision.action.value,
            "status": decision.status,
            "categories": decision.categories,
            "suppressed": decision.suppressed,
            "policy_id": decision.policy_id,
            "policy_version": decision.policy_version,
            "policy_fingerprint": decision.policy_fingerprint,
            "model": decision.model,
            "latency_ms": decision.latency_ms,
            "cached": decision.cached,
            "error": decision.error,
            "error_kind": decision.error_kind,
            "reasoning": decision.reasoning,
            "content_sha256": "",
            "content_length": 0,
            "parts": len(decision.parts),
            "unsafe_parts": tuple(p.index for p in decision.parts if p.status == "unsafe"),
            "score": decision.score,
            "threshold_unapplied": decision.threshold_unapplied,
        }
        values.update(fields)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("content", "review", "reason", "trace_id", "span_id"):
            if d[key] is None:
                del d[key]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


@runtime_checkable
class AuditSink(Protocol):
    """Receives audit events. A sink may also define ``accepts(status, action) -> bool``; the
    guard then builds an event only when some sink will record it."""

    def emit(self, event: AuditEvent) -> None: ...


def _level(status: str, action: str) -> int:
    if status == "error":
        return logging.WARNING
    return logging.INFO if action != "allow" else logging.DEBUG


class LoggingAuditSink:
    """Writes each event as one JSON line to a :mod:`logging` logger.

    Decisions without a verdict (errors) log at WARNING, other decisions that are not
    ``allow`` at INFO, the rest at DEBUG: a policy doing its job is not a warning, so an app
    whose logging shows warnings (``nemoguardrails chat``, say) prints only the checks that
    failed. Like any library logger, ``guard_plugin.audit`` prints nothing until the
    application configures logging (``logging.basicConfig(level=logging.DEBUG)`` shows every
    event; raise the logger's level to silence it).
    """

    def __init__(self, logger: logging.Logger | str = "guard_plugin.audit") -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger

    def accepts(self, status: str, action: str) -> bool:
        return self.logger.isEnabledFor(_level(status, action))

    def emit(self, event: AuditEvent) -> None:
        level = _level(event.status, event.action)
        if self.logger.isEnabledFor(level):
            self.logger.log(level, event.to_json())


class JsonlAuditSink:
    """Appends one JSON line per event to a file, safe under concurrent writers.

    Each line goes out in a single ``write`` on a descriptor opened with ``O_APPEND`` while an
    in-process lock (threads) and an advisory ``flock`` (other processes, where available) are
    held, so lines are never lost or interleaved.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._lock = threading.Lock()
        self._fsync = fsync
        try:
            import fcntl

            self._flock: Any = fcntl.flock
            self._LOCK_EX, self._LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_UN
        except ImportError:  # pragma: no cover - Windows
            self._flock = None

    def emit(self, event: AuditEvent) -> None:
        data = (event.to_json() + "\n").encode("utf-8")
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"audit sink {self.path} is closed")
            if self._flock is not None:
                self._flock(self._fd, self._LOCK_EX)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                if self._fsync:
                    os.fsync(self._fd)
            finally:
                if self._flock is not None:
                    self._flock(self._fd, self._LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> JsonlAuditSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryAuditSink:
    """Keeps events in a list (tests, notebooks)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: AuditEvent) -> None:
        with self._lock:
            self.events.append(event)


class MultiAuditSink:
    """Sends each event to several sinks; one failing sink does not stop the others."""

    def __init__(self, sinks: Iterable[AuditSink]) -> None:
        self.sinks = list(sinks)

    def accepts(self, status: str, action: str) -> bool:
        for sink in self.sinks:
            accepts = getattr(sink, "accepts", None)
            if accepts is None or accepts(status, action):
                return True
        return False

    def emit(self, event: AuditEvent) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # noqa: BLE001 (an audit failure must not break the check)
                _log.exception("audit sink %r failed", sink)
