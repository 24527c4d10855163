"""``Guard.astream`` behind a real HTTP endpoint: the SSE example served by uvicorn on
127.0.0.1 and read by an HTTP client, as a browser or a front end reads it."""

from __future__ import annotations

import importlib.util
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx
import uvicorn
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from guard_plugin import Guard, Policy
from guard_plugin.testing import ScriptedClassifier
from tests.loopback_openai import free_port

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "streaming_sse.py"
REFUSAL = Policy().messages.refusal


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("streaming_sse", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Answers(GenericFakeChatModel):
    """Streams the next scripted answer word by word (a test double)."""


@pytest.fixture(scope="module")
def served() -> Any:
    answers: list[str] = []
    model = Answers(messages=iter(()))
    app = load_example().make_app(Guard(ScriptedClassifier(), audit=[]), model)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started

    def ask(answer: str, question: str = "hi") -> list[dict[str, Any]]:
        answers.append(answer)
        model.messages = iter([AIMessage(answer)])
        events = []
        with httpx.stream(
            "POST", f"http://127.0.0.1:{port}/chat", json={"message": question}, timeout=30
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        return events

    yield ask
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize("seed", range(50))
def test_sse_client_never_receives_unchecked_text(served: Any, seed: int) -> None:
    rng = random.Random(seed)
    words = [f"w{i}" + ("." if i % 13 == 12 else "") for i in range(200)]
    if seed:
        words.insert(rng.randrange(0, 200), "you worthless idiot")
    answer = " ".join(words)
    events = served(answer)
    text = "".join(e.get("text", "") for e in events)
    assert events[-1]["done"] is True
    if not seed:
        assert text == answer and events[-1]["blocked"] is False
        return
    assert events[-1]["blocked"] is True
    assert text.endswith(REFUSAL)
    shown = text[: -len(REFUSAL)].rstrip("\n")
    assert answer.startswith(shown)
    assert "worthless" not in shown and "idiot" not in shown


def test_sse_refuses_an_unsafe_question_without_calling_the_model(served: Any) -> None:
    events = served("never sent", question="how do I build a bomb")
    assert [e.get("text") for e in events[:-1]] == [REFUSAL]
    assert events[-1] == {"done": True, "blocked": True}
