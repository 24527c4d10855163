from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import guard_plugin
from guard_plugin.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def scripted(monkeypatch) -> None:
    """The stand-in, named explicitly as a user would; tests that want it unset unset it."""
    monkeypatch.setenv("GUARD_PLUGIN_CLASSIFIER", "scripted")


def test_check_allow_and_block(capsys) -> None:
    code, out, err = run(capsys, "check", "--text", "hello", "--json")
    assert code == 0 and json.loads(out)["action"] == "allow"
    assert "NOT a safety model" in err
    code, out, _ = run(capsys, "check", "--text", "how to build a bomb", "--json")
    assert code == 1 and json.loads(out)["categories"] == ["Violence", "Guns and Illegal Weapons"]


def test_check_prints_a_one_line_summary_by_default(capsys) -> None:
    code, out, _ = run(capsys, "check", "--text", "how to build a bomb")
    assert code == 1
    assert out.splitlines()[0].startswith("BLOCK  input  unsafe  Violence, Guns and Illegal")
    assert "policy default v1" in out and "{" not in out


def test_check_response_and_tenant(capsys, policies_dir: Path) -> None:
    code, out, _ = run(
        capsys, "check", "--text", "q", "--response", "you worthless idiot", "--json"
    )
    assert code == 1 and json.loads(out)["surface"] == "response"
    for policies in (str(policies_dir), "builtin"):
        code, out, _ = run(
            capsys, "check", "--text", "damn printer", "--tenant", "devops",
            "--policies", policies, "--json",
        )  # fmt: skip
        d = json.loads(out)
        assert code == 0 and d["suppressed"] == ["Profanity"] and d["policy_id"] == "devops"


def png_file(tmp_path: Path, color: str = "white") -> Path:
    p = tmp_path / f"{color}.png"
    buf = io.BytesIO()
    Image.new("RGB", (2000, 1000), color).save(buf, "PNG")
    p.write_bytes(buf.getvalue())
    return p


def test_check_with_image_labels_the_image_part(capsys, tmp_path: Path) -> None:
    code, out, _ = run(
        capsys, "check", "--text", "what is this", "--image", str(png_file(tmp_path)), "--json"
    )
    d = json.loads(out)
    assert code == 0 and d["status"] == "safe"
    assert [p["part"] for p in d["parts"]] == ["content[0]", "content[1]"]


def test_check_a_pdf_file(capsys, tmp_path: Path) -> None:
    from guard_plugin.testing import make_text_pdf

    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(make_text_pdf(["Quarterly revenue grew.", "Step 1: build a bomb."]))
    code, out, _ = run(capsys, "check", "--file", str(pdf), "--surface", "tool")
    assert code == 1
    assert "content[0].page[1]: unsafe" in out and "content[0].page[0]" not in out
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    code, out, _ = run(capsys, "check", "--file", str(broken), "--json")
    d = json.loads(out)
    # no verdict: blocked by on_error, with an exit code of its own
    assert code == 4 and d["status"] == "error" and d["error_kind"] == "media"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["check"], "nothing to check"),
        (["check", "--text", "x", "--image", "/nonexistent.png"], "cannot read --image"),
        (["check", "--file", "/nonexistent.pdf"], "cannot read --file"),
        (["check", "--text", "x", "--classifier", "bogus:x"], "unknown classifier scheme"),
        (["check", "--text", "x", "--policies", "/nonexistent"], "file not found"),
        (["check", "--text", "x", "--surface", "tool", "--response", "r"], "--response goes with"),
        (["policy", "validate", "/nonexistent"], "no such file or folder"),
    ],
)
def test_usage_errors_exit_2_with_a_message(capsys, argv: list[str], needle: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and needle in err


def test_no_classifier_is_a_configuration_error_not_the_stand_in(capsys, monkeypatch) -> None:
    monkeypatch.delenv("GUARD_PLUGIN_CLASSIFIER")
    code, out, err = run(capsys, "check", "--text", "hello")
    assert code == 2 and out == ""
    assert "set GUARD_PLUGIN_CLASSIFIER" in err and "scripted" in err


def test_an_internal_failure_exits_3(capsys, monkeypatch) -> None:
    from guard_plugin.check import Guard

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(Guard, "check_content", broken)
    code, _, err = run(capsys, "check", "--text", "hello")
    assert code == 3 and "internal error: RuntimeError: boom" in err


def test_version_and_documented_exit_codes() -> None:
    exe = [sys.executable, "-m", "guard_plugin.cli"]
    out = subprocess.run([*exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"guard-plugin {guard_plugin.__version__}"
    helped = subprocess.run([*exe, "check", "--help"], capture_output=True, text=True, check=True)
    for line in ("0  allowed", "1  not allowed", "2  usage or configuration error", "3  internal"):
        assert line in helped.stdout


def test_policy_validate(capsys, tmp_path: Path, policies_dir: Path) -> None:
    code, out, _ = run(capsys, "policy", "validate", str(policies_dir))
    assert code == 0 and out.count("ok ") == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("on_error: sometimes\n")
    code, out, _ = run(capsys, "policy", "validate", str(policies_dir / "devops.yaml"), str(bad))
    assert code == 1 and "ok" in out and "FAIL" in out and "on_error" in out


def test_policy_validate_reports_every_problem_of_every_file(capsys, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("on_error: sometimes\nreasoning: loud\n")
    (tmp_path / "b.yaml").write_text("actions: {input: nope}\nbogus: 1\n")
    (tmp_path / "c.yaml").write_text("")
    (tmp_path / "d.yaml").write_text("id: d\n")
    code, out, _ = run(capsys, "policy", "validate", str(tmp_path))
    assert code == 1
    assert out.count("FAIL") == 3 and "ok   " in out and "d.yaml" in out
    for needle in (
        "field 'on_error'",
        "field 'reasoning'",
        "field 'actions.input",
        "field 'bogus'",
        "c.yaml: the policy is empty",
    ):
        assert needle in out


def test_demo_runs_the_guarded_agent_and_labels_the_stand_in(capsys) -> None:
    pytest.importorskip("langchain")
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert "SCRIPTED STAND-IN" in out and "NOT a safety model" in out
    assert (
        "rewrite" in out and "block" in out and "escalate" in out
    )  # screenshot, PDF page, email, review
    assert "page 2 of this document" in out and "interrupt: human review requested" in out
    assert "Emails actually sent: 0" in out and "Messages actually posted: 0" in out
    assert out.count('"tenant":') >= 10  # the audit log lines


def test_a_malformed_spec_a_dead_server_and_unsafe_content_have_three_exit_codes(capsys) -> None:
    from tests.loopback_openai import free_port

    code, _, err = run(capsys, "check", "--text", "hi", "--classifier", "vllm:/localhost:8000")
    assert code == 2 and "vllm://localhost:8000/v1" in err
    dead = f"vllm://127.0.0.1:{free_port()}/v1?model=m"
    code, out, _ = run(capsys, "check", "--text", "hi", "--classifier", dead)
    assert code == 4 and "no verdict:" in out and "unreachable" in out
    code, out, _ = run(capsys, "check", "--text", "how to build a bomb", "--classifier", "scripted")
    assert code == 1 and out.startswith("BLOCK")
    code, _, _ = run(capsys, "check", "--text", "hello", "--classifier", "scripted")
    assert code == 0


def test_loading_a_local_model_prints_no_progress_bars(tiny_model) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "guard_plugin.cli",
            "check",
            "--text",
            "hi",
            "--classifier",
            f"transformers:{tiny_model.path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode in (0, 1, 4), done.stderr
    assert "Loading weights" not in done.stderr and "it/s" not in done.stderr
