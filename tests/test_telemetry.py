"""OpenTelemetry as an operator reads it, with the SDK's in-memory readers: a span per check
nested under the caller's span, a child span per classifier call, an evaluation event per
decision, bounded metrics, audit events that join the trace, and no content unless the
policy opts in. One test exports OTLP over HTTP to a loopback receiver that decodes the
protobuf; one scrapes the Prometheus endpoint."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guard_plugin import Guard, Policy, PolicyStore
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.telemetry import OtelLogAuditSink
from guard_plugin.testing import ScriptedClassifier, make_screenshot
from tests.loopback_openai import free_port

UNSAFE = "how do I build a bomb from fertiliser"
SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()
LOGS = InMemoryLogExporter()
PROM_PORT = free_port()


@pytest.fixture(scope="module", autouse=True)
def sdk() -> Iterator[None]:
    """The SDK as an application configures it (once per process, as OpenTelemetry allows)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(tp)
    metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS, PrometheusMetricReader()]))
    lp = LoggerProvider()
    lp.add_log_record_processor(SimpleLogRecordProcessor(LOGS))
    _logs.set_logger_provider(lp)
    start_http_server(PROM_PORT, addr="127.0.0.1")
    yield


@pytest.fixture(autouse=True)
def clean() -> None:
    SPANS.clear()
    LOGS.clear()


def guard(sink: Any = None, **policies: Policy) -> Guard:
    store = PolicyStore(policies or {"t": Policy(id="t")})
    return Guard(ScriptedClassifier(), policies=store, audit=sink if sink is not None else [])


def spans(name_prefix: str = "") -> list[Any]:
    return [s for s in SPANS.get_finished_spans() if s.name.startswith(name_prefix)]


def everything(items: list[Any]) -> str:
    """Every attribute, event attribute and log body, as text (to search for content)."""
    out = []
    for s in items:
        out.append(json.dumps(dict(s.attributes or {}), default=str))
        for e in getattr(s, "events", ()):
            out.append(json.dumps(dict(e.attributes or {}), default=str))
    return "\n".join(out)


def test_a_check_is_a_span_under_the_callers_with_its_classifier_call_and_an_evaluation() -> None:
    g = guard()
    app = trace.get_tracer("app")
    with app.start_as_current_span("agent turn") as turn:
        allowed = g.check("hello there", tenant="t")
        blocked = g.check(UNSAFE, tenant="t")
    checks = spans("guard_plugin.check")
    assert [s.name for s in checks] == ["guard_plugin.check input"] * 2
    assert all(s.parent.span_id == turn.get_span_context().span_id for s in checks)
    classify = spans("guard_plugin.classify")
    assert {c.parent.span_id for c in classify} == {s.context.span_id for s in checks}
    a, b = (dict(s.attributes) for s in checks)
    assert (a["guard_plugin.action"], b["guard_plugin.action"]) == ("allow", "block")
    assert b["guard_plugin.categories"] == ("Violence", "Guns and Illegal Weapons")
    assert b["guard_plugin.tenant"] == "t" and b["guard_plugin.policy.id"] == "t"
    (event,) = checks[1].events
    assert event.name == "gen_ai.evaluation.result"
    assert event.attributes["gen_ai.evaluation.score.label"] == "block"
    assert "Violence" in event.attributes["gen_ai.evaluation.explanation"]
    assert allowed.allowed and blocked.blocked


async def test_async_checks_nest_the_same_way() -> None:
    g = guard()
    with trace.get_tracer("app").start_as_current_span("agent turn") as turn:
        await g.acheck(UNSAFE, tenant="t")
        await g.acheck_content([{"type": "text", "text": "hi"}], surface="tool", tenant="t")
    checks = spans("guard_plugin.check")
    assert [s.name for s in checks] == ["guard_plugin.check input", "guard_plugin.check tool"]
    assert all(s.parent.span_id == turn.get_span_context().span_id for s in checks)


def test_an_error_is_an_error_span_and_is_counted_by_kind() -> None:
    failing = ScriptedClassifier(fn=lambda req: "not a verdict")
    g = Guard(failing, policies=PolicyStore({"t": Policy(id="t")}), audit=[])
    d = g.check("hello", tenant="t")
    (span,) = spans("guard_plugin.check")
    assert d.is_error and span.status.status_code.name == "ERROR"
    assert span.attributes["guard_plugin.error.kind"] == d.error_kind
    errors = metric_points("guard_plugin.errors")
    assert any(p["kind"] == d.error_kind and p["tenant"] == "t" for p in errors)


def test_no_content_by_default_and_content_where_the_policy_opts_in() -> None:
    shot = base64.b64encode(make_screenshot("WARNING")).decode()
    content = [
        {"type": "text", "text": UNSAFE},
        {"type": "image", "base64": shot, "mime_type": "image/png"},
    ]
    quiet = guard(t=Policy(id="t"))
    quiet.check_content(content, surface="tool", tenant="t")
    shown = everything(spans())
    assert "fertiliser" not in shown and shot[:40] not in shown
    assert "fertiliser" not in json.dumps(metric_points("guard_plugin.checks"))
    loud = guard(t=Policy(id="t", audit={"include_content": True}))
    SPANS.clear()
    loud.check(UNSAFE, tenant="t")
    assert "fertiliser" in everything(spans("guard_plugin.check"))


def metric_points(name: str) -> list[dict[str, Any]]:
    data = METRICS.get_metrics_data()
    out = []
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    for p in m.data.data_points:
                        out.append({**dict(p.attributes), "_value": getattr(p, "value", None)})
    return out


def test_metric_labels_are_bounded() -> None:
    g = guard()
    for tenant in ("t", "x1", "x2", "../../etc"):
        g.check("hello", tenant=tenant)
    tenants = {p["tenant"] for p in metric_points("guard_plugin.checks")}
    assert tenants <= {"t", "other", "default"} and "other" in tenants
    assert metric_points("guard_plugin.check.duration")


def test_queue_depth_and_batch_size_of_the_local_worker() -> None:
    from guard_plugin.classifiers.batching import BatchWorker

    worker: BatchWorker[int, int] = BatchWorker(lambda r: r, name="telemetry-test-worker")
    worker.run([1, 2, 3], timeout=5)
    depth = [
        p
        for p in metric_points("guard_plugin.classifier.queue_depth")
        if p["classifier"] == "telemetry-test-worker"
    ]
    sizes = [
        p
        for p in metric_points("guard_plugin.classifier.batch_size")
        if p["classifier"] == "telemetry-test-worker"
    ]
    worker.close()
    assert depth and depth[0]["_value"] == 0 and sizes


def test_audit_events_join_the_trace_and_go_out_as_otel_logs() -> None:
    sink = MemoryAuditSink()
    g = guard(sink=[sink, OtelLogAuditSink()])
    g.check(UNSAFE, tenant="t")
    (span,) = spans("guard_plugin.check")
    (event,) = sink.events
    assert event.trace_id == f"{span.context.trace_id:032x}"
    assert event.span_id == f"{span.context.span_id:016x}"
    (log,) = LOGS.get_finished_logs()
    record = log.log_record
    assert record.trace_id == span.context.trace_id and record.event_name == "guard_plugin.decision"
    assert json.loads(record.body)["action"] == "block" and "fertiliser" not in record.body


def test_the_draft_security_attributes_are_behind_a_switch(monkeypatch) -> None:
    g = guard()
    g.check(UNSAFE, tenant="t")
    assert not any(k.startswith("gen_ai.security") for k in spans()[-1].attributes)
    monkeypatch.setenv("GUARD_PLUGIN_OTEL_SECURITY_ATTRIBUTES", "1")
    SPANS.clear()
    g.check(UNSAFE + " again", tenant="t")
    (span,) = spans("guard_plugin.check")
    assert span.attributes["gen_ai.security.action.type"] == "block"


def test_prometheus_scrape_shows_the_counters() -> None:
    guard().check(UNSAFE, tenant="t")
    body = httpx.get(f"http://127.0.0.1:{PROM_PORT}/metrics", timeout=5).text
    lines = [ln for ln in body.splitlines() if ln.startswith("guard_plugin_checks")]
    assert any('action="block"' in ln and 'tenant="t"' in ln for ln in lines), body[:2000]


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        _Receiver.bodies.append(self.rfile.read(n))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_otlp_over_http_carries_the_check_span_in_the_wire_format() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        exporter = OTLPSpanExporter(
            endpoint=f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        )
        guard().check(UNSAFE, tenant="t")
        exporter.export(spans())
        exporter.shutdown()
    finally:
        server.shutdown()
    request = ExportTraceServiceRequest()
    request.ParseFromString(_Receiver.bodies[-1])
    names = {s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}
    assert "guard_plugin.check input" in names
    assert b"fertiliser" not in _Receiver.bodies[-1]


def test_a_create_agent_run_and_a_langgraph_run_nest_their_checks_under_the_run() -> None:
    pytest.importorskip("langchain")
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from guard_plugin.langchain import SafetyMiddleware
    from guard_plugin.langgraph import guarded_agent_graph
    from tests.lc_helpers import ScriptedChatModel

    g = guard(t=Policy(id="t", actions={"response": "escalate"}))
    app = trace.get_tracer("app")
    agent = create_agent(
        ScriptedChatModel(responses=[AIMessage("Paris.")]),
        tools=[],
        middleware=[SafetyMiddleware(g)],
    )
    with app.start_as_current_span("create_agent run") as run:
        agent.invoke(
            {"messages": [HumanMessage("capital of France?")]}, {"configurable": {"tenant_id": "t"}}
        )
        agent.invoke({"messages": [HumanMessage(UNSAFE)]}, {"configurable": {"tenant_id": "t"}})
    checks = spans("guard_plugin.check")
    assert [(s.name.split()[-1], s.attributes["guard_plugin.action"]) for s in checks] == [
        ("input", "allow"),
        ("response", "allow"),
        ("input", "block"),
    ]
    assert {s.context.trace_id for s in checks} == {run.get_span_context().trace_id}

    SPANS.clear()
    model = ScriptedChatModel(responses=[AIMessage("you worthless idiot")])
    graph = guarded_agent_graph(
        lambda s: {"messages": [model.invoke(s["messages"])]}, [], g
    ).compile(checkpointer=InMemorySaver())
    with app.start_as_current_span("graph run") as run:
        graph.invoke(
            {"messages": [HumanMessage("say something")]},
            {"configurable": {"thread_id": "otel", "tenant_id": "t"}},
        )
    actions = [
        (s.name.split()[-1], s.attributes["guard_plugin.action"])
        for s in spans("guard_plugin.check")
    ]
    assert actions == [("input", "allow"), ("response", "escalate")]
    assert "idiot" not in everything(spans())


def test_a_nemo_turn_nests_its_check_under_the_app_span(tmp_path, monkeypatch) -> None:
    pytest.importorskip("nemoguardrails")
    from nemoguardrails import LLMRails, RailsConfig
    from nemoguardrails.testing.fake_model import FakeLLMModel

    import guard_plugin.nemo.actions as nemo_actions
    from guard_plugin.cli import main

    main(["init", "nemo", str(tmp_path / "rails")])
    monkeypatch.setitem(nemo_actions._state, "guard", guard())
    rails = LLMRails(
        RailsConfig.from_path(str(tmp_path / "rails" / "colang1")),
        llm=FakeLLMModel(responses=["never said"]),
    )
    with trace.get_tracer("app").start_as_current_span("nemo turn") as turn:
        rails.generate(
            messages=[
                {"role": "context", "content": {"tenant_id": "t"}},
                {"role": "user", "content": UNSAFE},
            ]
        )
    (check,) = spans("guard_plugin.check")
    assert check.attributes["guard_plugin.action"] == "block"
    assert check.context.trace_id == turn.get_span_context().trace_id


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_served_classifier_records_its_replica_and_retries_on_the_classify_span(
    mode: str,
) -> None:
    import asyncio

    from guard_plugin.classifiers.openai_compat import OpenAICompatClassifier

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down":
            return httpx.Response(503, json={"error": "overloaded"})
        message = {"role": "assistant", "content": "User Safety: safe"}
        return httpx.Response(200, json={"choices": [{"index": 0, "message": message}]})

    clf = OpenAICompatClassifier(
        ["http://down/v1", "http://up/v1"],
        model="m",
        transport=httpx.MockTransport(handle),
        backoff_s=0.0,
    )
    g = Guard(clf, audit=[])
    for i in range(3):
        text = f"hello {mode} {i}"
        asyncio.run(g.acheck(text)) if mode == "async" else g.check(text)
    classify = spans("guard_plugin.classify")
    assert {s.attributes.get("guard_plugin.classifier.replica") for s in classify} == {
        "http://up/v1"
    }
    retries = [e for s in classify for e in s.events if e.name == "guard_plugin.classifier.retry"]
    assert retries and retries[0].attributes["replica"] == "http://down/v1"
    assert all(s.kind.name == "CLIENT" for s in classify)
    g.close()
    clf.close()


def test_reviews_pending_counts_held_content_until_a_person_answers() -> None:
    pytest.importorskip("langchain")
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from guard_plugin.langchain import SafetyMiddleware
    from tests.lc_helpers import ScriptedChatModel, tool_call

    @tool
    def search(q: str) -> str:
        """Search."""
        return "how to build a bomb"

    def pending() -> float:
        points = [p for p in metric_points("guard_plugin.reviews.pending") if p["policy"] == "held"]
        return sum(p["_value"] for p in points)

    g = guard(held=Policy(id="held", actions={"tool": "escalate"}))
    model = ScriptedChatModel(responses=[tool_call("search", {"q": "x"}, "c1"), AIMessage("Ok.")])
    agent = create_agent(
        model, tools=[search], middleware=[SafetyMiddleware(g)], checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "pending", "tenant_id": "held"}}
    before = pending()
    agent.invoke({"messages": [HumanMessage("search")]}, config)
    assert agent.get_state(config).interrupts and pending() == before + 1
    agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    assert pending() == before


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_streams_window_checks_nest_under_one_stream_span(mode: str) -> None:
    import asyncio

    g = guard()
    text = " ".join(f"w{i}" for i in range(300)) + " you worthless idiot"
    pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
    if mode == "sync":
        list(g.stream(pieces, context="hi"))
    else:

        async def run() -> None:
            async for _ in g.astream(pieces, context="hi"):
                pass

        asyncio.run(run())
    (stream,) = spans("guard_plugin.stream")
    children = [
        s for s in spans() if s.parent is not None and s.parent.span_id == stream.context.span_id
    ]
    assert len(children) >= 2
    attrs = dict(stream.attributes or {})
    assert attrs["guard_plugin.stream.checks"] == len(children)
    assert attrs["guard_plugin.stream.stopped"] == "block"
