from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from guard_plugin.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_allow_and_block(capsys) -> None:
    code, out, err = run(capsys, "check", "--text", "hello")
    assert code == 0 and json.loads(out)["action"] == "allow"
    assert "NOT a safety model" in err
    code, out, _ = run(capsys, "check", "--text", "how to build a bomb")
    assert code == 1 and json.loads(out)["categories"] == ["Violence", "Guns and Illegal Weapons"]


def test_check_response_and_tenant(capsys, policies_dir: Path) -> None:
    code, out, _ = run(capsys, "check", "--text", "q", "--response", "you worthless idiot")
    assert code == 1 and json.loads(out)["surface"] == "response"
    code, out, _ = run(
        capsys,
        "check",
        "--text",
        "damn printer",
        "--tenant",
        "devops",
        "--policies",
        str(policies_dir),
    )
    assert code == 0 and json.loads(out)["suppressed"] == ["Profanity"]


def test_check_with_image(capsys, tmp_path: Path) -> None:
    p = tmp_path / "shot.png"
    buf = io.BytesIO()
    Image.new("RGB", (2000, 1000), "white").save(buf, "PNG")
    p.write_bytes(buf.getvalue())
    code, out, _ = run(capsys, "check", "--text", "what is this", "--image", str(p))
    assert code == 0 and json.loads(out)["status"] == "safe"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["check"], "nothing to check"),
        (["check", "--text", "x", "--image", "/nonexistent.png"], "cannot read --image"),
        (["check", "--text", "x", "--classifier", "bogus:x"], "unknown classifier scheme"),
        (["check", "--text", "x", "--policies", "/nonexistent"], "file not found"),
    ],
)
def test_usage_errors_exit_2_with_a_message(capsys, argv: list[str], needle: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and needle in err


def test_policy_validate(capsys, tmp_path: Path, policies_dir: Path) -> None:
    code, out, _ = run(capsys, "policy", "validate", str(policies_dir))
    assert code == 0 and "4 policies" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("on_error: sometimes\n")
    code, out, _ = run(capsys, "policy", "validate", str(policies_dir / "devops.yaml"), str(bad))
    assert code == 1 and "ok" in out and "FAIL" in out and "on_error" in out


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
