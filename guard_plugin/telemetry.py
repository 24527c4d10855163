"""OpenTelemetry for operators: a span per check, a child span per classifier call, an
evaluation event per decision, and metrics; through ``opentelemetry-api`` only.

The application chooses the SDK and its exporters (``pip install 'guard-plugin[otel]'`` for
what the examples use). Without an SDK every call here goes to the API's no-op objects. The
Guard and the classifiers are the only callers: no adapter emits telemetry of its own, and a
check's span is a child of whatever span is current when it runs (a LangChain, LangGraph or
NeMo run instrumented with OpenTelemetry).

No content by default: text, images and reasoning never go into a span, an event or a metric
label unless the tenant's policy sets ``audit.include_content`` (the same switch as for the
audit log). Metric labels are bounded: tenant (a tenant the store knows, else ``other``),
surface, action, status, error kind, classifier name.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as _metrics_internal
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from guard_plugin.audit import AuditEvent
    from guard_plugin.decision import Decision

__all__ = [
    "OFF_SPAN",
    "SECURITY_ATTRIBUTES_ENV",
    "OtelLogAuditSink",
    "active",
    "check_span",
    "classifier_span",
    "record_batch",
    "record_decision",
    "trace_ids",
    "watch",
]

#: Set to ``1`` to add the draft ``gen_ai.security.*`` guardrail attributes (OpenTelemetry
#: semantic-conventions-genai, proposal under review: names may change) to check spans.
SECURITY_ATTRIBUTES_ENV = "GUARD_PLUGIN_OTEL_SECURITY_ATTRIBUTES"
EVALUATION_NAME = "guard_plugin.content_safety"

_tracer = trace.get_tracer("guard_plugin")
_meter = metrics.get_meter("guard_plugin")

_checks = _meter.create_counter(
    "guard_plugin.checks", unit="{check}", description="checks decided, by tenant and outcome"
)
_errors = _meter.create_counter(
    "guard_plugin.errors",
    unit="{check}",
    description="checks decided without a verdict (through on_error), by kind",
)
_check_duration = _meter.create_histogram(
    "guard_plugin.check.duration", unit="s", description="time to decide a check"
)
_classifier_duration = _meter.create_histogram(
    "guard_plugin.classifier.duration", unit="s", description="time of one classifier call"
)
_reviews_pending = _meter.create_up_down_counter(
    "guard_plugin.reviews.pending",
    unit="{review}",
    description="content held for a person's review and not yet settled (per process)",
)
_batch_size = _meter.create_histogram(
    "guard_plugin.classifier.batch_size",
    unit="{request}",
    description="requests the local model ran in one batch",
)

# gauges read at collection time from what registered itself (weakly: a closed classifier
# drops out)
_watched: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def _observe(kind: str) -> Callable[[Any], Iterable[metrics.Observation]]:
    def callback(_options: Any) -> Iterable[metrics.Observation]:
        for name, owner in list(_watched.items()):
            read = getattr(owner, "telemetry_gauges", None)
            values = read() if read is not None else {}
            for labels, value in values.get(kind, ()):
                yield metrics.Observation(value, {"classifier": name.split("#", 1)[0], **labels})

    return callback


_meter.create_observable_gauge(
    "guard_plugin.classifier.queue_depth",
    callbacks=[_observe("queue_depth")],
    unit="{request}",
    description="requests waiting for the local model",
)
_meter.create_observable_gauge(
    "guard_plugin.classifier.replica_up",
    callbacks=[_observe("replica_up")],
    description="1 while a served replica is taking requests, 0 while it cools down",
)


def watch(name: str, owner: Any) -> None:
    """Register an object whose ``telemetry_gauges()`` returns ``{kind: [(labels, value)]}``
    for the gauges above (a batching worker, a served classifier)."""
    _watched[f"{name}#{id(owner)}"] = owner


_sdk_seen = False
_MISSING = object()


def active() -> bool:
    """Whether an OpenTelemetry SDK (a tracer or meter provider) is configured. Until one is,
    checks skip telemetry altogether (no span objects, no metric calls): a guard without an
    SDK costs what it did before telemetry. Once set, a provider stays.

    The look-up reads the API's own record of the global providers (two attribute reads),
    where the public getters would read the environment on every check; an API that keeps
    them elsewhere falls back to the getters."""
    global _sdk_seen
    if _sdk_seen:
        return True
    tracers = getattr(trace, "_TRACER_PROVIDER", _MISSING)
    meters = getattr(_metrics_internal, "_METER_PROVIDER", _MISSING)
    if tracers is _MISSING or meters is _MISSING:
        kind = type(metrics.get_meter_provider()).__name__
        _sdk_seen = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider) or (
            kind not in ("_ProxyMeterProvider", "NoOpMeterProvider")
        )
    else:
        _sdk_seen = tracers is not None or meters is not None
    return _sdk_seen


def _security_attributes() -> bool:
    return os.environ.get(SECURITY_ATTRIBUTES_ENV, "").strip().lower() in ("1", "true", "yes")


class _Off:
    """What the span helpers return without an SDK: enters as the invalid span, costs a
    call."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return trace.INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_OFF = _Off()
OFF_SPAN = trace.INVALID_SPAN
"""The span a check gets without an SDK (nothing to record on it)."""


def check_span() -> AbstractContextManager[Span]:
    """The span of one check, current while it runs (its classifier call nests under it);
    :func:`record_decision` names it after the surface."""
    if not active():
        return _OFF
    return _tracer.start_as_current_span("guard_plugin.check", kind=SpanKind.INTERNAL)


def stream_span(request_id: str) -> Span:
    """The span of one moderated stream, the parent of its window checks (not current:
    :func:`within` makes it current where a check starts); ended by :func:`end_stream`."""
    if not active():
        return OFF_SPAN
    span = _tracer.start_span("guard_plugin.stream", kind=SpanKind.INTERNAL)
    span.set_attribute("guard_plugin.request_id", request_id)
    return span


def within(span: Span) -> AbstractContextManager[Any]:
    """``span`` current for what runs inside (a check, or a thread or task started there)."""
    if span is OFF_SPAN:
        return _OFF
    return trace.use_span(span, end_on_exit=False)


def end_stream(span: Span, *, checks: int, shown: int, stopped: str | None) -> None:
    """End a stream's span with what happened: checks run, characters shown, the action that
    stopped it (none when it passed)."""
    if span is OFF_SPAN:
        return
    span.set_attribute("guard_plugin.stream.checks", checks)
    span.set_attribute("guard_plugin.stream.shown_chars", shown)
    if stopped is not None:
        span.set_attribute("guard_plugin.stream.stopped", stopped)
    span.end()


def classifier_span(classifier: Any, requests: int) -> AbstractContextManager[Span]:
    """A child span for one classifier call, and its duration in the metrics."""
    return _classifier_span(classifier, requests) if active() else _OFF


@contextmanager
def _classifier_span(classifier: Any, requests: int) -> Iterator[Span]:
    name = str(getattr(classifier, "name", type(classifier).__name__))
    backend = type(classifier).__name__
    t0 = time.perf_counter()
    with _tracer.start_as_current_span(
        f"guard_plugin.classify {backend}",
        kind=SpanKind.CLIENT if hasattr(classifier, "base_urls") else SpanKind.INTERNAL,
        attributes={
            "guard_plugin.classifier.backend": backend,
            "gen_ai.request.model": name,
            "guard_plugin.classifier.requests": requests,
        },
    ) as span:
        before = _counts(classifier)
        try:
            yield span
        finally:
            _classifier_duration.record(time.perf_counter() - t0, {"classifier": name})
            after = _counts(classifier)
            for key, value in after.items():
                if span.is_recording():
                    span.set_attribute(f"guard_plugin.classifier.{key}", value - before.get(key, 0))


def _counts(classifier: Any) -> dict[str, int]:
    """Counters a classifier keeps (``stats``: forward passes, batches, OOM splits)."""
    try:
        stats = getattr(classifier, "stats", None)
        stats = stats() if callable(stats) else stats
    except Exception:  # noqa: BLE001 (telemetry never fails a check)
        return {}
    if not isinstance(stats, Mapping):
        return {}
    keep = ("forward_passes", "batches", "oom_splits", "retries", "failovers")
    return {k: int(v) for k, v in stats.items() if k in keep and isinstance(v, int)}


def review_pending(decision: Decision, change: int) -> None:
    """A held review opened (+1) or settled (-1)."""
    if active():
        _reviews_pending.add(
            change, {"surface": decision.surface.value, "policy": decision.policy_id}
        )


def record_batch(name: str, size: int) -> None:
    """One batch the local model ran."""
    if active():
        _batch_size.record(size, {"classifier": name})


def record_decision(
    span: Span,
    decision: Decision,
    *,
    tenant_label: str,
    parts: int,
    content: str | None = None,
) -> None:
    """A decision on its check's span (attributes, an evaluation event, the status) and in
    the metrics. ``content`` (only where the policy opts in) goes on the span."""
    if not active():
        return
    d = decision
    labels = {
        "tenant": tenant_label,
        "surface": d.surface.value,
        "action": d.action.value,
        "status": d.status,
    }
    _checks.add(1, labels)
    if d.is_error:
        _errors.add(
            1, {"tenant": tenant_label, "surface": d.surface.value, "kind": d.error_kind or "error"}
        )
    _check_duration.record(
        d.latency_ms / 1000.0, {"tenant": tenant_label, "surface": d.surface.value}
    )
    if not span.is_recording():
        return
    span.update_name(f"guard_plugin.check {d.surface.value}")
    attrs: dict[str, Any] = {
        "guard_plugin.surface": d.surface.value,
        "guard_plugin.tenant": d.tenant or "",
        "guard_plugin.policy.id": d.policy_id,
        "guard_plugin.policy.version": d.policy_version,
        "guard_plugin.action": d.action.value,
        "guard_plugin.status": d.status,
        "guard_plugin.categories": list(d.categories),
        "guard_plugin.parts": parts,
        "guard_plugin.cache_hit": d.cached,
        "guard_plugin.request_id": d.request_id or "",
    }
    if d.score is not None:
        attrs["guard_plugin.score"] = d.score
    if d.threshold_unapplied:
        attrs["guard_plugin.threshold_unapplied"] = True
    if d.error_kind:
        attrs["guard_plugin.error.kind"] = d.error_kind
        attrs["error.type"] = d.error_kind
    if content is not None:
        attrs["guard_plugin.content"] = content
    if _security_attributes():
        attrs.update(
            {
                "gen_ai.security.guardrail.name": "guard_plugin",
                "gen_ai.security.action.type": d.action.value,
                "gen_ai.security.policy.id": d.policy_id,
                "gen_ai.security.policy.version": d.policy_version,
            }
        )
        if d.score is not None:
            attrs["gen_ai.security.risk.score"] = d.score
    span.set_attributes(attrs)
    event: dict[str, Any] = {
        "gen_ai.evaluation.name": EVALUATION_NAME,
        "gen_ai.evaluation.score.label": d.action.value,
        "gen_ai.evaluation.explanation": ", ".join(d.categories) or d.status,
    }
    if d.score is not None:
        event["gen_ai.evaluation.score.value"] = d.score
    span.add_event("gen_ai.evaluation.result", event)
    if d.is_error:
        span.set_status(Status(StatusCode.ERROR, f"no verdict: {d.error_kind}"))


def trace_ids() -> dict[str, str]:
    """The current trace and span ids (hex), for an audit event; empty outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


class OtelLogAuditSink:
    """An audit sink that emits each event as an OpenTelemetry log record (the event's JSON
    as the body, its fields as attributes), so many agent processes feed one collector. The
    record carries the current trace and span, so a collector joins it to the check's span.
    The content field follows the policy's ``audit.include_content``, like every sink."""

    def __init__(self, name: str = "guard_plugin.audit") -> None:
        from opentelemetry import _logs

        self._logs = _logs
        self._logger = _logs.get_logger(name)

    def emit(self, event: AuditEvent) -> None:
        sev = self._logs.SeverityNumber
        severity = (
            sev.WARN
            if event.status == "error"
            else sev.INFO
            if event.action != "allow"
            else sev.DEBUG
        )
        attrs = {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in event.to_dict().items()
            if v is not None and not isinstance(v, dict)
        }
        self._logger.emit(
            self._logs.LogRecord(
                timestamp=time.time_ns(),
                body=event.to_json(),
                severity_number=severity,
                severity_text=severity.name,
                attributes=attrs,
                event_name=f"guard_plugin.{event.event}",
            )
        )
