"""Media an assistant turn carries (a generated image, a file) is not classified on the
response surface: each such block is an unverifiable part, decided by the tenant's
``media.unverifiable`` (block by default), never passed as if checked."""

from __future__ import annotations

import base64
from typing import Any

import pytest

pytest.importorskip("langchain")

from langchain_core.messages import AIMessage, HumanMessage

from guard_plugin import Policy
from guard_plugin.lc_messages import find_response
from tests.media_fixtures import png
from tests.test_reasoning import ADAPTERS, REFUSAL, everything, everywhere

PIXELS = base64.b64encode(png("red", (20, 20))).decode()

TURNS = {
    "image": lambda: AIMessage(
        [
            {"type": "text", "text": "Here is your picture."},
            {"type": "image", "base64": PIXELS, "mime_type": "image/png"},
        ]
    ),
    "image_url": lambda: AIMessage(
        [
            {"type": "text", "text": "Here is your picture."},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXELS}"}},
        ]
    ),
    "image_generation_call": lambda: AIMessage(
        [
            {"type": "text", "text": "Here is your picture."},
            {"type": "image_generation_call", "id": "ig_1", "result": PIXELS},
        ]
    ),
}


@everywhere
@pytest.mark.parametrize("shape", sorted(TURNS))
def test_a_generated_image_is_decided_by_media_unverifiable(
    build: Any, streaming: bool, mode: str, shape: str
) -> None:
    app, sink = build(TURNS[shape](), Policy(id="acme"), streaming)
    seen, last = everything(app, mode)
    assert PIXELS[:40] not in seen
    assert str(last.content).endswith(REFUSAL)
    blocked = [e for e in sink.events if e.surface == "response" and e.action == "block"]
    assert blocked and blocked[-1].status == "error", blocked


@ADAPTERS
def test_a_tenant_may_let_unverifiable_media_through(build: Any) -> None:
    policy = Policy(id="acme", media={"unverifiable": "allow"})
    app, _ = build(TURNS["image"](), policy, False)
    _, last = everything(app, "sync")
    assert last.content == TURNS["image"]().content


def test_provider_blocks_that_carry_no_media_are_not_unverifiable() -> None:
    """Anthropic's tool_use block beside tool_calls, and a text block: no media part."""
    ai = AIMessage(
        [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "c1", "name": "search", "input": {"q": "x"}},
        ],
        tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1", "type": "tool_call"}],
    )
    rc = find_response([HumanMessage("hi"), ai])
    assert rc is not None
    assert [i.part.label for i in rc.inputs] == ["text", "tool_call:c1"]


def test_guard_check_decides_a_failed_part_beside_its_inputs() -> None:
    from guard_plugin import Guard, SafetyInput
    from guard_plugin.errors import UnverifiableMedia
    from guard_plugin.media import FailedPart
    from guard_plugin.testing import ScriptedClassifier
    from guard_plugin.types import PartRef, Surface

    guard = Guard(ScriptedClassifier(), audit=[])
    part = FailedPart(PartRef("content", 1), UnverifiableMedia("not checked"))
    text = SafetyInput(text="hi", response="Hello.", surface=Surface.RESPONSE)
    d = guard.check([text, part])
    assert d.action.value == "block" and d.status == "error"
    allowed = Guard(
        ScriptedClassifier(), policies=Policy(media={"unverifiable": "allow"}), audit=[]
    ).check([text, part])
    assert allowed.action.value == "allow"
    assert guard.check([part], surface="response").action.value == "block"
