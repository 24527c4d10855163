"""The core as users meet it: a served model without torch, keys, shared classifiers, bad
arguments, and what the library prints on its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from guard_plugin import ConfigError, Guard, load_classifier
from guard_plugin.classifiers import ClassifierOutput, register_scheme
from guard_plugin.classifiers.base import BaseClassifier
from guard_plugin.prompting import ModelRequest
from tests.loopback_openai import LoopbackChatServer


@pytest.fixture
def guard_model() -> Iterator[LoopbackChatServer]:
    """A loopback server standing in for vLLM serving the safety model."""

    def verdict(body: dict[str, Any]) -> dict[str, Any]:
        text = str(body["messages"][0]["content"])
        unsafe = "bomb" in text
        content = (
            "User Safety: unsafe\nSafety Categories: Violence" if unsafe else ("User Safety: safe")
        )
        return {"role": "assistant", "content": content}

    server = LoopbackChatServer(verdict, model="nvidia/Nemotron-3.5-Content-Safety")
    yield server
    server.close()


NO_TORCH = """
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "peft", "tokenizers"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Blocker())
"""


def run_without_torch(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_served_model_needs_no_torch(guard_model: LoopbackChatServer) -> None:
    host = guard_model.url.removeprefix("http://")
    out = run_without_torch(
        """
        import sys
        from guard_plugin import Guard
        guard = Guard("vllm://" + sys.argv[1], audit=[])
        print(guard.check("hello").action.value, guard.check("how to build a bomb").action.value)
        print(guard.classifier.model)
        assert "torch" not in sys.modules and "transformers" not in sys.modules
        """,
        host,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["allow", "block", "nvidia/Nemotron-3.5-Content-Safety"]
    # the served name was learned from /v1/models, exactly as the server spells it
    assert {b["model"] for b in guard_model.bodies} == {"nvidia/Nemotron-3.5-Content-Safety"}


def test_the_cli_on_a_served_model_without_torch(guard_model: LoopbackChatServer) -> None:
    spec = "vllm://" + guard_model.url.removeprefix("http://")
    out = run_without_torch(
        """
        import sys
        from guard_plugin.cli import main
        sys.exit(main(["check", "--text", "how to build a bomb", "--classifier", sys.argv[1]]))
        """,
        spec,
    )
    assert out.returncode == 1 and out.stdout.startswith("BLOCK  input  unsafe  Violence")
    assert "Traceback" not in out.stderr


def test_a_local_spec_without_torch_says_which_extra_to_install() -> None:
    out = run_without_torch(
        """
        from guard_plugin.cli import main
        raise SystemExit(main(["check", "--text", "hi", "--classifier", "transformers:/m"]))
        """
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "pip install 'guard-plugin[local]'" in out.stderr and "vllm://" in out.stderr


def test_a_named_key_variable_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_NIM_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_NIM_KEY, which is not set"):
        load_classifier("nim+https://nim.example/v1?api_key_env=MY_NIM_KEY", shared=False)
    monkeypatch.setenv("MY_NIM_KEY", "k-123")
    clf = load_classifier("nim+https://nim.example/v1?api_key_env=MY_NIM_KEY", shared=False)
    assert clf._headers["Authorization"] == "Bearer k-123" and "k-123" not in repr(clf)


# -- shared classifiers and close() --------------------------------------------------------------


class Counted(BaseClassifier):
    """A test double that refuses to work once closed."""

    instances: list[Counted] = []

    def __init__(self) -> None:
        self.name = "counted"
        self.closed = False
        Counted.instances.append(self)

    def classify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[Any]:
        assert not self.closed, "used after close"
        return [ClassifierOutput("User Safety: safe") for _ in requests]

    def close(self) -> None:
        self.closed = True


register_scheme("counted", lambda rest, options: ("counted:" + rest, Counted))


def test_close_lets_go_of_a_shared_classifier_only_with_its_last_guard() -> None:
    a, b = Guard("counted:x", audit=[]), Guard("counted:x", audit=[])
    assert a.classifier is b.classifier
    a.close()
    a.close()  # twice is harmless and does not count twice
    assert not b.classifier.closed and b.check("hi").allowed
    b.close()
    assert b.classifier.closed
    c = Guard("counted:x", audit=[])  # a new instance, not the closed one
    assert c.classifier is not b.classifier and c.check("hi").allowed
    c.close()


def test_close_leaves_a_classifier_passed_in_to_its_owner() -> None:
    clf = Counted()
    Guard(clf, audit=[]).close()
    assert not clf.closed


# -- bad arguments get messages that say what to do ------------------------------------------


@pytest.mark.parametrize("bad", [None, 42, b"bytes", {"type": "text"}])
def test_check_rejects_what_it_cannot_take_with_a_pointer(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"use Guard\.check_content"):
        Guard("scripted", audit=[]).check(bad)


def test_a_bad_surface_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'input', 'tool', 'response'"):
        Guard("scripted", audit=[]).check("hi", surface="output")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"on_block": "raise"}, "use 'end'"),
        ({"apply_to_input": "yes"}, "apply_to_input=.*takes True or False"),
        ({"tenant_key": ""}, "tenant_key"),
    ],
)
def test_middleware_options_are_validated(kwargs: dict[str, Any], needle: str) -> None:
    pytest.importorskip("langchain")
    from guard_plugin.langchain import SafetyMiddleware

    with pytest.raises(ConfigError, match=needle):
        SafetyMiddleware(Guard("scripted", audit=[]), **kwargs)


def test_the_library_prints_nothing_until_logging_is_configured() -> None:
    code = """
        import logging, sys
        from guard_plugin import Guard
        guard = Guard("scripted")
        guard.check("how to build a bomb")
        if sys.argv[1] == "configured":
            logging.basicConfig(level=logging.INFO)
            guard.check("how to build a bomb")
        """
    quiet = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), "quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    loud = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), "configured"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    assert '"action":"block"' in loud.stderr
