"""``guard-plugin demo``: a guarded agent that browses, reads a PDF and sends email.

The agent is ``create_agent`` with a scripted tool-calling model, so it runs offline. Its
tools return a real screenshot (PNG) and a real three-page PDF. Verdicts come from the
Nemotron model when ``--classifier`` / ``$GUARD_PLUGIN_CLASSIFIER`` names one, and otherwise
from the scripted stand-in, which is not a safety model: it matches a few keywords in text,
and "sees" an image only through a rule of its own (a red warning banner means unsafe). The
output says which one is running.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from guard_plugin.audit import AuditEvent, JsonlAuditSink, MemoryAuditSink, MultiAuditSink
from guard_plugin.testing.demo import SENT, build_demo_agent, demo_guard, stand_in_image_rule

__all__ = ["build_demo_agent", "demo_guard", "run_demo", "stand_in_image_rule"]

SCRIPTED_NOTE = (
    "Verdicts below come from the SCRIPTED STAND-IN, a test double that matches a few keywords "
    "and treats screenshots with a red warning banner as unsafe. It is NOT a safety model. "
    "Set GUARD_PLUGIN_CLASSIFIER (a model folder, a cached Hugging Face id, or an endpoint) to "
    "run Nemotron Content Safety."
)


def _scripts() -> tuple[list[Any], list[Any]]:
    from langchain_core.messages import AIMessage

    from guard_plugin.testing.langchain import tool_call

    research = [
        tool_call("browse", {"url": "https://news.example/markets"}, "c1"),
        tool_call("browse", {"url": "https://forum.example/thread/91"}, "c2"),
        tool_call("read_file", {"path": "q3_report.pdf"}, "c3"),
        tool_call(
            "send_email",
            {"to": "bob@example.com", "body": "Bob, you worthless idiot, the numbers are in."},
            "c4",
        ),
        AIMessage(
            "Markets were calm, Q3 revenue grew 4% and guidance is unchanged. "
            "I did not send the email."
        ),
    ]
    escalation = [
        tool_call(
            "post_message",
            {"channel": "#ops", "text": "If the deploy fails again I will kill them all."},
            "c5",
        ),
        AIMessage("Understood, I won't post that."),
    ]
    return research, escalation


def _short(content: Any, limit: int = 90) -> str:
    if isinstance(content, str):
        text = content
    else:
        bits = []
        for b in content:
            if isinstance(b, dict) and b.get("type") == "text":
                bits.append(b["text"])
            elif isinstance(b, dict):
                label = b.get("filename") or b.get("mime_type") or b.get("type")
                bits.append(f"<{b.get('type')}: {label}>")
        text = " | ".join(bits)
    from rich.markup import escape

    text = text.replace("\n", " ")
    return escape(text if len(text) <= limit else text[: limit - 3] + "...")


def run_demo(classifier: str | None = None, *, console: Any = None) -> int:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langgraph.types import Command
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    console = console or Console()
    spec = classifier if classifier and not classifier.startswith("scripted") else None
    if spec:
        console.print(Panel(f"Classifier: [bold]{spec}[/bold]", title="guard_plugin demo"))
    else:
        console.print(
            Panel(SCRIPTED_NOTE, title="guard_plugin demo: scripted stand-in", border_style="red")
        )

    tmp = Path(tempfile.mkdtemp(prefix="guard-plugin-demo-"))
    memory = MemoryAuditSink()
    jsonl = JsonlAuditSink(tmp / "audit.jsonl")
    guard = demo_guard(spec, MultiAuditSink([memory, jsonl]))
    research, escalation = _scripts()
    SENT.clear()

    def decisions(events: list[AuditEvent], title: str) -> None:
        table = Table(title=title, title_justify="left")
        for col in ("surface", "tool", "decision", "categories", "ms", "withheld"):
            table.add_column(col)
        for e in events:
            style = {
                "allow": "green",
                "block": "red",
                "rewrite": "yellow",
                "escalate": "magenta",
            }.get(e.action, "")
            verdict = f"[{style}]{e.action}[/{style}]" + (" (error)" if e.status == "error" else "")
            if e.event == "review":  # a person's answer to an escalation
                verdict = f"reviewer: {e.review} -> {verdict}"
            table.add_row(
                e.surface,
                e.tool_name or "",
                verdict,
                ", ".join(e.categories) or "-",
                "-" if e.event == "review" else f"{e.latency_ms:.2f}",
                ", ".join(str(i) for i in e.unsafe_parts) if e.action != "allow" else "",
            )
        console.print(table)

    def transcript(messages: list[Any]) -> None:
        table = Table(title="What the agent saw", title_justify="left", show_lines=False)
        table.add_column("role")
        table.add_column("content")
        for m in messages:
            if isinstance(m, AIMessage) and m.tool_calls:
                calls = "; ".join(
                    f"{c['name']}({json.dumps(c['args'])[:60]})" for c in m.tool_calls
                )
                table.add_row("assistant", _short(f"calls {calls}", 200))
            elif isinstance(m, ToolMessage):
                table.add_row(f"tool:{m.name}", _short(m.content))
            else:
                table.add_row(
                    "user" if isinstance(m, HumanMessage) else "assistant", _short(m.content)
                )
        console.print(table)

    console.rule("1. Research task (tenant 'acme')")
    agent = build_demo_agent(guard, research)
    cfg = {"configurable": {"thread_id": "research", "tenant_id": "acme"}}
    out = agent.invoke(
        {
            "messages": [
                HumanMessage(
                    "Check the markets and that forum thread, summarise q3_report.pdf, "
                    "then email Bob."
                )
            ]
        },
        cfg,
    )
    decisions(list(memory.events), "Guard decisions")
    transcript(out["messages"])
    console.print(f"Emails actually sent: {len([s for s in SENT if 'to' in s])}")

    console.rule("2. Escalation to a human reviewer (tenant 'review')")
    start = len(memory.events)
    agent = build_demo_agent(guard, escalation)
    cfg = {"configurable": {"thread_id": "review", "tenant_id": "review"}}
    out = agent.invoke({"messages": [HumanMessage("Tell #ops the deploy failed again.")]}, cfg)
    if "__interrupt__" in out:
        payload = out["__interrupt__"][0].value
        req = payload["action_requests"][0]
        console.print(
            Panel(
                _short(
                    f"{req['description']} / action: {req['name']}({json.dumps(req['args'])}) / "
                    f"allowed decisions: {payload['review_configs'][0]['allowed_decisions']}",
                    400,
                ),
                title="interrupt: human review requested",
                border_style="magenta",
            )
        )
        console.print('Reviewer decision: [bold]reject[/bold] ("Please don\'t post threats.")')
        out = agent.invoke(
            Command(
                resume={"decisions": [{"type": "reject", "message": "Please don't post threats."}]}
            ),
            cfg,
        )
    decisions(memory.events[start:], "Guard decisions")
    transcript(out["messages"])
    console.print(f"Messages actually posted: {len([s for s in SENT if 'channel' in s])}")

    guard.flush()
    jsonl.close()
    console.rule("Audit log (JsonlAuditSink, one JSON line per event; the demo's copy is removed)")
    lines = (tmp / "audit.jsonl").read_text().splitlines()
    shutil.rmtree(tmp, ignore_errors=True)
    for line in lines:
        e = json.loads(line)
        console.print(
            json.dumps(
                {
                    k: e[k]
                    for k in (
                        "event",
                        "tenant",
                        "surface",
                        "tool_name",
                        "action",
                        "review",
                        "status",
                        "categories",
                        "policy_id",
                        "latency_ms",
                    )
                    if k in e
                }
            ),
            markup=False,
            highlight=False,
        )
    return 0
