from __future__ import annotations

from pathlib import Path

import pytest

POLICIES = Path(__file__).resolve().parents[1] / "guard_plugin" / "policies"


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
