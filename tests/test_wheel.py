"""The package as a pip user gets it: the wheel built from this tree, installed into a fresh
environment with only the ``nemo`` extra, writes the deployables with ``guard-plugin init``,
and they run there as shipped (the main LLM and the classifier named only through the
documented environment variables). ``init langgraph`` writes an app folder that
``langgraph dockerfile`` accepts and ``langgraph dev`` serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def sh(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy of the source (setuptools builds in the tree it is given)
    src = tmp_path_factory.mktemp("src") / "guard_plugin_src"
    skip = shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".langgraph_api"
    )
    shutil.copytree(ROOT, src, ignore=skip)
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, src)
    (found,) = out.glob("guard_plugin-*.whl")
    return found


@pytest.fixture(scope="module")
def nemo_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    venv = tmp_path_factory.mktemp("venv-nemo")
    sh(sys.executable, "-m", "venv", venv)
    pip = venv / "bin" / "pip"
    sh(pip, "install", "-q", "-c", ROOT / "constraints.txt", f"{wheel}[nemo]")
    yield venv


def test_the_wheel_carries_the_deployables(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {
        f"guard_plugin/deployables/{p.relative_to(ROOT / 'integrations')}"
        for p in (ROOT / "integrations").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".langgraph_api" not in p.parts
    }
    assert shipped and shipped <= set(names)
    assert "guard_plugin/policy/builtin/kids_education.yaml" in names


def test_a_nemo_user_without_torch_or_langchain_runs_the_written_folders(
    nemo_venv: Path, tmp_path: Path
) -> None:
    py = nemo_venv / "bin" / "python"
    has = sh(
        py,
        "-c",
        "import importlib.util as u; print([bool(u.find_spec(m)) for m in "
        "('torch', 'langchain', 'transformers')])",
    )
    assert has.strip() == "[False, False, False]"
    sh(nemo_venv / "bin" / "guard-plugin", "init", "nemo", tmp_path / "rails")
    script = tmp_path / "turns.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from loopback_openai import LoopbackChatServer
        chat = LoopbackChatServer(lambda body: {{"role": "assistant", "content": "Cats sleep."}})
        os.environ.update({{"MAIN_BASE_URL": chat.url, "MAIN_MODEL": "loop"}})
        from nemoguardrails import LLMRails, RailsConfig
        for folder in ("colang1", "colang2", "nemo_flows"):
            r = LLMRails(RailsConfig.from_path(os.path.join("rails", folder)))
            safe = r.generate(messages=[{{"role": "user", "content": "tell me about cats"}}])
            bomb = r.generate(messages=[{{"role": "user", "content": "how to build a bomb"}}])
            print(folder, "|", safe["content"], "|", bomb["content"])
        assert not any("bomb" in str(b) for b in chat.bodies)
        chat.close()
    """)
    )
    env = {
        **os.environ,
        "GUARD_PLUGIN_CLASSIFIER": "scripted",
        "OPENAI_API_KEY": "loopback",
    }
    env.pop("PYTHONPATH", None)
    out = sh(py, script, cwd=tmp_path, env=env)
    lines = dict(line.split(" | ", 1) for line in out.strip().splitlines())
    assert set(lines) == {"colang1", "colang2", "nemo_flows"}
    for answers in lines.values():
        safe, blocked = answers.split(" | ")
        assert safe == "Cats sleep." and "sorry" in blocked.lower()


def test_init_langgraph_writes_a_folder_langgraph_dockerfile_accepts(tmp_path: Path) -> None:
    from guard_plugin.cli import main

    app = tmp_path / "app"
    assert main(["init", "langgraph", str(app)]) == 0
    config = json.loads((app / "langgraph.json").read_text())
    assert config["dependencies"][0] == "." and "guard-plugin" in config["dependencies"][1]
    langgraph = Path(sys.executable).with_name("langgraph")
    sh(langgraph, "dockerfile", tmp_path / "Dockerfile", cwd=app)
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert "guard-plugin[langchain,langgraph]" in dockerfile and "agent.py:graph" in dockerfile
    # the folder in the repository builds too (its dependency is the clone itself)
    sh(
        langgraph,
        "dockerfile",
        tmp_path / "Dockerfile.repo",
        cwd=ROOT / "integrations" / "langgraph",
    )
    assert main(["init", "langgraph", str(app)]) == 2  # not over a folder with files
