"""``guard-plugin eval``: a policy on labelled examples; rates, a threshold sweep, the
disagreements, and (``--out``) plots."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from guard_plugin.check import Guard
from guard_plugin.classifiers.registry import spec_from_env
from guard_plugin.cli.common import EXIT_OK, note_if_scripted
from guard_plugin.errors import ConfigError
from guard_plugin.evaluation import (
    EvalReport,
    disagreement_rows,
    evaluate,
    load_examples,
    write_plots,
)
from guard_plugin.policy import CompiledPolicy
from guard_plugin.types import Surface

__all__ = ["run"]


def _pct(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"  # NaN: no examples of that kind


def run(args: argparse.Namespace) -> int:
    examples = load_examples(args.data)
    spec = spec_from_env(args.classifier, where="guard-plugin eval")
    err = Console(stderr=True)
    note_if_scripted(spec, "note: the scripted stand-in is a test double, NOT a safety model.")
    if args.out is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--out writes plots, which need matplotlib: pip install 'guard-plugin[eval]'"
            ) from None
        _check_out(args.out, overwrite=args.overwrite)
    with Guard(spec, policies=args.policies, audit=[]) as guard:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("checking", total=len(examples))
            report = evaluate(
                guard,
                examples,
                tenant=args.tenant,
                concurrency=args.concurrency,
                progress=lambda n: bar.advance(task, n),
            )
        policy = guard.policies.get(args.tenant)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return EXIT_OK
    out = Console(width=110)
    out.print(
        f"[bold]{len(examples)} examples[/] from {args.data}, policy '{policy.id}' "
        f"v{policy.version}, {guard.classifier.name}"
    )
    _rates(out, report)
    _threshold(out, report, policy)
    rows = list(disagreement_rows(report))
    _disagreements(out, rows, args.show)
    if args.out is not None:
        _write(out, report, rows, args.out)
    return EXIT_OK


def _rates(out: Console, report: EvalReport) -> None:
    table = Table("", "n", "precision", "recall", "F1", "FPR", "tp", "fp", "fn", "tn")

    def row(name: str, c: Any) -> None:
        table.add_row(
            name,
            str(c.n),
            _pct(c.precision),
            _pct(c.recall),
            _pct(c.f1),
            _pct(c.fpr),
            str(c.tp),
            str(c.fp),
            str(c.fn),
            str(c.tn),
        )

    row("overall", report.overall)
    for lang, c in sorted(report.by_language.items()):
        row(f"language {lang}", c)
    for cat, c in sorted(report.by_category.items()):
        row(f"category {cat}", c)
    out.print(table)
    if report.errors:
        out.print(
            f"[red]{len(report.errors)} checks failed[/] (blocked by on_error; "
            "left out of the rates, listed below)"
        )


def _threshold(out: Console, report: EvalReport, policy: CompiledPolicy) -> None:
    best = report.best_threshold()
    if best is None:
        out.print("threshold sweep: no scores (this backend reports none)")
    else:
        t, c = best
        configured = {s.value: policy.threshold_for(s) for s in Surface}
        set_ = ", ".join(f"{k} {v}" for k, v in configured.items() if v is not None)
        out.print(
            f"threshold sweep over {report.scored} scored checks: best F1 {_pct(c.f1)} at "
            f"P(unsafe) >= {t:.2f} (precision {_pct(c.precision)}, recall {_pct(c.recall)}, "
            f"FPR {_pct(c.fpr)}); the policy's thresholds: "
            + (set_ or "none (the model's own label decides)")
        )


def _disagreements(out: Console, rows: list[dict[str, Any]], show: int) -> None:
    if rows:
        out.print(
            f"[bold]{len(rows)} disagreements and errors[/]"
            + (f" (first {show})" if len(rows) > show else "")
        )
    for r in rows[:show]:
        score = "-" if r["score"] is None else f"{r['score']:.3f}"
        text = r["text"] if r["response"] is None else f"{r['text']} -> {r['response']}"
        out.print(
            f"  {r['id']}: label {r['label']}, guard {r['predicted']} "
            f"(score {score}{', ' + ', '.join(r['categories']) if r['categories'] else ''})"
            f"  {text[:70]!r}",
            markup=False,
            highlight=False,
        )
        if r["error"]:
            out.print(f"      error: {r['error'][:160]}", markup=False, highlight=False)
        if r["reasoning"]:
            out.print(f"      trace: {r['reasoning'][:300]}", markup=False, highlight=False)


OUTPUTS = ("metrics.json", "disagreements.jsonl", "confusion.png", "pr_curve.png")


def _check_out(folder: Path, *, overwrite: bool) -> None:
    """``--out`` is usable before any check runs: a folder (made if missing) that can be
    written, whose earlier results are replaced only with ``--overwrite``."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file; give a folder for the results")
    earlier = [name for name in OUTPUTS if (folder / name).exists()]
    if earlier and not overwrite:
        raise ConfigError(
            f"--out {folder} already holds {', '.join(earlier)}; give another folder or add "
            "--overwrite to replace them"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(f"--out {folder} cannot be written: {err.strerror}") from None


def _write(out: Console, report: EvalReport, rows: list[dict[str, Any]], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    with (folder / "disagreements.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            # ASCII escapes: any text (a lone surrogate included) is valid JSON on one line
            f.write(json.dumps(r) + "\n")
    written = write_plots(report, folder)
    listed = [folder / "metrics.json", folder / "disagreements.jsonl", *written]
    out.print("wrote " + ", ".join(str(p) for p in listed))
