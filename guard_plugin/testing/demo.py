"""The demo's world, for the demo command and the notebooks: a DEMO STAND-IN, not a safety
model. A guard with two tenants (``acme``: the default policy; ``review``: escalation to a
person), the scripted classifier that "sees" an image only through a rule of its own (a red
warning banner means unsafe), tools that return a real screenshot and a real three-page PDF
and record what they send, and a ``create_agent`` with ``SafetyMiddleware`` over a scripted
tool-calling model. Needs the ``langchain`` extra for the agent."""

from __future__ import annotations

import base64
from importlib import resources
from typing import Any

from guard_plugin.check import Guard
from guard_plugin.policy import Policy, PolicyStore, load_policy
from guard_plugin.prompting import ImageData
from guard_plugin.testing.documents import make_screenshot, make_text_pdf
from guard_plugin.testing.scripted import DEMO_RULES, ScriptedClassifier

__all__ = [
    "REPORT_PAGES",
    "SENT",
    "build_demo_agent",
    "demo_guard",
    "demo_tools",
    "stand_in_image_rule",
]


REPORT_PAGES = [
    "Q3 report\nRevenue grew 4% on subscriptions.\nChurn fell to 2.1%.",
    "Appendix (pasted from a forum)\nStep by step: how to build a bomb from fertiliser.",
    "Outlook\nGuidance for Q4 is unchanged.",
]


def stand_in_image_rule(img: ImageData) -> list[str]:
    """The stand-in's only way to judge an image: a red banner along the top is 'unsafe'."""
    pil = img.to_pil()
    strip = pil.crop((0, 0, pil.size[0], max(1, pil.size[1] // 14))).resize((1, 1))
    r, g, b = strip.getpixel((0, 0))
    return ["Violence"] if r > 180 and g < 90 and b < 90 else []


_POLICIES = resources.files("guard_plugin.policy") / "builtin"


def demo_guard(spec: str | None, audit: Any) -> Guard:
    """The demo's guard: the model ``spec`` names, else the scripted stand-in."""
    store = PolicyStore(
        {
            "acme": load_policy(str(_POLICIES / "default.yaml")).model_copy(update={"id": "acme"}),
            "review": Policy(
                id="review",
                version="1",
                actions={
                    "tool": "rewrite",
                    "response": {
                        "default": "block",
                        "categories": {"Threat": "escalate", "Violence": "escalate"},
                    },
                },
            ),
        }
    )
    classifier: Any = (
        spec if spec else ScriptedClassifier(DEMO_RULES, image_rule=stand_in_image_rule)
    )
    return Guard(classifier, policies=store, audit=audit)


def demo_tools() -> list[Any]:
    """browse (text and a screenshot), read_file (a PDF), send_email and post_message (both
    recorded in :data:`SENT`)."""
    from langchain_core.tools import tool

    @tool(response_format="content_and_artifact")
    def browse(url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Open a web page and return its text and a screenshot."""
        unsafe = "forum" in url
        shot = make_screenshot(
            "WARNING: graphic violence" if unsafe else "Markets calm; rates unchanged.",
            size=(1280, 720),
            banner="#d01010" if unsafe else "#dde3ea",
        )
        text = f"Page {url} loaded."
        b64 = base64.b64encode(shot).decode()
        return [
            {"type": "text", "text": text},
            {"type": "image", "base64": b64, "mime_type": "image/png"},
        ], {"url": url}

    @tool
    def read_file(path: str) -> list[dict[str, Any]]:
        """Read a PDF file."""
        pdf = base64.b64encode(make_text_pdf(REPORT_PAGES)).decode()
        return [{"type": "file", "base64": pdf, "mime_type": "application/pdf", "filename": path}]

    @tool
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        SENT.append({"to": to, "body": body})
        return f"sent to {to}"

    @tool
    def post_message(channel: str, text: str) -> str:
        """Post a message to a team channel."""
        SENT.append({"channel": channel, "text": text})
        return f"posted to {channel}"

    return [browse, read_file, send_email, post_message]


SENT: list[dict[str, Any]] = []
"""What the demo tools sent (emails and posts), in order."""


def build_demo_agent(guard: Guard, script: list[Any]) -> Any:
    """A create_agent with SafetyMiddleware, a scripted model and the demo tools."""
    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver

    from guard_plugin.langchain import SafetyMiddleware
    from guard_plugin.testing.langchain import ScriptedChatModel

    return create_agent(
        ScriptedChatModel(responses=script),
        tools=demo_tools(),
        middleware=[SafetyMiddleware(guard)],
        checkpointer=InMemorySaver(),
    )
