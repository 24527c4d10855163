"""Every code block of the README, run as printed.

Each Python block runs on its own, as a script in a fresh folder outside the repository (a
reader pastes one block, not the page), against a loopback OpenAI-compatible server that
plays both the safety model (through ``GUARD_PLUGIN_CLASSIFIER=vllm://...``) and the agent's
chat model (through ``OPENAI_BASE_URL``), set the way the README tells users to. A
``print(...)  # text`` line must print that text. ``guard-plugin`` command lines run through
the installed command in a folder laid out like a clone; YAML blocks are validated.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("langchain_openai")

from guard_plugin.policy import policy_from_mapping
from tests.loopback_openai import LoopbackChatServer, tool_call_message

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)
UNSAFE = re.compile(r"bomb|worthless|idiot", re.IGNORECASE)


def text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    if "chat_template_kwargs" in body:  # the safety model
        kwargs = body["chat_template_kwargs"]
        cats = (
            "\nSafety Categories: Violence"
            if kwargs.get("request_categories") == "/categories"
            else ""
        )
        user = text_of(messages[0]["content"])
        if len(messages) > 1:
            bad = UNSAFE.search(text_of(messages[1]["content"]))
            verdict = "User Safety: safe\nResponse Safety: " + ("unsafe" + cats if bad else "safe")
        else:
            verdict = "User Safety: " + ("unsafe" + cats if UNSAFE.search(user) else "safe")
        if kwargs.get("enable_thinking"):
            verdict = "<think>Checked against the taxonomy.</think>\n" + verdict
        return {"role": "assistant", "content": verdict}
    last = messages[-1]  # the agent's chat model
    if last["role"] == "tool":
        return {"role": "assistant", "content": "Sent: the report is on its way to Bob."}
    if body.get("tools") and "email" in text_of(last["content"]):
        args = {"to": "bob@example.com", "subject": "Report", "body": "Q3 numbers attached."}
        return tool_call_message("send_email", args, f"call_{len(messages)}")
    if "Roast" in text_of(last["content"]):  # a long answer that turns unsafe
        start = " ".join(f"Your manager has strengths number {i}." for i in range(12))
        return {"role": "assistant", "content": f"{start} But really, a worthless idiot. Sorry."}
    return {"role": "assistant", "content": "Paris."}


@pytest.fixture(scope="module")
def model_server() -> Iterator[LoopbackChatServer]:
    server = LoopbackChatServer(reply, model="nvidia/Nemotron-3.5-Content-Safety")
    yield server
    server.close()


@pytest.fixture
def user_env(model_server: LoopbackChatServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "GUARD_PLUGIN_CLASSIFIER": "vllm://" + model_server.url.removeprefix("http://"),
        "OPENAI_BASE_URL": model_server.url,
        "OPENAI_API_KEY": "loopback",
        "LANGSMITH_TRACING": "false",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def expected_prints(code: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*print\(.*\)\s+# (.+)$", code, re.M)]


def test_the_readme_has_the_blocks_this_test_reads() -> None:
    langs = [lang for lang, _ in BLOCKS]
    assert langs.count("python") >= 7 and "bash" in langs and "yaml" in langs
    assert BLOCKS[0] == ("bash", BLOCKS[0][1]) and "make demo" in BLOCKS[0][1]


PYTHON_BLOCKS = [(n, code) for n, (lang, code) in enumerate(BLOCKS) if lang == "python"]


@pytest.mark.parametrize(("n", "code"), PYTHON_BLOCKS, ids=[f"block{n}" for n, _ in PYTHON_BLOCKS])
def test_each_python_block_runs_alone_as_printed(
    n: int, code: str, user_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / f"readme_block_{n}.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"block {n}:\n{done.stderr[-3000:]}"
    for text in expected_prints(code):
        assert text in done.stdout, f"block {n}: {text!r} not in {done.stdout!r}"
    # what the agent examples did, as their callers saw it
    if "email bob the report" in code:
        assert "Sent: the report is on its way to Bob." in done.stdout


def test_every_cli_line_runs(user_env: dict[str, str], tmp_path: Path) -> None:
    # a clone's layout: the files the lines name are the shipped ones
    (tmp_path / "guard_plugin").symlink_to(ROOT / "guard_plugin")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    exe = Path(sys.executable).with_name("guard-plugin")
    lines = [
        line.split("#")[0].strip()
        for lang, code in BLOCKS
        if lang == "bash"
        for line in code.splitlines()
        if line.startswith("guard-plugin ")
    ]
    assert len(lines) == 5
    for line in lines:
        argv = [str(exe), *shlex.split(line)[1:]]
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode in (0, 1), (line, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout, line


def test_every_yaml_block_is_valid() -> None:
    shipped = yaml.safe_load((ROOT / "integrations/nemoguardrails/colang1/config.yml").read_text())
    for lang, code in BLOCKS:
        if lang != "yaml":
            continue
        data = yaml.safe_load(code)
        if "rails" in data:
            assert data["rails"] == shipped["rails"]
        else:
            policy_from_mapping(data, source="README policy")
