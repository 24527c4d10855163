"""Hostile media stays bounded: page-count bombs, block floods, and nothing dropped silently."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest

from guard_plugin import Guard, Policy
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.media import extract_parts, load_pdf, rewrite_content
from guard_plugin.policy import MediaLimits
from guard_plugin.testing import ScriptedClassifier, make_text_pdf
from tests.media_fixtures import b64, png

SVG = b"<svg xmlns='http://www.w3.org/2000/svg'><text>hi</text></svg>"


def guard(policy: Policy | None = None) -> Guard:
    return Guard(ScriptedClassifier(), policies=policy or Policy(), audit=MemoryAuditSink())


def pdf_block(data: bytes) -> dict[str, Any]:
    return {"type": "file", "base64": b64(data), "mime_type": "application/pdf"}


# -- page-count bomb ------------------------------------------------------------------------------

_BOMB_CHILD = r"""
import base64, json, resource
from guard_plugin import Guard
from guard_plugin.testing import make_text_pdf
pdf = make_text_pdf([f"page {i}" for i in range(20)], claimed_pages=1_048_574)
guard = Guard("scripted", audit=[])
warm = make_text_pdf(["warm-up"])
guard.check_content([{"type": "file", "base64": base64.b64encode(warm).decode(),
                      "mime_type": "application/pdf"}], surface="tool")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
d = guard.check_content([{"type": "file", "base64": base64.b64encode(pdf).decode(),
                          "mime_type": "application/pdf"}], surface="tool")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_mib": (peak - base) / 1024, "parts": [p.part for p in d.parts],
                  "errors": [p.error for p in d.parts if p.error], "action": d.action.value}))
"""


def test_a_page_count_bomb_costs_one_part_and_little_memory() -> None:
    """20 real pages, a page tree claiming 1,048,574: PDFium reports the claim. Measured in a
    fresh interpreter so peak RSS is this check's own (it grew by about 1 GB before)."""
    out = subprocess.run(
        [sys.executable, "-c", _BOMB_CHILD], capture_output=True, text=True, check=True, timeout=300
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["action"] == "block"
    assert len(r["parts"]) == 21 and r["parts"][-1] == "content[0].page[20:1048574]"
    assert "pages 21-1048574 of 1,048,574" in r["errors"][-1]
    assert r["growth_mib"] < 150, r["growth_mib"]


def test_skipped_pages_are_a_range() -> None:
    pdf = load_pdf(make_text_pdf(["a", "b"], claimed_pages=1_048_574), MediaLimits(max_pdf_pages=2))
    assert pdf.page_count == 1_048_574 and pdf.skipped == range(2, 1_048_574)


def test_pages_a_document_claims_but_lacks_are_a_document_error() -> None:
    d = guard().check_content(
        [pdf_block(make_text_pdf(["only page"], claimed_pages=50))], surface="tool"
    )
    assert d.blocked and d.status == "error" and d.error_kind == "media"
    assert d.parts[0].part == "content[0]" and "claims 50 pages" in (d.error or "")


def test_a_ranged_part_is_withheld_by_rewrite_without_expanding_it() -> None:
    content = [pdf_block(make_text_pdf(["p1", "p2", "p3", "p4"]))]
    g = guard(Policy(media={"max_pdf_pages": 2}))
    d = g.check_content(content, surface="tool")
    assert d.parts[-1].part == "content[0].page[2:4]" and d.withheld_parts[-1] == 2
    out = rewrite_content(content, d, redaction="[withheld]")
    kept = load_pdf(base64.b64decode(out[0]["base64"]))
    assert [p.text.strip() for p in kept.pages] == ["p1", "p2"]
    assert out[1]["text"] == "[withheld] (pages 3-4 of this document)"


# -- floods of blocks and images ----------------------------------------------------------------


def test_blocks_past_the_cap_are_one_part() -> None:
    parts = extract_parts(["x"] * 100_000, MediaLimits(max_blocks=10))
    assert len(parts) == 11 and parts[-1].ref.label == "content[10:100000]"
    d = guard(Policy(media={"max_blocks": 10})).check_content(["hi"] * 50, surface="tool")
    assert d.blocked and d.error_kind == "unverifiable" and d.parts[-1].part == "content[10:50]"


def test_blocks_are_counted_across_content_and_artifact() -> None:
    parts = extract_parts(["x"] * 6, MediaLimits(max_blocks=8), artifact=["y"] * 6)
    assert [p.ref.label for p in parts[-2:]] == ["artifact[1]", "artifact[2:6]"]


def test_nested_blocks_count_too() -> None:
    nested = {
        "type": "document",
        "source": {"type": "content", "content": [{"type": "text", "text": "t"}] * 1000},
    }
    parts = extract_parts([nested], MediaLimits(max_blocks=5))
    # the document block itself is one of the five
    assert len(parts) == 5 and "996 nested blocks" in str(parts[-1].error)


def test_images_past_the_cap_are_not_decoded() -> None:
    img = {"type": "image", "base64": b64(png()), "mime_type": "image/png"}
    pdf = pdf_block(make_text_pdf(["a", "b", "c"]))
    d = guard(Policy(media={"max_images": 4})).check_content([img, img, pdf, img], surface="tool")
    labels = [p.part for p in d.parts]
    assert labels == [
        "content[0]",
        "content[1]",
        "content[2].page[0]",
        "content[2].page[1]",
        "content[2].page[2]",
        "content[3]",
    ]
    assert [p.status for p in d.parts] == ["safe"] * 4 + ["error", "error"]
    assert "max_images (4)" in (d.parts[4].error or "") and d.blocked


# -- nothing that fails to decode is dropped ----------------------------------------------------


@pytest.mark.parametrize(
    "artifact",
    [
        SVG,
        [SVG],
        {"chart": SVG},
        {"charts": [png(), SVG]},
        {"chart": {"type": "image", "base64": b64(SVG), "mime_type": "image/svg+xml"}},
        {"blob": b"\x00\x01garbage"},
    ],
    ids=["bytes", "list", "dict", "dict-of-list", "dict-of-block", "dict-of-garbage"],
)
def test_an_artifact_that_fails_to_decode_blocks_in_every_shape(artifact: Any) -> None:
    d = guard().check_content("here is the chart", surface="tool", artifact=artifact)
    assert d.blocked and d.status == "error", d.parts


def test_an_artifact_dict_of_metadata_is_checked_as_text() -> None:
    clf = ScriptedClassifier()
    g = Guard(clf, policies=Policy(), audit=[])
    d = g.check_content("ok", surface="tool", artifact={"meta": {"source": "web"}, "n": 3})
    assert d.allowed and [p.part for p in d.parts] == ["content", "artifact[0]"]
