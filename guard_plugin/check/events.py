"""Audit events of a check: the decision, a reasoning run's trace, and what followed (a
person's review, an adapter's override), all under the check's request id."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any

from guard_plugin import telemetry
from guard_plugin.audit import AuditEvent, AuditSink, LoggingAuditSink, MultiAuditSink
from guard_plugin.check.plan import Plan
from guard_plugin.decision import Decision
from guard_plugin.types import Action

__all__ = ["Auditor", "as_sink", "shown_content"]

_log = logging.getLogger("guard_plugin.check")


def as_sink(audit: AuditSink | Iterable[AuditSink] | None) -> AuditSink:
    if audit is None:
        return LoggingAuditSink()
    if isinstance(audit, AuditSink):
        return audit
    return MultiAuditSink(audit)


def shown_content(plan: Plan) -> str | None:
    """The checked text, where the tenant's policy lets audit events and telemetry carry it
    (``audit.include_content``); ``None`` otherwise."""
    if not plan.policy.policy.audit.include_content:
        return None
    return "\n\n".join(p for inp in plan.inputs for p in (inp.text, inp.response or "") if p)


class Auditor:
    """Builds events and hands them to the sink; a failing sink is logged, never raised."""

    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink

    def _accepts(self, decision: Decision, action: str) -> bool:
        accepts = getattr(self.sink, "accepts", None)
        return accepts is None or bool(accepts(decision.status, action))

    def decision(self, plan: Plan, decision: Decision, event: str) -> None:
        """A ``decision`` (or ``reasoning``) event: digests of the content, not the content
        unless the policy's ``audit.include_content`` asks for it."""
        if not self._accepts(decision, decision.action.value):
            return  # no sink would record it: skip building the event
        inputs = plan.inputs
        h = hashlib.sha256()
        for inp in inputs:
            h.update(inp.content_digest().encode())
        content = shown_content(plan)
        self.send(
            AuditEvent.for_decision(
                decision,
                event,
                content_sha256=h.hexdigest(),
                content_length=sum(i.content_length() for i in inputs),
                tool_name=next((i.tool_name for i in inputs if i.tool_name), None),
                content=content,
                **telemetry.trace_ids(),
            )
        )

    def follow_up(self, decision: Decision, event: str, action: Action, **fields: Any) -> None:
        """An event after a decision (a review, an override), under its request id."""
        if not self._accepts(decision, action.value):
            return
        self.send(
            AuditEvent.for_decision(
                decision,
                event,
                action=action.value,
                latency_ms=0.0,
                **{**telemetry.trace_ids(), **fields},
            )
        )

    def send(self, ev: AuditEvent) -> None:
        try:
            self.sink.emit(ev)
        except Exception:  # noqa: BLE001 (logged; a failing sink must not break the check)
            _log.exception("audit sink failed for a %s event of %s", ev.event, ev.request_id)
