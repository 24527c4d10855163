"""guard-plugin eval: the data format, the metrics, and the command as users run it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from guard_plugin import ConfigError, Guard, Policy
from guard_plugin.evaluation import Counts, EvalExample, evaluate, load_examples

SHIPPED = Path(__file__).resolve().parents[1] / "examples" / "eval" / "marker-words.jsonl"


def run_eval(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``guard-plugin eval ARGS`` in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "guard_plugin.cli", "eval", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write(tmp_path: Path, *rows: object) -> Path:
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


def test_counts_rates() -> None:
    c = Counts(tp=6, fp=2, tn=10, fn=4)
    assert c.n == 22
    assert c.precision == 0.75 and c.recall == 0.6 and math.isclose(c.f1, 2 * 0.45 / 1.35)
    assert c.fpr == 2 / 12
    empty = Counts()
    assert all(math.isnan(x) for x in (empty.precision, empty.recall, empty.f1, empty.fpr))
    assert Counts(tp=0, fp=3, fn=2).f1 == 0.0


def test_the_shipped_file_loads() -> None:
    examples = load_examples(SHIPPED)
    assert len(examples) == 30
    assert {e.language for e in examples} == {"en", "de", "fr"}
    assert any(e.response for e in examples) and all(
        e.label in ("safe", "unsafe") for e in examples
    )
    assert {c for e in examples for c in e.categories} == {"Violence", "Profanity"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("not json", "line 1: not JSON"),
        ({"label": "safe"}, "'text' must be a string"),
        ({"text": "x", "label": "maybe"}, "'label' must be 'safe' or 'unsafe'"),
        ({"text": "x", "label": "safe", "surface": "output"}, "'surface' must be one of"),
        ({"text": "x", "label": "safe", "surface": "response"}, "needs 'response'"),
        ({"text": "x", "label": "safe", "categories": "Violence"}, "list of names"),
        ({"text": "x", "label": "safe", "verdict": 1}, "unknown field(s) verdict"),
    ],
)
def test_bad_rows_name_their_line(tmp_path, row, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_examples(write(tmp_path, row))


def test_an_empty_file_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no examples"):
        load_examples(write(tmp_path, ""))


def test_errors_are_counted_apart_and_never_as_agreement() -> None:
    from guard_plugin.testing.scripted import ScriptedClassifier

    g = Guard(ScriptedClassifier(fn=lambda req: "User Safety: maybe"), policies=Policy())
    report = evaluate(g, [EvalExample("1", "hello", "safe")])
    assert len(report.errors) == 1 and report.overall.n == 0 and report.disagreements == []
    assert report.to_dict()["errors"] == 1
    g.close()


def test_without_scores_there_is_no_sweep() -> None:
    from guard_plugin.testing.scripted import ScriptedClassifier

    g = Guard(ScriptedClassifier(), policies=Policy())
    report = evaluate(g, load_examples(SHIPPED), concurrency=4)
    assert report.sweep == [] and report.best_threshold() is None and report.overall.n == 30
    g.close()


def test_the_command_on_the_shipped_file_with_the_test_model(verdict_model, tmp_path) -> None:
    out = tmp_path / "report"
    proc = run_eval(
        str(SHIPPED),
        "--classifier",
        f"transformers:{verdict_model.path}",
        "--out",
        str(out),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "30 examples" in text and "overall" in text and "category Violence" in text
    assert "language de" in text and "threshold sweep over 30 scored checks" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["examples"] == 30 and metrics["scored"] == 30 and len(metrics["sweep"]) == 99
    assert 0 < metrics["overall"]["f1"] <= 1
    rows = [json.loads(x) for x in (out / "disagreements.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["overall"]["fp"] + metrics["overall"]["fn"]
    assert all(r["label"] != r["predicted"] for r in rows)
    for png in ("confusion.png", "pr_curve.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Traceback" not in proc.stderr
    # docs/eval.md shows this command's output (make docs writes it): the same rows
    doc = (SHIPPED.parents[2] / "docs" / "eval.md").read_text()
    shown = doc.split("--out docs/eval --overwrite\n```\n\n```\n", 1)[1].split("\n```", 1)[0]

    def rows(text: str) -> list[str]:
        return [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]

    assert rows(shown) == rows(text) and "threshold sweep over 30 scored checks" in shown


def test_json_prints_only_the_metrics() -> None:
    proc = run_eval(str(SHIPPED), "--classifier", "scripted", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["examples"] == 30 and data["scored"] == 0 and data["best_threshold"] is None
    assert "test double" in proc.stderr


def test_the_command_refuses_bad_data_with_exit_2(tmp_path) -> None:
    bad = write(tmp_path, {"text": "x", "label": "maybe"})
    proc = run_eval(str(bad), "--classifier", "scripted", timeout=120)
    assert proc.returncode == 2 and "line 1" in proc.stderr and "Traceback" not in proc.stderr


# -- what the sweep describes, and inputs refused before any check -------------------------


class ScoredDouble:
    """A TEST DOUBLE with scores: 'damn' is Profanity at P 0.9, 'ransomware' Malware at P 0.8,
    anything else safe at P 0.1."""

    name = "scored-double"
    extra_tokens: tuple[str, ...] = ()

    def classify(self, requests, *, timeout=None):
        from guard_plugin.classifiers.base import ClassifierOutput

        out = []
        for r in requests:
            if "damn" in r.user_text:
                out.append(
                    ClassifierOutput(
                        "User Safety: unsafe\nSafety Categories: Profanity", user_score=0.9
                    )
                )
            elif "ransomware" in r.user_text:
                out.append(
                    ClassifierOutput(
                        "User Safety: unsafe\nSafety Categories: Malware", user_score=0.8
                    )
                )
            else:
                out.append(ClassifierOutput("User Safety: safe", user_score=0.1))
        return out

    async def aclassify(self, requests, *, timeout=None):
        return self.classify(requests)

    def close(self) -> None:
        pass


def test_the_sweep_describes_the_guard_the_tenant_runs() -> None:
    """devops switches Profanity off: at every threshold the sweep keeps it off."""
    examples = [
        EvalExample(id="1", text="kill the process, damn it", label="safe"),
        EvalExample(id="2", text="write me ransomware", label="unsafe"),
        EvalExample(id="3", text="hello there", label="safe"),
    ]
    guard = Guard(ScoredDouble(), policies="builtin", audit=[])
    report = evaluate(guard, examples, tenant="devops")
    assert report.overall.f1 == 1.0
    best = report.best_threshold()
    assert best is not None and best[1].f1 == 1.0
    at_half = dict(report.sweep)[0.5]
    assert (at_half.tp, at_half.fp, at_half.tn, at_half.fn) == (1, 0, 2, 0)


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085"])
def test_line_separators_inside_strings_are_characters(tmp_path, sep: str) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text(
        json.dumps({"text": f"a{sep}b", "label": "safe"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    (ex,) = load_examples(p)
    assert ex.text == f"a{sep}b"


def test_a_byte_order_mark_is_accepted(tmp_path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "hi", "label": "safe"}).encode() + b"\n")
    assert load_examples(p)[0].text == "hi"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": "x", "label": "safe", "tenant": ["a"]}, "tenant"),
        ({"text": "x", "label": "safe", "tenant": "../x"}, "tenant"),
        ({"text": "x", "label": "safe", "tenant": "kids_educaton"}, "kids_education"),
    ],
)
def test_bad_tenants_are_usage_errors_before_any_check(tmp_path, row, message) -> None:
    data = write(tmp_path, {"text": "first", "label": "safe"}, row)
    proc = run_eval(str(data), "--classifier", "scripted", "--policies", "builtin", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert "checking" not in proc.stdout


def test_out_is_checked_before_any_check(tmp_path) -> None:
    data = write(tmp_path, {"text": "hi", "label": "safe"})
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    proc = run_eval(str(data), "--classifier", "scripted", "--out", str(a_file), timeout=120)
    assert proc.returncode == 2 and "is a file" in proc.stderr
    out = tmp_path / "report"
    first = run_eval(str(data), "--classifier", "scripted", "--out", str(out), timeout=120)
    assert first.returncode == 0, first.stderr
    again = run_eval(str(data), "--classifier", "scripted", "--out", str(out), timeout=120)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    forced = run_eval(
        str(data), "--classifier", "scripted", "--out", str(out), "--overwrite", timeout=120
    )
    assert forced.returncode == 0, forced.stderr


def test_a_lone_surrogate_in_a_disagreement_is_written_as_valid_json(tmp_path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "build a bomb \\ud800", "label": "safe"}\n')
    out = tmp_path / "report"
    proc = run_eval(str(data), "--classifier", "scripted", "--out", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(x) for x in (out / "disagreements.jsonl").read_text().splitlines()]
    assert row["text"].startswith("build a bomb")
