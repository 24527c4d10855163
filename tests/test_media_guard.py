"""Media through the Guard: fan-out, one batch, per-part decisions, and rewrite."""

from __future__ import annotations

import asyncio
import base64

import pytest
from PIL import Image

from guard_plugin import Action, Guard, Policy
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.media import artifact_withheld, load_pdf, rewrite_content
from guard_plugin.testing import ScriptedClassifier, make_screenshot, make_text_pdf
from tests.media_fixtures import b64, encode, encrypted_pdf, png


def red_is_violent(img) -> list[str]:
    r, g, b = img.to_pil().resize((1, 1)).getpixel((0, 0))
    return ["Violence"] if r > 150 and g < 100 and b < 100 else []


def guard(policy: Policy | None = None) -> tuple[Guard, ScriptedClassifier, MemoryAuditSink]:
    clf = ScriptedClassifier(image_rule=red_is_violent)
    sink = MemoryAuditSink()
    return Guard(clf, policies=policy or Policy(actions={"tool": "rewrite"}), audit=sink), clf, sink


PDF3 = make_text_pdf(
    ["Quarterly revenue grew.", "Step 1: build a bomb from fertiliser.", "Outlook is stable."]
)


def tool_result() -> list[dict]:
    return [
        {"type": "text", "text": "Here is what I found."},
        {"type": "image", "base64": b64(png("red")), "mime_type": "image/png"},
        {
            "type": "image",
            "base64": b64(make_screenshot("Weather: sunny")),
            "mime_type": "image/png",
        },
        {
            "type": "file",
            "base64": b64(PDF3),
            "mime_type": "application/pdf",
            "extras": {"filename": "r.pdf"},
        },
    ]


def test_fan_out_is_one_batch_and_withholds_exactly_the_unsafe_parts() -> None:
    g, clf, sink = guard()
    content = tool_result()
    d = g.check_content(content, surface="tool", tool_name="browser")
    assert clf.calls == 1 and len(clf.requests) == 6
    assert d.action is Action.REWRITE and d.categories == ("Violence", "Guns and Illegal Weapons")
    withheld = [d.parts[i].part for i in d.withheld_parts]
    assert withheld == ["content[1]", "content[3].page[1]"]
    assert sink.events[0].tool_name == "browser" and sink.events[0].parts == 6

    new = rewrite_content(content, d)
    assert isinstance(new, list) and new[0] == content[0] and new[2] == content[2]
    assert new[1] == {"type": "text", "text": Policy().messages.redaction}
    kept = load_pdf(base64.b64decode(new[3]["base64"]))
    assert [p.text.strip() for p in kept.pages] == ["Quarterly revenue grew.", "Outlook is stable."]
    assert new[3]["extras"] == {"filename": "r.pdf"} and new[3]["mime_type"] == "application/pdf"
    assert "page 2" in new[4]["text"]
    assert content[3]["base64"] == b64(PDF3)  # the original is untouched


@pytest.mark.parametrize(
    ("block", "key"),
    [
        (
            lambda d: {
                "type": "file",
                "file": {"file_data": f"data:application/pdf;base64,{b64(d)}", "filename": "a.pdf"},
            },
            "openai",
        ),
        (
            lambda d: {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": b64(d)},
            },
            "anthropic",
        ),
        (
            lambda d: {
                "type": "file",
                "source_type": "base64",
                "data": b64(d),
                "mime_type": "application/pdf",
            },
            "legacy",
        ),
    ],
)
def test_pdf_rewrite_keeps_each_format(block, key: str) -> None:
    g, _, _ = guard()
    content = [block(PDF3)]
    d = g.check_content(content, surface="tool")
    new = rewrite_content(content, d)
    if key == "openai":
        data = base64.b64decode(new[0]["file"]["file_data"].split(",", 1)[1])
        assert new[0]["file"]["filename"] == "a.pdf"
    elif key == "anthropic":
        data = base64.b64decode(new[0]["source"]["data"])
    else:
        data = base64.b64decode(new[0]["data"])
    assert load_pdf(data).page_count == 2


def test_long_text_rewrite_redacts_only_the_unsafe_window() -> None:
    g, _, _ = guard(Policy(actions={"tool": "rewrite"}, media={"text_window_chars": 1000}))
    filler = "The meeting covered budgets and timelines. " * 60
    text = filler + "Then someone explained how to build a bomb at home. " + filler
    d = g.check_content(text, surface="tool")
    assert d.action is Action.REWRITE and len(d.parts) > 3 and len(d.withheld_parts) >= 1
    new = rewrite_content(text, d)
    assert isinstance(new, str) and "bomb" not in new and Policy().messages.redaction in new
    assert new.startswith("The meeting covered") and new.rstrip().endswith("timelines.")
    assert len(new) > len(text) * 0.6


def test_unverifiable_media_follows_the_media_policy() -> None:
    content = [
        {"type": "text", "text": "see image"},
        {"type": "image", "url": "https://example.com/x.png"},
    ]
    g, _, sink = guard()
    d = g.check_content(content, surface="tool")
    assert d.blocked and d.status == "error" and d.error_kind == "unverifiable"
    assert sink.events[0].error_kind == "unverifiable"
    lenient, _, _ = guard(Policy(media={"unverifiable": "allow"}))
    d = lenient.check_content(content, surface="tool")
    assert d.allowed and d.status == "error"  # allowed by choice, never read as safe


@pytest.mark.parametrize(
    "block",
    [
        {"type": "image", "base64": b64(png()[:40]), "mime_type": "image/png"},
        {"type": "image", "base64": "not*base64", "mime_type": "image/png"},
        {"type": "file", "base64": b64(b"%PDF-1.4 broken"), "mime_type": "application/pdf"},
        {"type": "file", "base64": b64(encrypted_pdf()), "mime_type": "application/pdf"},
    ],
    ids=["truncated-png", "bad-base64", "corrupt-pdf", "encrypted-pdf"],
)
def test_bad_media_goes_through_on_error(block) -> None:
    g, _, sink = guard()
    d = g.check_content([{"type": "text", "text": "ok"}, block], surface="tool")
    assert d.blocked and d.status == "error" and d.error_kind == "media"
    assert sink.events[0].status == "error"
    rewrite, _, _ = guard(Policy(actions={"tool": "rewrite"}, on_error="allow"))
    assert rewrite.check_content([block], surface="tool").allowed


def test_encrypted_pdf_with_password() -> None:
    g, _, _ = guard()
    d = g.check_content(encrypted_pdf("pw"), surface="tool", password="pw")
    assert d.allowed and d.parts[0].part == "content.page[0]"


def test_pages_past_the_limit_are_decided_not_dropped() -> None:
    g, _, _ = guard(Policy(media={"max_pdf_pages": 2}))
    d = g.check_content(make_text_pdf(["a", "b", "c", "d"]), surface="tool")
    assert d.blocked and d.error_kind == "unverifiable"
    # the pages past the cap are one part, whatever their number
    assert [p.part for p in d.parts] == ["content.page[0]", "content.page[1]", "content.page[2:4]"]
    assert "pages 3-4 of 4" in (d.parts[2].error or "")


def test_async_content_check_matches_sync() -> None:
    g1, _, _ = guard()
    g2, _, _ = guard()
    a = g1.check_content(tool_result(), surface="tool", request_id="r")
    b = asyncio.run(g2.acheck_content(tool_result(), surface="tool", request_id="r"))
    strip = lambda d: {k: v for k, v in d.to_dict().items() if k != "latency_ms"}  # noqa: E731
    assert strip(a) == strip(b)


def test_artifact_is_checked_and_reported() -> None:
    g, _, _ = guard()
    d = g.check_content("screenshot taken", surface="tool", artifact=[png("red")])
    assert d.action is Action.REWRITE and artifact_withheld(d)
    assert rewrite_content("screenshot taken", d) == "screenshot taken"


def test_image_only_input_surface() -> None:
    g, _, _ = guard()
    d = g.check_content(
        [
            {
                "type": "image_url",
                "image_url": {
                    "url": "data:image/jpeg;base64,"
                    + b64(encode(Image.new("RGB", (50, 50), "red"), "JPEG"))
                },
            }
        ],
        surface="input",
    )
    assert d.blocked and d.categories == ("Violence",)


def test_response_surface_text_with_context() -> None:
    g, clf, _ = guard()
    d = g.check_content(
        [{"type": "text", "text": "you worthless idiot"}], surface="response", context="hi"
    )
    assert (
        d.blocked
        and clf.requests[0].user_text == "hi"
        and clf.requests[0].response_text == "you worthless idiot"
    )


@pytest.mark.parametrize("surface", ["input", "tool", "response"])
def test_short_text_fast_path_matches_the_full_path(surface: str) -> None:
    g1, _, _ = guard()
    g2, _, _ = guard()
    text = "you worthless idiot"
    fast = g1.check_content(text, surface=surface, context="hi", request_id="r")
    full = g2.check_content(
        [{"type": "text", "text": text}], surface=surface, context="hi", request_id="r"
    )
    strip = lambda d: {k: v for k, v in d.to_dict().items() if k not in ("latency_ms", "parts")}  # noqa: E731
    assert strip(fast) == strip(full) and fast.parts[0].part == "content"


def test_an_unannounced_decoder_failure_is_an_audited_block(monkeypatch) -> None:
    import guard_plugin.media.fanout as content

    def broken(*args, **kwargs):
        raise RuntimeError("pdfium render failed")

    monkeypatch.setattr(content, "load_pdf", broken)
    g, _, sink = guard()
    d = g.check_content(
        [{"type": "file", "base64": b64(PDF3), "mime_type": "application/pdf"}], surface="tool"
    )
    assert (
        d.blocked
        and d.status == "error"
        and d.error_kind == "media"
        and "pdfium" in (d.error or "")
    )
    assert sink.events[0].error_kind == "media"
    d = asyncio.run(
        g.acheck_content(
            [{"type": "file", "base64": b64(PDF3), "mime_type": "application/pdf"}], surface="tool"
        )
    )
    assert d.blocked and d.error_kind == "media"
