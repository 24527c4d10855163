"""``guard-plugin serve`` as shipped: started as a subprocess on 127.0.0.1 with the trained test
model, called by the official OpenAI client and over raw HTTP, read by NeMo's own Nemotron
parsers. Tenant keys (401, 403), an oversized request (413), a classifier outage (a blocking
verdict, audited as an error), 64 concurrent requests (all answered, batched)."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.loopback_openai import free_port, nemoguardrails_server, wait_up

KEYS = {"default": "default-key-0123456789", "devops": "devops-key-0123456789"}


def start(classifier: str, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "GUARD_PLUGIN_SERVE_KEYS": ",".join(f"{t}={k}" for t, k in KEYS.items()),
        "HF_HUB_OFFLINE": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "guard_plugin.cli",
                "serve",
                "--port",
                str(port),
                "--classifier",
                classifier,
                *extra,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    if not wait_up(f"{url}/health", lambda: proc.poll() is None, seconds=60):
        pytest.fail(f"serve did not come up:\n{log.read_text()[-3000:]}")
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(verdict_model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc, url = start(f"transformers:{verdict_model.path}", log, "--max-body-bytes", "200000")
    yield url
    stop(proc)
    # uvicorn shuts down, then re-raises the signal for whoever started it
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]


def ask(url: str, text: str, key: str | None = KEYS["default"], **extra) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(extra.pop("headers", {}))
    body = {"model": "guard-plugin", "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def test_the_official_openai_client_gets_the_tenants_verdict(server: str) -> None:
    from openai import OpenAI

    default = OpenAI(base_url=f"{server}/v1", api_key=KEYS["default"])
    devops = OpenAI(base_url=f"{server}/v1", api_key=KEYS["devops"])
    msgs = [{"role": "user", "content": "tell me about the bomb"}]
    said = default.chat.completions.create(model="guard-plugin", messages=msgs)
    assert said.choices[0].message.content.startswith("User Safety: unsafe")
    assert "Violence" in said.choices[0].message.content
    # devops switches Violence off: its policy, not the model's label, answers
    ops = devops.chat.completions.create(model="guard-plugin", messages=msgs)
    assert ops.choices[0].message.content == "User Safety: safe"
    calm = default.chat.completions.create(
        model="guard-plugin", messages=[{"role": "user", "content": "please summarise the report"}]
    )
    assert calm.choices[0].message.content == "User Safety: safe"
    assert [m.id for m in default.models.list().data] == ["guard-plugin"]


def test_nemos_own_parsers_read_the_decision(server: str) -> None:
    pytest.importorskip("nemoguardrails")
    from nemoguardrails.llm.output_parsers import (
        nemotron_content_safety_parse_prompt_safety,
        nemotron_content_safety_parse_response_safety,
    )

    unsafe = ask(server, "the bomb").json()["choices"][0]["message"]["content"]
    assert nemotron_content_safety_parse_prompt_safety(unsafe)[0] is False
    body = {
        "model": "guard-plugin",
        "messages": [
            {"role": "user", "content": "help me with this code"},
            {"role": "assistant", "content": "damn it, here you go"},
        ],
    }
    r = httpx.post(
        f"{server}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {KEYS['default']}"},
        timeout=60,
    )
    text = r.json()["choices"][0]["message"]["content"]
    assert "Response Safety: unsafe" in text
    assert nemotron_content_safety_parse_response_safety(text)[0] is False


def answer_verdict(server: str, assistant: dict) -> str:
    body = {
        "model": "guard-plugin",
        "messages": [{"role": "user", "content": "help me with this code"}, assistant],
    }
    r = httpx.post(
        f"{server}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {KEYS['default']}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_every_part_of_an_answer_is_read_or_refused(server: str) -> None:
    """An answer sent as parts, or with tool calls: the endpoint reads each part and each
    call; a part it cannot read is no verdict (blocked), never passed over as safe."""
    parts = {"role": "assistant", "content": [{"type": "text", "text": "here you go"}]}
    assert "Response Safety: safe" in answer_verdict(server, parts)
    refusal = {"type": "refusal", "refusal": "damn it"}
    odd = {**parts, "content": [*parts["content"], refusal]}
    assert "Response Safety: unsafe" in answer_verdict(server, odd)
    call = {"id": "c1", "type": "function", "function": {"name": "run", "arguments": "{}"}}
    calm = {"role": "assistant", "content": None, "tool_calls": [call]}
    assert "Response Safety: safe" in answer_verdict(server, calm)
    rude = {**call, "function": {"name": "post", "arguments": '{"text": "oh damn it"}'}}
    assert "Response Safety: unsafe" in answer_verdict(server, {**calm, "tool_calls": [rude]})
    bad = {"role": "assistant", "content": "ok", "tool_calls": [{"id": "c2"}]}
    body = {"model": "guard-plugin", "messages": [{"role": "user", "content": "hi"}, bad]}
    r = httpx.post(
        f"{server}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {KEYS['default']}"},
        timeout=60,
    )
    assert r.status_code == 400 and "function" in r.json()["error"]["message"]


def test_keys_tenants_and_size(server: str) -> None:
    assert ask(server, "hi", key=None).status_code == 401
    assert ask(server, "hi", key="not-a-key-at-all-000").status_code == 401
    other = ask(server, "hi", headers={"X-Tenant-Id": "devops"})
    assert other.status_code == 403 and "another tenant" in other.json()["error"]["message"]
    assert ask(server, "hi", headers={"X-Tenant-Id": "default"}).status_code == 200
    big = ask(server, "x" * 300_000)
    assert big.status_code == 413
    assert httpx.get(f"{server}/v1/health/ready", timeout=30).json() == {"ready": True}
    for body in (b"{not json", b"[" * 50_000 + b"]" * 50_000):
        bad = httpx.post(
            f"{server}/v1/chat/completions",
            content=body,
            headers={"Authorization": f"Bearer {KEYS['default']}"},
            timeout=10,
        )
        assert bad.status_code == 400, body[:20]


def test_64_concurrent_requests_are_all_answered_in_batches(server: str) -> None:
    # the test model's own words (out-of-vocabulary text such as digits is where a tiny model
    # is unsure, and batch padding can tip it): 64 different texts, every fourth marked
    words = "the quick brown fox jumps over lazy dog please summarise attached quarterly report"
    vocab = words.split()
    texts = [
        " ".join(vocab[i % 7 : i % 7 + 3 + i % 5]) + (" bomb" if i % 4 == 0 else "")
        for i in range(64)
    ]
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda t: ask(server, t), texts))
    assert all(r.status_code == 200 for r in answers)
    labels = [
        r.json()["choices"][0]["message"]["content"].startswith("User Safety: unsafe")
        for r in answers
    ]
    assert labels == [i % 4 == 0 for i in range(64)]
    stats = httpx.get(
        f"{server}/v1/stats", headers={"Authorization": f"Bearer {KEYS['default']}"}, timeout=10
    ).json()["stats"]
    print(f"\n64 concurrent requests: {stats}")
    assert stats["max_batch"] > 1


def test_a_classifier_outage_is_a_blocking_verdict_audited_as_an_error(tmp_path: Path) -> None:
    dead = f"vllm://127.0.0.1:{free_port()}/v1?model=m&max_retries=0"
    proc, url = start(dead, tmp_path / "serve.log")
    try:
        r = ask(url, "a perfectly safe question")
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "User Safety: unsafe"
        assert r.json()["guard_plugin"]["status"] == "error"
        assert r.json()["guard_plugin"]["error_kind"] == "unavailable"
    finally:
        stop(proc)
    log = (tmp_path / "serve.log").read_text()
    assert '"status":"error"' in log  # the audit event (guard_plugin.audit, WARNING)


def test_shutdown_finishes_the_checks_in_flight(tmp_path: Path) -> None:
    """SIGTERM while a check waits on a slow classifier server: the caller still gets its
    verdict, then the server exits."""
    from tests.loopback_openai import LoopbackChatServer

    def slow(body: dict) -> dict:
        time.sleep(2)
        return {"role": "assistant", "content": "User Safety: safe"}

    model = LoopbackChatServer(slow)
    proc, url = start(f"vllm://{model.url.removeprefix('http://')}?model=m", tmp_path / "s.log")
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(ask, url, "hello")
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGTERM)
            answer = pending.result(30)
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"] == "User Safety: safe"
        proc.wait(30)
    finally:
        if proc.poll() is None:
            stop(proc)
        model.close()


def test_no_keys_is_refused_at_start_unless_asked_for(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GUARD_PLUGIN_SERVE_KEYS"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "guard_plugin.cli",
            "serve",
            "--classifier",
            "scripted",
            "--port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "no API keys" in done.stderr


def test_nemos_new_engine_runs_nemo_flows_on_iorails_through_the_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guardrails(config) on the shipped nemo_flows folder, pointed at guard-plugin serve the
    way the docs say (use_endpoint + two variables): it runs on IORails, answers a safe turn
    through the main LLM and refuses an unsafe one, checked and audited by the endpoint.
    The Colang folders fall back to LLMRails (IORails runs only NeMo's catalogued rails)."""
    pytest.importorskip("nemoguardrails")
    from nemoguardrails import RailsConfig
    from nemoguardrails.guardrails.guardrails import Guardrails

    from guard_plugin.cli import main
    from guard_plugin.nemo import use_endpoint
    from tests.loopback_openai import LoopbackChatServer

    chat = LoopbackChatServer(lambda body: {"role": "assistant", "content": "Cats sleep a lot."})
    proc, url = start("scripted", tmp_path / "serve.log")
    try:
        main(["init", "nemo", str(tmp_path / "rails")])
        monkeypatch.setenv("GUARD_PLUGIN_ENDPOINT", f"{url}/v1")
        monkeypatch.setenv("GUARD_PLUGIN_ENDPOINT_KEY", KEYS["default"])
        monkeypatch.setenv("MAIN_BASE_URL", chat.url)
        monkeypatch.setenv("MAIN_MODEL", "loopback")
        monkeypatch.setenv("OPENAI_API_KEY", "loopback")
        config = use_endpoint(RailsConfig.from_path(str(tmp_path / "rails" / "nemo_flows")))
        rails = Guardrails(config)
        assert rails.use_iorails_engine
        safe = rails.generate(messages=[{"role": "user", "content": "tell me about cats"}])
        unsafe = rails.generate(messages=[{"role": "user", "content": "how to build a bomb"}])
        assert safe["content"] == "Cats sleep a lot."
        assert unsafe["content"] == "I'm sorry, I can't respond to that."  # NeMo's own flow
        assert not any("bomb" in str(b) for b in chat.bodies)
        # the Colang folders run guard_plugin in the process, on LLMRails
        monkeypatch.setenv("GUARD_PLUGIN_CLASSIFIER", "scripted")
        for folder in ("colang1", "colang2"):
            fallback = Guardrails(RailsConfig.from_path(str(tmp_path / "rails" / folder)))
            assert not fallback.use_iorails_engine
            refused = fallback.generate(
                messages=[{"role": "user", "content": "how to build a bomb"}]
            )
            assert refused["content"] == "I'm sorry, I can't help with that."  # the tenant's words
    finally:
        stop(proc)
        chat.close()
    audit = (tmp_path / "serve.log").read_text()
    assert '"action":"block"' in audit and '"tenant":"default"' in audit


def test_nemoguardrails_server_runs_nemo_flows_through_the_endpoint(tmp_path: Path) -> None:
    """`nemoguardrails server` on the written nemo_flows folder with GUARD_PLUGIN_ENDPOINT set
    and no classifier in its own process: every check goes to guard-plugin serve."""
    pytest.importorskip("fastapi")
    pytest.importorskip("nemoguardrails")
    from guard_plugin.cli import main
    from tests.loopback_openai import LoopbackChatServer

    main(["init", "nemo", str(tmp_path / "rails")])
    chat = LoopbackChatServer(lambda body: {"role": "assistant", "content": "Cats sleep a lot."})
    proc, url = start("scripted", tmp_path / "serve.log")
    env = {k: v for k, v in os.environ.items() if k != "GUARD_PLUGIN_CLASSIFIER"}
    env.update(
        GUARD_PLUGIN_ENDPOINT=f"{url}/v1",
        GUARD_PLUGIN_ENDPOINT_KEY=KEYS["devops"],
        MAIN_BASE_URL=chat.url,
        MAIN_MODEL="loopback",
        OPENAI_API_KEY="loopback",
    )
    try:
        with nemoguardrails_server(tmp_path / "rails", env) as nemo_url:

            def say(text: str) -> str:
                body = {
                    "model": "loopback",
                    "messages": [{"role": "user", "content": text}],
                    "guardrails": {"config_id": "nemo_flows"},
                }
                r = httpx.post(f"{nemo_url}/v1/chat/completions", json=body, timeout=60)
                assert r.status_code == 200, r.text
                return r.json()["choices"][0]["message"]["content"]

            assert say("tell me about cats") == "Cats sleep a lot."
            assert say("how to build a bomb") == "I'm sorry, I can't respond to that."
    finally:
        stop(proc)
        chat.close()
    audit = (tmp_path / "serve.log").read_text()
    assert '"tenant":"devops"' in audit and '"action":"block"' in audit
