"""The NeMo Guardrails config folders exactly as shipped: loaded unmodified, with the main LLM
given the way the docs tell users (``LLMRails(config, llm=...)``) and the classifier named in
``GUARD_PLUGIN_CLASSIFIER``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("nemoguardrails")

from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing.fake_model import FakeLLMModel

import guard_plugin.nemo.actions as nemo_actions
from guard_plugin import ConfigError, PolicyStore

CONFIGS = Path(__file__).resolve().parents[1] / "integrations" / "nemoguardrails"
BUILTIN = PolicyStore.from_dir("builtin")
KIDS_REFUSAL = BUILTIN.get("kids_education").policy.messages.refusal
DEFAULT_REFUSAL = BUILTIN.default.policy.messages.refusal
NEMO_REFUSAL = "I'm sorry, I can't respond to that."


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A process as a user starts it: no guard configured, the spec in the environment."""
    monkeypatch.setitem(nemo_actions._state, "guard", None)
    monkeypatch.setitem(nemo_actions._state, "escalation_handler", None)
    monkeypatch.setenv("GUARD_PLUGIN_CLASSIFIER", "scripted")
    monkeypatch.delenv("GUARD_PLUGIN_POLICIES", raising=False)
    return monkeypatch


def rails(folder: str, *answers: str) -> LLMRails:
    config = RailsConfig.from_path(str(CONFIGS / folder))
    return LLMRails(config, llm=FakeLLMModel(responses=list(answers)))


def ask(r: LLMRails, text: str, tenant: str | None = None) -> str:
    messages = [{"role": "user", "content": text}]
    if tenant:
        messages.insert(0, {"role": "context", "content": {"tenant_id": tenant}})
    res = r.generate(messages=messages)
    return res["content"] if isinstance(res, dict) else res[0]["content"]


@pytest.mark.parametrize("folder", ["colang1", "colang2"])
def test_our_rails_answer_safe_turns_and_refuse_in_the_tenants_words(env, folder: str) -> None:
    r = rails(folder, "Cats sleep a lot.", "Photosynthesis makes sugar.", "you worthless idiot")
    assert ask(r, "tell me about cats") == "Cats sleep a lot."
    assert ask(r, "how do I build a bomb", tenant="kids_education") == KIDS_REFUSAL
    assert ask(r, "what is photosynthesis?", tenant="kids_education") == (
        "Photosynthesis makes sugar."
    )
    assert ask(r, "insult me") == DEFAULT_REFUSAL  # the answer was unsafe: output rail


def test_nemos_own_flows_on_our_engine(env) -> None:
    r = rails("nemo_flows", "Cats sleep a lot.", "you worthless idiot")
    assert ask(r, "tell me about cats") == "Cats sleep a lot."
    assert ask(r, "how do I build a bomb") == NEMO_REFUSAL
    assert ask(r, "insult me") == NEMO_REFUSAL  # output check: parsed, not an internal error


def _tool_turn(body: str) -> LLMRails:
    """The shipped colang1 folder with tool calling on, as NeMo runs it (``passthrough``),
    and a main LLM that asks for one call."""
    from nemoguardrails.types import LLMResponse, ToolCall, ToolCallFunction

    config = RailsConfig.from_path(str(CONFIGS / "colang1"))
    config.passthrough = True
    call = ToolCall(
        id="c1", function=ToolCallFunction(name="send_email", arguments={"to": "bob", "body": body})
    )
    return LLMRails(config, llm=FakeLLMModel(llm_responses=[LLMResponse("", tool_calls=[call])]))


@pytest.mark.parametrize("options", [None, {"log": {"activated_rails": True}}])
def test_the_tool_calls_the_bot_asks_for_are_checked_before_the_caller_gets_them(
    env, options
) -> None:
    import json

    def turn(body: str) -> tuple[str, list | None]:
        res = _tool_turn(body).generate(
            messages=[{"role": "user", "content": "email bob"}], options=options
        )
        if options is None:
            return res["content"], res.get("tool_calls")
        return res.response[0]["content"], res.tool_calls

    content, calls = turn("see you at 3")
    assert content == "" and calls and calls[0]["function"]["arguments"]["body"] == "see you at 3"
    content, calls = turn("you worthless idiot")
    assert content == DEFAULT_REFUSAL and not calls
    assert "idiot" not in json.dumps([content, calls])


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        ("<think>first build a bomb from fertiliser</think>Here you go.", None),
        ("<think>thinking calmly</think>you worthless idiot", None),
        ("<think>thinking calmly</think>Here you go.", "thinking calmly"),
    ],
)
def test_nemos_own_output_flow_checks_the_reasoning_trace(env, answer: str, shown) -> None:
    """NeMo's own output flow checks the answer only and returns the trace it kept apart
    whatever it decided; under the folder's config.py the trace is checked too, and a refused
    turn returns none."""
    import json

    r = rails("nemo_flows", answer)
    res = r.generate(messages=[{"role": "user", "content": "help me"}])
    text = json.dumps(res)
    assert "fertiliser" not in text and "idiot" not in text
    if shown is None:
        assert res["content"] == NEMO_REFUSAL
    else:
        assert f"<think>{shown}</think>" in text and "Here you go." in text


@pytest.mark.parametrize("folder", ["colang1", "colang2", "nemo_flows"])
def test_a_missing_classifier_stops_the_config_from_loading(env, folder: str) -> None:
    env.delenv("GUARD_PLUGIN_CLASSIFIER")
    with pytest.raises(Exception) as info:  # NeMo wraps it: "Failed to initialize ..."
        rails(folder, "never said")
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    ours = [e for e in chain if isinstance(e, ConfigError)]
    assert ours and "set GUARD_PLUGIN_CLASSIFIER" in str(ours[0])


@pytest.mark.parametrize("folder", ["colang1", "colang2", "nemo_flows"])
def test_the_unmodified_folder_reaches_a_main_llm_named_only_in_the_environment(
    env, folder: str
) -> None:
    """As `nemoguardrails chat --config FOLDER` runs it: no llm passed in, the main LLM an
    OpenAI-compatible server named by MAIN_BASE_URL and MAIN_MODEL (NeMo reads no
    OPENAI_BASE_URL of its own)."""
    from tests.loopback_openai import LoopbackChatServer

    chat = LoopbackChatServer(lambda body: {"role": "assistant", "content": "Cats sleep a lot."})
    try:
        env.setenv("MAIN_BASE_URL", chat.url)
        env.setenv("MAIN_MODEL", "loopback-model")
        env.setenv("OPENAI_API_KEY", "unused-by-the-loopback-server")
        r = LLMRails(RailsConfig.from_path(str(CONFIGS / folder)))
        assert ask(r, "tell me about cats") == "Cats sleep a lot."
        assert ask(r, "how do I build a bomb") in (DEFAULT_REFUSAL, NEMO_REFUSAL)
        assert chat.bodies and {b["model"] for b in chat.bodies} == {"loopback-model"}
        assert not any("bomb" in str(b) for b in chat.bodies)  # blocked before the main LLM
    finally:
        chat.close()


def test_nemoguardrails_server_serves_the_written_folders(tmp_path) -> None:
    """`nemoguardrails server` (the nemo extra installs it) on the folders `guard-plugin init
    nemo` writes: /v1/chat/completions for each folder and /v1/checks for Colang 1."""
    import os

    import httpx

    from guard_plugin.cli import main
    from tests.loopback_openai import LoopbackChatServer, nemoguardrails_server

    pytest.importorskip("fastapi")
    main(["init", "nemo", str(tmp_path / "rails")])
    chat = LoopbackChatServer(lambda body: {"role": "assistant", "content": "Cats sleep a lot."})
    env = {
        **os.environ,
        "GUARD_PLUGIN_CLASSIFIER": "scripted",
        "MAIN_BASE_URL": chat.url,
        "MAIN_MODEL": "loopback",
        "OPENAI_API_KEY": "loopback",
    }
    try:
        with nemoguardrails_server(tmp_path / "rails", env) as url:
            refusals = {
                "colang1": DEFAULT_REFUSAL,
                "colang2": DEFAULT_REFUSAL,
                "nemo_flows": NEMO_REFUSAL,
            }
            for config_id, refusal in refusals.items():
                for text, expected in (
                    ("tell me about cats", "Cats sleep a lot."),
                    ("how to build a bomb", refusal),
                ):
                    body = {
                        "model": "loopback",
                        "messages": [{"role": "user", "content": text}],
                        "guardrails": {"config_id": config_id},
                    }
                    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
                    assert r.status_code == 200, r.text
                    assert r.json()["choices"][0]["message"]["content"] == expected, config_id
            check = httpx.post(
                f"{url}/v1/checks",
                json={
                    "model": "loopback",
                    "messages": [{"role": "user", "content": "how to build a bomb"}],
                    "guardrails": {"config_id": "colang1"},
                },
                timeout=60,
            ).json()
            assert check["status"] == "blocked" and check["rail"] == "guard plugin check input"
            assert not any("bomb" in str(b) for b in chat.bodies)
    finally:
        chat.close()


# -- streaming: stream_async on the folders as shipped ---------------------------------------------


def streamed(folder: str, answer: str) -> list[str]:
    import asyncio

    r = rails(folder, answer)

    async def run() -> list[str]:
        out = []
        async for chunk in r.stream_async(messages=[{"role": "user", "content": "hi"}]):
            out.append(chunk if isinstance(chunk, str) else str(chunk))
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("folder", ["colang1", "nemo_flows"])
@pytest.mark.parametrize("seed", range(50))
def test_stream_async_shows_only_checked_text(env, folder: str, seed: int) -> None:
    import json
    import random

    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    if seed:
        words.insert(rng.randrange(0, 300), "you worthless idiot")
    answer = " ".join(words)
    chunks = streamed(folder, answer)
    text = "".join(chunks)
    if not seed:
        assert text.strip() == answer
        return
    error = json.loads(chunks[-1])["error"]  # NeMo ends a blocked stream with an error chunk
    assert error["code"] == "content_blocked"
    shown = "".join(chunks[:-1])
    assert "worthless" not in shown and "idiot" not in shown
    assert answer.startswith(shown.strip())


def test_stream_async_is_refused_on_the_colang2_folder(env) -> None:
    """NeMo runs streaming output rails only for Colang 1 flows: a Colang 2 answer would be
    shown before its check, so the folder refuses to stream."""
    with pytest.raises(ConfigError, match="Colang 2"):
        streamed("colang2", "you worthless idiot")
