from __future__ import annotations

from pathlib import Path

import pytest

POLICIES = Path(__file__).resolve().parents[1] / "guard_plugin" / "policy" / "builtin"


@pytest.fixture
def policies_dir() -> Path:
    return POLICIES


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random-weight Gemma 3 folder with a LoRA adapter, built once per session."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from guard_plugin.testing import build_tiny_gemma3

    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"), lora=True)


@pytest.fixture(scope="session")
def verdict_model(tmp_path_factory: pytest.TempPathFactory):
    """The test model trained to answer in the verdict format (about a minute, once per
    session): unsafe exactly when a marker word is in a turn. Not a safety classifier."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import os

    from guard_plugin.testing import build_verdict_test_model

    prebuilt = os.environ.get("GUARD_PLUGIN_TEST_VERDICT_MODEL")
    if prebuilt:  # a folder the same builder wrote earlier (make test-vllm shares one)
        from guard_plugin.testing import TinyModel

        return TinyModel(Path(prebuilt), None, 16, 4)
    return build_verdict_test_model(tmp_path_factory.mktemp("verdict-model"))
