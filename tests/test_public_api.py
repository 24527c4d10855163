"""The public surface is deliberate: this test pins it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import guard_plugin

PUBLIC = {
    "Action",
    "AuditEvent",
    "ClassifierError",
    "ConfigError",
    "Decision",
    "Guard",
    "GuardBlocked",
    "GuardError",
    "ImageData",
    "JsonlAuditSink",
    "MediaError",
    "Policy",
    "PolicyError",
    "PolicyStore",
    "SafetyInput",
    "Status",
    "Surface",
    "UnverifiableMedia",
    "__version__",
    "load_classifier",
    "load_policy",
    "rewrite_content",
}


def test_all_is_pinned() -> None:
    assert set(guard_plugin.__all__) == PUBLIC
    for name in guard_plugin.__all__:
        assert hasattr(guard_plugin, name)


@pytest.mark.parametrize("name", sorted(guard_plugin._MOVED))
def test_moved_names_still_import_with_a_warning_naming_their_home(name: str) -> None:
    home = importlib.import_module(guard_plugin._MOVED[name])
    with pytest.warns(DeprecationWarning, match=f"import it from {home.__name__}"):
        old = getattr(guard_plugin, name)
    assert old is getattr(home, name)
    assert name not in guard_plugin.__all__


def test_moved_module_paths_still_import() -> None:
    from guard_plugin.classifiers.scripted import ScriptedClassifier as A
    from guard_plugin.guard import Guard
    from guard_plugin.testing import ScriptedClassifier as B
    from guard_plugin.testing_langchain import ScriptedChatModel, tool_call

    assert A is B and Guard is guard_plugin.Guard
    assert ScriptedChatModel is importlib.import_module("guard_plugin.testing").ScriptedChatModel
    assert tool_call is importlib.import_module("guard_plugin.testing.langchain").tool_call


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        guard_plugin.Nope  # noqa: B018


def test_core_imports_no_framework_and_no_torch() -> None:
    code = (
        "import sys, guard_plugin, guard_plugin.media, guard_plugin.cli;"
        "mods=('torch','transformers','peft','langchain','langchain_core','langgraph','nemoguardrails');"
        "bad=[m for m in mods if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_scripted_classifier_says_what_it_is() -> None:
    from guard_plugin.testing import ScriptedClassifier

    assert "NOT a safety model" in repr(ScriptedClassifier())
    assert "NOT a safety model" in (ScriptedClassifier.__doc__ or "") + (
        sys.modules["guard_plugin.testing.scripted"].__doc__ or ""
    )


def test_the_architecture_page_lists_exactly_the_public_names() -> None:
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    section = page.split("## Public API", 1)[1].split("\n## ", 1)[0]
    listed = section.split("which also checks this list):", 1)[1].split(".\n", 1)[0]
    assert set(re.findall(r"`([\w]+)`", listed)) == set(guard_plugin.__all__)
