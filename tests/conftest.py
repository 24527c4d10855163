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
def verdict_model(request: pytest.FixtureRequest):
    """The test model trained to answer in the verdict format: unsafe exactly when a marker
    word is in a turn. Not a safety classifier. Trained once per machine (about two minutes
    on two cores) and kept in the test-model cache under a key of the code that builds it;
    training shows its progress on the terminal."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import os
    import sys
    import time

    from guard_plugin.testing import TinyModel, cached_verdict_test_model

    prebuilt = os.environ.get("GUARD_PLUGIN_TEST_VERDICT_MODEL")
    if prebuilt:  # a folder the same builder wrote earlier
        return TinyModel(Path(prebuilt), None, 16, 4)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    t0 = time.monotonic()

    def progress(step: int, steps: int, loss: float) -> None:
        with capture.global_and_fixture_disabled():
            sys.stderr.write(
                ("\n" if step <= 50 else "\r")
                + f"[test model] training step {step}/{steps}, loss {loss:.3f}, "
                f"{time.monotonic() - t0:.0f} s" + ("\n" if step == steps else "")
            )
            sys.stderr.flush()

    return cached_verdict_test_model(progress=progress)
