"""``compile=true`` on the local backend: compiled at load, not in a user's check, with the
verdicts and scores of the eager model; a compile that fails, fails the load."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch._dynamo.utils

from guard_plugin import ConfigError, Policy, load_classifier
from guard_plugin.classifiers.transformers import TransformersClassifier
from guard_plugin.classifiers.transformers.runner import Runner
from guard_plugin.errors import ModelLoadError
from tests.test_prefix_cache import conversation_requests, same, window_requests


def graphs() -> int:
    """Graphs compiled so far in this process."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


@pytest.fixture(scope="module")
def compiled(verdict_model: Any) -> Any:
    clf = TransformersClassifier(str(verdict_model.path), compile=True)
    yield clf
    clf.close()


@pytest.fixture(scope="module")
def eager(verdict_model: Any) -> Any:
    clf = TransformersClassifier(str(verdict_model.path))
    yield clf
    clf.close()


def test_compiles_at_load_and_forgets_the_warm_up(compiled: Any) -> None:
    s = compiled.stats
    assert s["requests"] == 0 and s["forward_passes"] == 0
    assert s["prefix_entries"] == 0 and s["prefix_hits"] == 0 and s["prefilled_tokens"] == 0
    assert compiled._runner.decoder.text_forward is not compiled.local.model


def test_user_checks_compile_nothing_and_agree_with_the_eager_model(
    compiled: Any, eager: Any
) -> None:
    """Single checks with and without a kept prefix, padded batches sharing the header,
    response checks, categories: what the warm-up did not compile, a user's check would."""
    before = graphs()
    singles = conversation_requests(6) + window_requests(Policy(), marker_at=60)[:6]
    for r in singles:
        (a,) = compiled.classify([r])
        (b,) = eager.classify([r])
        same(a, b)
    for size in (2, 5):
        batch = conversation_requests(size, start=20 + size)
        for a, b in zip(compiled.classify(batch), eager.classify(batch), strict=True):
            same(a, b)
    assert graphs() == before, "a user's check compiled a graph the warm-up left out"
    assert any("unsafe" in compiled.classify([r])[0].text for r in singles)


def test_the_spec_takes_compile(verdict_model: Any) -> None:
    with pytest.raises(ConfigError, match=r"bad value for compile .* not true or false"):
        load_classifier(f"transformers:{verdict_model.path}?compile=maybe")


def test_a_failed_compile_fails_the_load_saying_why(verdict_model: Any, monkeypatch) -> None:
    def broken(self: Runner) -> list[Any]:
        raise RuntimeError("no C compiler found")

    monkeypatch.setattr(Runner, "warm_up", broken)
    with pytest.raises(ModelLoadError, match=r"compile=true failed .* no C compiler found"):
        TransformersClassifier(str(verdict_model.path), compile=True)


def test_compile_with_generated_verdicts_is_refused(verdict_model: Any) -> None:
    with pytest.raises(ConfigError, match=r"verdict_mode=logits.*: leave compile off"):
        TransformersClassifier(str(verdict_model.path), verdict_mode="generate", compile=True)
