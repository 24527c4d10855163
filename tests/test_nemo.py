"""NeMo Guardrails: our rails against NeMo's own content safety rail, in a real LLMRails."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("nemoguardrails")

from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing.fake_model import FakeLLMModel

import guard_plugin.nemo as gn
from guard_plugin import Guard, Policy, PolicyStore
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.nemo.actions import make_actions
from guard_plugin.testing import ScriptedClassifier
from tests.media_fixtures import png

CONFIGS = Path(__file__).resolve().parents[1] / "integrations" / "nemoguardrails"
MAIN_ANSWER = "Main answer."
REFUSAL = "I'm sorry, I can't respond to that."  # NeMo's own rail
TENANT_REFUSAL = Policy().messages.refusal  # ours says the tenant's

BUILTIN_YAML = """
{colang}
models:
  - type: main
    engine: openai
    model: gpt-4o-mini
  - type: content_safety
    engine: nim
    model: nvidia/nemotron-3.5-content-safety
{rails}
prompts:
  - task: content_safety_check_input $model=content_safety
    content: "{{{{ user_input }}}}"
    output_parser: nemotron_content_safety_parse_prompt_safety
    max_tokens: 64
  - task: content_safety_check_output $model=content_safety
    content: "{{{{ user_input }}}} {{{{ bot_response }}}}"
    output_parser: nemotron_content_safety_parse_response_safety
    max_tokens: 64
"""
RAILS_V1 = """rails:
  input:
    flows:
      - content safety check input $model=content_safety
  output:
    flows:
      - content safety check output $model=content_safety"""
BUILTIN_CO_V2 = """
import core
import guardrails
import nemoguardrails.library.content_safety

flow input rails $input_text
  content safety check input $model="content_safety"

flow output rails $output_text
  content safety check output $model="content_safety"
"""
MAIN_V2 = """
flow main
  activate greeting

flow greeting
  user said something
  bot say "Main answer."
"""

SAFE_IN = "User Safety: safe"
SAFE_OUT = "User Safety: safe\nResponse Safety: safe"

# Model outputs, fed to the input rail (User Safety) or the output rail (Response Safety).
INPUT_CASES = [
    "User Safety: safe",
    "User Safety: unsafe\nSafety Categories: Violence",
    "User Safety: unsafe\nSafety Categories: Violence, Criminal Planning/Confessions",
    "User Safety: unsafe",
    "<think>The request is benign.</think>\nUser Safety: safe",
    "<think>It insults someone.</think>User Safety: unsafe\nSafety Categories: Harassment",
    "<think>The trace was cut off",
    "garbage output",
    "",
    "User Safety: safe\nUser Safety: unsafe",
    "User Safety: undetermined",
    "The verdict is User Safety: safe",
    "user safety: UNSAFE\nsafety categories: Profanity",
    "User Safety: safe\nResponse Safety: unsafe",
    "Response Safety: unsafe",
    '{"User Safety": "safe"}',
    "User Safety: unsafe\nSafety Categories: Needs Caution",
    "   User Safety: safe   ",
    "User Safety: unsafe (high confidence)\nSafety Categories: Malware",
    "<think>User Safety: unsafe? no.</think>\nUser Safety: safe",
]
OUTPUT_CASES = [
    "User Safety: safe\nResponse Safety: safe",
    "User Safety: unsafe\nResponse Safety: safe\nSafety Categories: Violence",
    "User Safety: safe\nResponse Safety: unsafe\nSafety Categories: Harassment",
    "User Safety: safe",
    "Response Safety: unsafe\nSafety Categories: Fraud/Deception",
    "User Safety: safe\nResponse Safety: safe\nResponse Safety: unsafe",
    "<think>It threatens.</think>\nUser Safety: safe\nResponse Safety: unsafe\nSafety Categories: Threat",
    "<think>unfinished",
]
TABLE = [("input", c) for c in INPUT_CASES] + [("output", c) for c in OUTPUT_CASES]


def test_table_is_large_enough() -> None:
    assert len(TABLE) >= 20


def builtin_config(colang: int) -> RailsConfig:
    if colang == 1:
        return RailsConfig.from_content(yaml_content=BUILTIN_YAML.format(colang="", rails=RAILS_V1))
    return RailsConfig.from_content(
        yaml_content=BUILTIN_YAML.format(colang='colang_version: "2.x"', rails=""),
        colang_content=BUILTIN_CO_V2 + MAIN_V2,
    )


def ours_config(colang: int, tmp: Path) -> RailsConfig:
    folder = tmp / f"colang{colang}"
    shutil.copytree(CONFIGS / f"colang{colang}", folder)
    if colang == 2:
        (folder / "main.co").write_text(MAIN_V2)
    return RailsConfig.from_path(str(folder))


def outcome(rails: LLMRails, messages: list[dict]) -> tuple[bool, list[str] | None]:
    """(blocked, policy violations); Colang 2 cannot report variables, so None there."""
    if rails.config.colang_version == "2.x":
        res = rails.generate(messages=messages)
        return res["content"] != MAIN_ANSWER, None
    res = rails.generate(messages=messages, options={"output_vars": True})
    reply = (
        res.response[0]["content"] if isinstance(res.response, list) else res.response["content"]
    )
    data = res.output_data or {}
    return reply != MAIN_ANSWER, data.get("policy_violations")


def run_builtin(colang: int, rail: str, raw: str) -> tuple[bool, list[str] | None]:
    rails = LLMRails(builtin_config(colang), llm=FakeLLMModel(responses=[MAIN_ANSWER]))
    guard_outputs = [raw, SAFE_OUT] if rail == "input" else [SAFE_IN, raw]
    rails.runtime.registered_action_params["llms"] = {
        "content_safety": FakeLLMModel(responses=guard_outputs)
    }
    return outcome(rails, [{"role": "user", "content": "hello there"}])


def run_ours(colang: int, rail: str, raw: str, tmp: Path) -> tuple[bool, list[str] | None]:
    def fn(req):
        if rail == "input":
            return raw if not req.expects_response else SAFE_OUT
        return SAFE_IN if not req.expects_response else raw

    gn.configure(Guard(ScriptedClassifier(fn=fn), audit=[]))
    rails = LLMRails(ours_config(colang, tmp), llm=FakeLLMModel(responses=[MAIN_ANSWER]))
    return outcome(rails, [{"role": "user", "content": "hello there"}])


@pytest.mark.parametrize("colang", [1, 2])
@pytest.mark.parametrize(("rail", "raw"), TABLE, ids=[f"{r}:{c[:30]!r}" for r, c in TABLE])
def test_same_outcome_as_nemos_own_rail(colang: int, rail: str, raw: str, tmp_path: Path) -> None:
    theirs = run_builtin(colang, rail, raw)
    ours = run_ours(colang, rail, raw, tmp_path)
    assert ours[0] == theirs[0], f"blocked: ours {ours[0]}, NeMo {theirs[0]}"
    if theirs[1] is not None and colang == 1:  # NeMo sets no violations when its parser raised
        assert ours[1] == theirs[1]


# -- multimodal and tools ---------------------------------------------------------------------


def red(img) -> list[str]:
    r, g, _ = img.to_pil().resize((1, 1)).getpixel((0, 0))
    return ["Violence"] if r > 150 and g < 100 else []


def our_rails(
    tmp: Path, *, colang: int = 1, guard: Guard | None = None, answers=(MAIN_ANSWER,)
) -> LLMRails:
    gn.configure(guard or Guard(ScriptedClassifier(image_rule=red), audit=[]))
    return LLMRails(ours_config(colang, tmp), llm=FakeLLMModel(responses=list(answers)))


def image_part(color: str) -> dict:
    return {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(png(color)).decode()},
    }


def test_input_rail_sees_the_image_part(tmp_path: Path) -> None:
    rails = our_rails(tmp_path)
    msg = [
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, image_part("red")]}
    ]
    assert outcome(rails, msg)[0] is True
    rails = our_rails(tmp_path / "b")
    msg = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "what is this?"}, image_part("white")],
        }
    ]
    assert outcome(rails, msg) == (False, [])


def tool_turn(content) -> list[dict]:
    return [
        {"role": "user", "content": "take a screenshot"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "screenshot", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "content": content, "name": "screenshot", "tool_call_id": "c1"},
    ]


def test_tool_result_rail_blocks_an_unsafe_image(tmp_path: Path) -> None:
    sink = MemoryAuditSink()
    rails = our_rails(tmp_path, guard=Guard(ScriptedClassifier(image_rule=red), audit=sink))
    res = rails.generate(messages=tool_turn([image_part("red")]))
    assert res["content"] == TENANT_REFUSAL
    assert any(
        e.surface == "tool" and e.action == "block" and e.tool_name == "screenshot"
        for e in sink.events
    )
    sink2 = MemoryAuditSink()
    rails = our_rails(tmp_path / "b", guard=Guard(ScriptedClassifier(image_rule=red), audit=sink2))
    rails.generate(messages=tool_turn([image_part("white")]))
    assert any(e.surface == "tool" and e.action == "allow" for e in sink2.events)


def test_rails_exceptions(tmp_path: Path) -> None:
    folder = tmp_path / "exc"
    shutil.copytree(CONFIGS / "colang1", folder)
    (folder / "config.yml").write_text(
        (folder / "config.yml").read_text() + "\nenable_rails_exceptions: true\n"
    )
    gn.configure(Guard(ScriptedClassifier(), audit=[]))
    rails = LLMRails(RailsConfig.from_path(str(folder)), llm=FakeLLMModel(responses=[MAIN_ANSWER]))
    msg = rails.generate(messages=[{"role": "user", "content": "how to build a bomb"}])
    assert msg["role"] == "exception" and msg["content"]["type"] == "GuardPluginInputException"
    assert "guard plugin check input" in msg["content"]["message"]


def test_classifier_failure_blocks(tmp_path: Path) -> None:
    rails = our_rails(
        tmp_path, guard=Guard(ScriptedClassifier(error=RuntimeError("down")), audit=[])
    )
    assert outcome(rails, [{"role": "user", "content": "hello"}])[0] is True


def test_rewrite_transforms_the_input_in_colang1(tmp_path: Path) -> None:
    guard = Guard(ScriptedClassifier(), policies=Policy(actions={"input": "rewrite"}), audit=[])
    main = FakeLLMModel(responses=["I can't help with that, but happy to help otherwise."])
    gn.configure(guard)
    rails = LLMRails(ours_config(1, tmp_path), llm=main)
    res = rails.generate(
        messages=[{"role": "user", "content": "how to build a bomb"}], options={"output_vars": True}
    )
    assert res.output_data["user_message"] == Policy().messages.rewrite_note


def test_tenant_from_context_variable_and_context_message(tmp_path: Path) -> None:
    store = PolicyStore({"ops": Policy(id="ops", categories_off=["Profanity"])})
    rails = our_rails(
        tmp_path,
        guard=Guard(ScriptedClassifier(), policies=store, audit=[]),
        answers=[MAIN_ANSWER] * 3,
    )
    assert outcome(rails, [{"role": "user", "content": "damn printer"}])[0] is True
    token = gn.tenant_var.set("ops")
    try:
        assert outcome(rails, [{"role": "user", "content": "damn printer"}])[0] is False
    finally:
        gn.tenant_var.reset(token)
    ctx = [
        {"role": "context", "content": {"tenant_id": "ops"}},
        {"role": "user", "content": "damn printer"},
    ]
    assert outcome(rails, ctx)[0] is False


def test_escalation_handler_decides(tmp_path: Path) -> None:
    sink = MemoryAuditSink()
    guard = Guard(ScriptedClassifier(), policies=Policy(actions={"input": "escalate"}), audit=sink)
    seen = []
    gn.configure(guard, escalation_handler=lambda d: seen.append(d.categories) or True)
    rails = LLMRails(ours_config(1, tmp_path), llm=FakeLLMModel(responses=[MAIN_ANSWER]))
    assert outcome(rails, [{"role": "user", "content": "build a bomb"}])[0] is False and seen
    (review,) = [e for e in sink.events if e.event == "review"]
    assert (review.review, review.action, review.surface) == ("approve", "allow", "input")
    gn.configure(guard)  # no handler: the fallback (block)
    rails = LLMRails(ours_config(1, tmp_path / "b"), llm=FakeLLMModel(responses=[MAIN_ANSWER]))
    assert outcome(rails, [{"role": "user", "content": "build a bomb"}])[0] is True


# -- both return contracts ----------------------------------------------------------------------


def test_legacy_contract_by_feature_detection() -> None:
    registered = {}

    def legacy_action(
        name=None, output_mapping=None, is_system_action=False
    ):  # 0.23's decorator shape
        def deco(fn):
            registered[name] = output_mapping
            return fn

        return deco

    gn.configure(Guard(ScriptedClassifier(), audit=[]))
    actions = make_actions(None, legacy_action)
    res = asyncio.run(actions["guard_plugin_check_input"](context={"user_message": "build a bomb"}))
    assert res == {"allowed": False, "policy_violations": ["Violence", "Guns and Illegal Weapons"]}
    assert registered["guard_plugin_check_input"](res) is True  # True means block
    ok = asyncio.run(
        actions["guard_plugin_check_output"](
            context={"user_message": "hi", "bot_message": "Hello!"}
        )
    )
    assert (
        ok == {"allowed": True, "policy_violations": []}
        and registered["guard_plugin_check_output"](ok) is False
    )


def test_current_contract_is_rail_outcome_and_accepts_streaming_kwargs() -> None:
    from nemoguardrails.actions.rail_outcome import RailOutcome

    gn.configure(Guard(ScriptedClassifier(), audit=[]))
    res = asyncio.run(
        gn.ACTIONS["guard_plugin_check_output"](
            context={"user_message": "hi", "bot_message": "you worthless idiot"},
            model_name="x",
            extra="y",
        )
    )
    assert (
        isinstance(res, RailOutcome)
        and res.is_blocked
        and res.metadata["policy_violations"] == ["Harassment"]
    )


@pytest.mark.parametrize(
    ("calls", "blocked"),
    [
        ([{"name": "send", "args": {"body": "see you at 3"}, "id": "c1"}], False),  # LangChain's
        ([{"name": "send", "args": {"body": "you worthless idiot"}, "id": "c1"}], True),
        (
            [{"id": "c1", "function": {"name": "send", "arguments": '{"body": "you idiot"}'}}],
            True,
        ),  # OpenAI's, arguments as sent
        ("not a list of calls", True),  # no verdict: on_error blocks
        ([{"name": "send", "args": {}, "id": "c1"}, "a stray string"], True),
        ([], False),
    ],
)
def test_the_tool_output_action_checks_each_call_and_empties_the_turns_calls(calls, blocked):
    sink = MemoryAuditSink()
    gn.configure(Guard(ScriptedClassifier(), audit=sink))
    events = [{"type": "BotToolCalls", "tool_calls": calls}]
    res = asyncio.run(
        gn.ACTIONS["guard_plugin_check_tool_output"](
            tool_calls=calls, context={"user_message": "email bob"}, events=events
        )
    )
    assert res.is_blocked is blocked
    assert (events[0]["tool_calls"] == []) is (blocked or calls == [])
    (event,) = sink.events
    assert event.surface == "response"
    assert (event.status == "error") is (blocked and "idiot" not in str(calls))


# -- engine provider ----------------------------------------------------------------------------

PROVIDER_YAML = """
models:
  - type: main
    engine: openai
    model: gpt-4o-mini
  - type: content_safety
    engine: guard_plugin
    model: nvidia/nemotron-3.5-content-safety
    parameters:
      classifier: "{spec}"
rails:
  input:
    flows:
      - content safety check input $model=content_safety
prompts:
  - task: content_safety_check_input $model=content_safety
    content: "{{{{ user_input }}}}"
    output_parser: nemotron_content_safety_parse_prompt_safety
    max_tokens: 16
"""


def provider_rails(spec: str) -> LLMRails:
    gn.register()
    return LLMRails(
        RailsConfig.from_content(yaml_content=PROVIDER_YAML.format(spec=spec)),
        llm=FakeLLMModel(responses=[MAIN_ANSWER] * 2),
    )


def test_builtin_flow_on_the_scripted_classifier_through_our_engine() -> None:
    rails = provider_rails("scripted")
    assert outcome(rails, [{"role": "user", "content": "hello"}]) == (False, [])
    rails = provider_rails("scripted")
    assert outcome(rails, [{"role": "user", "content": "how to build a bomb"}]) == (
        True,
        ["Violence", "Guns and Illegal Weapons"],
    )


def test_builtin_flow_on_the_tiny_local_model_fails_closed(tiny_model) -> None:
    rails = provider_rails(f"transformers:{tiny_model.path}?device=cpu")
    res = rails.generate(messages=[{"role": "user", "content": "hello"}])
    reply = res[0]["content"] if isinstance(res, list) else res["content"]
    assert reply == "I'm sorry, an internal error has occurred."  # random weights: unparseable


def test_an_unknown_tenant_in_the_nemo_context_is_refused(tmp_path: Path) -> None:
    sink = MemoryAuditSink()
    store = PolicyStore({"ops": Policy(id="ops", categories_off=["Profanity"])})
    rails = our_rails(
        tmp_path,
        guard=Guard(ScriptedClassifier(), policies=store, audit=sink),
        answers=[MAIN_ANSWER],
    )
    for tenant in ("opss", "../ops"):
        ctx = [
            {"role": "context", "content": {"tenant_id": tenant}},
            {"role": "user", "content": "hello there"},
        ]
        assert outcome(rails, ctx)[0] is True  # refused, not the default policy
    assert [e.error_kind for e in sink.events] == ["unknown_tenant", "invalid_tenant"]


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        # unsafe reasoning behind a safe answer: refused, and the trace is not handed back
        ("<think>first build a bomb from fertiliser</think>Here you go.", None),
        # an unsafe answer after calm reasoning: the trace goes with the answer
        ("<think>thinking calmly</think>you worthless idiot", None),
        # both safe: the trace comes back as NeMo returns it
        ("<think>thinking calmly</think>Here you go.", "thinking calmly"),
    ],
)
def test_the_output_rail_checks_nemos_reasoning_trace(
    answer: str, shown: str | None, tmp_path: Path
) -> None:
    """NeMo keeps a model's reasoning apart (``$bot_thinking``) and returns it to the caller
    before the answer, whatever the output rails decided; the rail checks it with the
    answer and takes it out of the turn when the turn is not allowed."""
    rails = our_rails(tmp_path, answers=(answer,))
    res = rails.generate(messages=[{"role": "user", "content": "help me"}])
    text = json.dumps(res)
    assert "fertiliser" not in text and "idiot" not in text
    if shown is None:
        assert "<think>" not in text and Policy().messages.refusal in text
    else:
        assert f"<think>{shown}</think>" in text and "Here you go." in text


# -- NeMo's own output action, with the reasoning trace checked too ---------------------------


def _trace_turn(verdicts: dict[str, object]) -> tuple[object, list[str], list[dict]]:
    """Run :func:`thinking_checked` around a fake NeMo action that answers ``verdicts[bot
    message]`` (an exception is raised); return its result (or the exception), the bot
    messages it was asked about, and the events."""
    from guard_plugin.nemo.actions import thinking_checked

    asked: list[str] = []

    async def content_safety_check_output(
        llms=None, context=None, bot_message=None, **kwargs
    ):  # NeMo's signature, less what this test does not need
        msg = bot_message if bot_message is not None else context["bot_message"]
        asked.append(msg)
        v = verdicts[msg]
        if isinstance(v, BaseException):
            raise v
        return v

    wrapped = thinking_checked(content_safety_check_output)
    events = [{"type": "BotThinking", "content": "the trace"}, {"type": "BotMessage"}]
    ctx = {"bot_message": "the answer", "bot_thinking": "the trace"}
    try:
        out: object = asyncio.run(wrapped(llms={}, context=ctx, events=events))
    except Exception as err:
        out = err
    return out, sorted(asked), events


@pytest.mark.parametrize(
    ("answer", "trace", "kept"),
    [
        ({"allowed": True}, {"allowed": True}, True),
        ({"allowed": True}, {"allowed": False}, False),
        ({"allowed": False}, {"allowed": True}, False),
        ({"allowed": True}, RuntimeError("classifier down"), False),
        (RuntimeError("classifier down"), {"allowed": True}, False),
        (True, False, False),  # the bare booleans of older releases
        (True, True, True),
    ],
)
def test_nemos_output_action_checks_the_trace_beside_the_answer(answer, trace, kept) -> None:
    out, asked, events = _trace_turn({"the answer": answer, "the trace": trace})
    assert asked == ["the answer", "the trace"]
    assert (events[0]["content"] == "the trace") is kept
    if isinstance(answer, Exception) or isinstance(trace, Exception):
        assert isinstance(out, RuntimeError)  # NeMo's action failure: an internal error
    elif kept:
        assert out == answer
    else:
        assert out in (answer, trace) and out is not True and out != {"allowed": True}


def test_nemos_output_action_without_a_trace_is_nemos_alone() -> None:
    from guard_plugin.nemo.actions import thinking_checked

    calls = []

    async def content_safety_check_output(context=None, **kwargs):
        calls.append(kwargs)
        return {"allowed": True}

    wrapped = thinking_checked(content_safety_check_output)
    ctx = {"bot_message": "the answer", "bot_thinking": "  "}
    assert asyncio.run(wrapped(context=ctx, events=[])) == {"allowed": True}
    assert calls == [{}]  # once, and no `events` it does not take


def test_the_trace_reaches_an_action_that_reads_the_bot_message_from_its_context() -> None:
    from guard_plugin.nemo.actions import thinking_checked

    seen = []

    async def content_safety_check_output(context=None):
        seen.append(context["bot_message"])
        return {"allowed": context["bot_message"] != "the trace"}

    wrapped = thinking_checked(content_safety_check_output)
    events = [{"type": "BotThinking", "content": "the trace"}]
    ctx = {"bot_message": "the answer", "bot_thinking": "the trace"}
    assert asyncio.run(wrapped(context=ctx, events=events)) == {"allowed": False}
    assert sorted(seen) == ["the answer", "the trace"] and events[0]["content"] == ""
    assert ctx["bot_message"] == "the answer"  # the turn's own context is left as it was


@pytest.mark.parametrize(
    ("chunks", "shown"),
    [
        ("Step 1: build a bomb from fertiliser.", False),
        ("The office opens at 9 and closes at 5.", True),
    ],
    ids=["unsafe", "safe"],
)
def test_retrieved_text_a_caller_sends_is_checked_before_the_llm_reads_it(
    chunks: str, shown: bool, tmp_path: Path
) -> None:
    """A context message's relevant_chunks go into the main LLM's prompt beside the turn: the
    input rail checks them as tool output and the prompt gets what the decision leaves."""
    sink = MemoryAuditSink()
    rails = our_rails(tmp_path, guard=Guard(ScriptedClassifier(), audit=sink))
    messages = [
        {"role": "context", "content": {"relevant_chunks": chunks}},
        {"role": "user", "content": "When does the office open?"},
    ]
    res = rails.generate(messages=messages, options={"log": {"llm_calls": True}})
    assert res.response[0]["content"] == MAIN_ANSWER  # the turn goes on
    prompts = [c.prompt or "" for c in res.log.llm_calls]
    assert prompts and all(("bomb" in p) is False for p in prompts)
    assert any(chunks in p for p in prompts) is shown
    if not shown:
        assert any(Policy().messages.redaction in p for p in prompts)
    (event,) = [e for e in sink.events if e.surface == "tool"]
    assert event.status == ("safe" if shown else "unsafe")
