"""The verdict parser: a table of model outputs, and properties over arbitrary text."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard_plugin.errors import VerdictParseError
from guard_plugin.verdict import Verdict, parse_verdict

ERR = "error"

# (model output, expect_response, expected user, expected response, expected categories) or ERR
CASES: list[tuple[str, str, bool, object]] = [
    # -- plain verdicts
    ("safe", "User Safety: safe", False, ("safe", None, ())),
    (
        "unsafe-cats",
        "User Safety: unsafe\nSafety Categories: Violence, Threat",
        False,
        ("unsafe", None, ("Violence", "Threat")),
    ),
    ("unsafe-no-cats", "User Safety: unsafe", False, ("unsafe", None, ())),
    ("lower-case", "user safety: SAFE", False, ("safe", None, ())),
    (
        "spaces-around-colon",
        "User Safety :   unsafe\nSafety Categories :Violence",
        False,
        ("unsafe", None, ("Violence",)),
    ),
    ("leading-indent", "   User Safety: safe", False, ("safe", None, ())),
    (
        "trailing-words",
        "User Safety: unsafe (high confidence)\nSafety Categories: Malware",
        False,
        ("unsafe", None, ("Malware",)),
    ),
    ("trailing-punct", "User Safety: safe.", False, ("safe", None, ())),
    ("leading-blank-lines", "\n\n User Safety: safe\n", False, ("safe", None, ())),
    (
        "crlf",
        "User Safety: unsafe\r\nSafety Categories: Profanity\r\n",
        False,
        ("unsafe", None, ("Profanity",)),
    ),
    (
        "category-spacing",
        "User Safety: unsafe\nSafety Categories:  A ,B,, C ",
        False,
        ("unsafe", None, ("A", "B", "C")),
    ),
    (
        "empty-categories-line",
        "User Safety: unsafe\nSafety Categories:",
        False,
        ("unsafe", None, ()),
    ),
    (
        "categories-before-verdict",
        "Safety Categories: Violence\nUser Safety: unsafe",
        False,
        ("unsafe", None, ("Violence",)),
    ),
    (
        "safe-with-categories",
        "User Safety: safe\nSafety Categories: Needs Caution",
        False,
        ("safe", None, ("Needs Caution",)),
    ),
    # -- user + response
    ("both-safe", "User Safety: safe\nResponse Safety: safe", True, ("safe", "safe", ())),
    (
        "unsafe-user-safe-response",
        "User Safety: unsafe\nResponse Safety: safe\nSafety Categories: Violence",
        True,
        ("unsafe", "safe", ("Violence",)),
    ),
    (
        "response-unsafe",
        "User Safety: safe\nResponse Safety: unsafe\nSafety Categories: Harassment",
        True,
        ("safe", "unsafe", ("Harassment",)),
    ),
    (
        "response-only",
        "Response Safety: unsafe\nSafety Categories: Fraud/Deception",
        True,
        (None, "unsafe", ("Fraud/Deception",)),
    ),
    (
        "response-line-read-on-user-check",
        "User Safety: safe\nResponse Safety: unsafe",
        False,
        ("safe", "unsafe", ()),
    ),
    ("no-response-line-on-response-check", "User Safety: safe", True, ERR),
    ("no-fallback-to-user", "User Safety: unsafe\nSafety Categories: Violence", True, ERR),
    ("response-only-on-user-check", "Response Safety: safe", False, ERR),
    # -- think traces
    (
        "think-then-verdict",
        "<think>\nLooks fine.\n</think>\nUser Safety: safe",
        False,
        ("safe", None, ()),
    ),
    (
        "think-no-newline",
        "<think>x</think>User Safety: unsafe\nSafety Categories: Violence",
        False,
        ("unsafe", None, ("Violence",)),
    ),
    (
        "think-quotes-verdicts",
        "<think>Not User Safety: unsafe; rather User Safety: safe.</think>\nUser Safety: safe",
        False,
        ("safe", None, ()),
    ),
    ("think-unterminated", "<think>\nThe user asks about", False, ERR),
    ("think-unterminated-after-verdict", "User Safety: safe\n<think>more", False, ERR),
    (
        "two-think-blocks",
        "<think>a</think><think>b</think>\nUser Safety: safe",
        False,
        ("safe", None, ()),
    ),
    ("think-only", "<think>all reasoning</think>", False, ERR),
    ("think-inside-think", "<think><think>a</think>\nUser Safety: safe", False, ("safe", None, ())),
    # -- duplicates
    ("duplicate-user", "User Safety: safe\nUser Safety: unsafe", False, ERR),
    ("duplicate-same-value", "User Safety: safe\nUser Safety: safe", False, ERR),
    ("duplicate-inline", "User Safety: safe; User Safety: unsafe", False, ERR),
    (
        "duplicate-response",
        "User Safety: safe\nResponse Safety: safe\nResponse Safety: unsafe",
        True,
        ERR,
    ),
    (
        "duplicate-response-on-user-check",
        "User Safety: safe\nResponse Safety: safe\nResponse Safety: unsafe",
        False,
        ERR,
    ),
    (
        "duplicate-categories",
        "User Safety: unsafe\nSafety Categories: Profanity\nSafety Categories: Violence",
        False,
        ERR,
    ),
    ("prose-mention-before", "I think User Safety: unsafe\nUser Safety: safe", False, ERR),
    # -- line anchoring and values
    ("not-line-anchored", "The answer is User Safety: safe", False, ERR),
    ("undetermined", "User Safety: undetermined", False, ERR),
    ("safely", "User Safety: safely", False, ERR),
    ("unsafely", "User Safety: unsafely", False, ERR),
    ("missing-value", "User Safety:", False, ERR),
    ("yes-no", "User Safety: yes", False, ERR),
    ("harm-format", "Prompt harm: harmful", False, ERR),
    ("json", '{"User Safety": "safe"}', False, ERR),
    ("json-unquoted", "{User Safety: safe}", False, ERR),
    ("empty", "", False, ERR),
    ("whitespace", "  \n\t ", False, ERR),
    ("garbage", "<bos><pad> asdf ##", False, ERR),
    ("markdown-bold", "**User Safety**: safe", False, ERR),
    ("dash-prefix", "- User Safety: safe", False, ERR),
    ("typo", "User Saftey: safe", False, ERR),
    ("safe-hyphen-suffix", "User Safety: safe-ish", False, ("safe", None, ())),
]


@pytest.mark.parametrize(
    ("name", "text", "expect_response", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_parse_table(name: str, text: str, expect_response: bool, expected: object) -> None:
    if expected == ERR:
        with pytest.raises(VerdictParseError) as info:
            parse_verdict(text, expect_response=expect_response)
        assert info.value.raw == text
        return
    v = parse_verdict(text, expect_response=expect_response)
    assert (v.user_safety, v.response_safety, v.categories) == expected
    assert v.raw == text


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_reasoning_from_think_and_from_server() -> None:
    v = parse_verdict("<think>\n trace \n</think>\nUser Safety: safe")
    assert v.reasoning == "trace"
    v = parse_verdict("User Safety: safe", reasoning="server trace")
    assert v.reasoning == "server trace"
    v = parse_verdict("<think>b</think>User Safety: safe", reasoning="a")
    assert v.reasoning == "a\n\nb"
    assert parse_verdict("User Safety: safe").reasoning is None


def test_verdict_is_frozen() -> None:
    v = parse_verdict("User Safety: safe")
    with pytest.raises(AttributeError):
        v.user_safety = "unsafe"  # type: ignore[misc]
    assert isinstance(v, Verdict)


def test_non_text_is_an_error() -> None:
    with pytest.raises(VerdictParseError):
        parse_verdict(None)  # type: ignore[arg-type]


def test_error_message_carries_raw_text() -> None:
    with pytest.raises(VerdictParseError, match="undetermined"):
        parse_verdict("User Safety: undetermined")


# -- properties ----------------------------------------------------------------------------

_WELL_FORMED_SAFE = re.compile(r"^\s*User Safety\s*:\s*safe\b", re.IGNORECASE | re.MULTILINE)
_WELL_FORMED_RESPONSE_SAFE = re.compile(
    r"^\s*Response Safety\s*:\s*safe\b", re.IGNORECASE | re.MULTILINE
)

_fragments = st.sampled_from(
    [
        "User Safety: safe",
        "User Safety: unsafe",
        "Response Safety: safe",
        "Response Safety: unsafe",
        "Safety Categories: Violence",
        "<think>",
        "</think>",
        "\n",
        " ",
        "safe",
        "unsafe",
        "User",
        "Safety",
        ":",
        "user safety:safe",
        "USER SAFETY: SAFE",
        "x",
        "\r\n",
        ",",
    ]
)
_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(_fragments, st.text(max_size=8)), max_size=12).map("".join),
)


@settings(max_examples=600, deadline=None)
@given(_texts, st.booleans())
def test_arbitrary_text_never_parses_safe_without_a_well_formed_safe_verdict(
    text: str, expect_response: bool
) -> None:
    try:
        v = parse_verdict(text, expect_response=expect_response)
    except VerdictParseError:
        return
    label = v.response_safety if expect_response else v.user_safety
    assert label in ("safe", "unsafe")
    visible = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    if label == "safe":
        pattern = _WELL_FORMED_RESPONSE_SAFE if expect_response else _WELL_FORMED_SAFE
        assert pattern.search(visible), text
        assert "<think>" not in visible
        # a safe verdict is never accompanied by a contradicting unsafe one
        field = "Response Safety" if expect_response else "User Safety"
        assert len(re.findall(rf"{field}\s*:\s*(safe|unsafe)\b", visible, re.IGNORECASE)) == 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parser_never_raises_anything_but_parse_errors(text: str) -> None:
    with contextlib.suppress(VerdictParseError):
        parse_verdict(text)


def test_categories_line_is_read_in_any_case() -> None:
    v = parse_verdict("User Safety: unsafe\nSaFeTy CaTeGoRiEs: Violence")
    assert v.categories == ("Violence",)
