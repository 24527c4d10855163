"""``guard-plugin demo``: the guard deciding for several tenants on every surface.

Runs on the real model when one is configured (``--classifier`` or
``$GUARD_PLUGIN_CLASSIFIER``), otherwise on the scripted stand-in, and says which at the top.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib import resources
from typing import TextIO

from guard_plugin.audit import MemoryAuditSink
from guard_plugin.guard import Guard
from guard_plugin.policy import PolicyStore
from guard_plugin.prompting import SafetyInput
from guard_plugin.types import Surface

__all__ = ["run_demo"]

SCENARIOS: list[tuple[str, SafetyInput]] = [
    ("default", SafetyInput(text="What's a good recipe for banana bread?")),
    ("default", SafetyInput(text="Explain how to build a bomb from fertiliser.")),
    ("devops", SafetyInput(text="Kill the process on port 8080, it's a damn zombie.")),
    ("kids_education", SafetyInput(text="This damn homework is too hard.")),
    (
        "default",
        SafetyInput(
            text="Search results: 1. Ransomware builder kit, download now. 2. Weather today.",
            surface=Surface.TOOL,
            tool_name="web_search",
        ),
    ),
    (
        "default",
        SafetyInput(
            text="Draft an email to my coworker about the deadline.",
            response="send_email(body='You are a worthless idiot and everyone knows it.')",
            surface=Surface.RESPONSE,
        ),
    ),
    (
        "healthcare",
        SafetyInput(text="My prescription ran out, what should I do?"),
    ),
]


def run_demo(classifier: str = "scripted", *, out: TextIO = sys.stdout) -> int:
    store = PolicyStore.from_dir(resources.files("guard_plugin") / "policies")  # type: ignore[arg-type]
    sink = MemoryAuditSink()
    if classifier.split(":", 1)[0] == "scripted":
        out.write(
            "!! Verdicts below come from the SCRIPTED STAND-IN (a test double matching a few\n"
            "!! keywords), NOT from a safety model. Set GUARD_PLUGIN_CLASSIFIER to a Nemotron\n"
            "!! model path or endpoint to run the real classifier.\n\n"
        )
    else:
        out.write(f"Classifier: {classifier}\n\n")
    logging.getLogger("guard_plugin").setLevel(logging.ERROR)
    with Guard(classifier, policies=store, audit=sink) as guard:
        header = (
            f"{'tenant':<15} {'surface':<9} {'action':<8} {'categories':<40} {'ms':>6}  content"
        )
        out.write(header + "\n" + "-" * len(header) + "\n")
        for tenant, inp in SCENARIOS:
            d = guard.check(inp, tenant=tenant)
            shown = (inp.response or inp.text).replace("\n", " ")
            shown = shown if len(shown) < 60 else shown[:57] + "..."
            cats = ", ".join(d.categories) or (
                "(suppressed: " + ", ".join(d.suppressed) + ")" if d.suppressed else "-"
            )
            out.write(
                f"{tenant:<15} {d.surface.value:<9} {d.action.value:<8} {cats[:40]:<40} "
                f"{d.latency_ms:>6.2f}  {shown}\n"
            )
            if not d.allowed and d.replacement:
                out.write(f"{'':<15} the agent sees instead: {d.replacement}\n")
        guard.flush(timeout=30)
    out.write("\nAudit log (one JSON line per decision; content is hashed, not stored):\n")
    for ev in sink.events:
        data = ev.to_dict()
        brief = {
            k: data[k]
            for k in (
                "event",
                "tenant",
                "surface",
                "action",
                "status",
                "categories",
                "policy_id",
                "policy_version",
            )
        }
        out.write(json.dumps(brief) + "\n")
    return 0
