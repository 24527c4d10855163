"""The ``guard-plugin`` command.

::

    guard-plugin check [--text T] [--image PATH ...] [--file PATH ...] [--response R]
                       [--surface S] [--tenant T] [--policies DIR|FILE|builtin]
                       [--classifier SPEC] [--json]
    guard-plugin eval DATA.jsonl [--policies P] [--tenant T] [--classifier SPEC]
                      [--out DIR] [--concurrency N] [--show N] [--json]
    guard-plugin policy validate PATH [PATH ...]
    guard-plugin demo [--classifier SPEC] [--svg PATH]
    guard-plugin --version

Exit codes (also in ``--help``): 0 allowed / valid, 1 not allowed (block, rewrite or escalate)
/ invalid policy, 2 usage or configuration error (the message says what to fix), 3 internal
failure. ``check`` reads the classifier from ``--classifier`` or ``GUARD_PLUGIN_CLASSIFIER``
and stops with exit 2 when neither is set; ``--classifier scripted`` runs the scripted
stand-in, a test double that is not a safety model, and says so on standard error.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guard_plugin.errors import ConfigError, GuardError, MediaError
from guard_plugin.types import Surface

__all__ = ["main"]

EXIT_OK, EXIT_NOT_ALLOWED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

_EPILOG = """\
exit codes:
  0  allowed (check) / every policy valid (policy validate) / evaluation done (eval)
  1  not allowed: block, rewrite or escalate (check) / a policy is invalid (policy validate)
  2  usage or configuration error; the message says what to fix
  3  internal failure

The classifier comes from --classifier or GUARD_PLUGIN_CLASSIFIER, e.g.
  vllm://localhost:8000/v1         a vLLM server (sglang://, nim+https://, openai:// alike)
  transformers:/models/nemotron    the model in this process (pip install 'guard-plugin[local]')
  scripted                         the scripted stand-in: a test double, NOT a safety model
"""


def _version() -> str:
    from guard_plugin import __version__

    return __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="guard-plugin",
        description="Nemotron Content Safety guardrails",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"guard-plugin {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser(
        "check",
        help="classify content and print the decision",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--text", default="", help="user-side text (a user turn or a tool result)")
    c.add_argument(
        "--image", type=Path, action="append", default=[], help="an image file (repeatable)"
    )
    c.add_argument(
        "--file",
        type=Path,
        action="append",
        default=[],
        help="a PDF, image or text file, checked as a tool result or upload (repeatable)",
    )
    c.add_argument("--response", help="an assistant response to check (the text is its prompt)")
    c.add_argument(
        "--surface",
        choices=["input", "tool", "response"],
        help="default: input, or response with --response",
    )
    c.add_argument("--tenant", help="tenant id (policy file name)")
    c.add_argument(
        "--policies",
        help="a folder of tenant policy files, one file, or 'builtin' (the shipped examples)",
    )
    c.add_argument(
        "--classifier", help="classifier spec (default: $GUARD_PLUGIN_CLASSIFIER; required)"
    )
    c.add_argument(
        "--json", action="store_true", help="print only the decision as JSON (for scripts)"
    )

    e = sub.add_parser(
        "eval",
        help="measure a policy on labelled examples: F1, precision, recall, thresholds",
        description=(
            "Check every example of a JSON Lines file (text, label, optional response, "
            "surface, categories, language, tenant, id) and report precision, recall, F1 and "
            "false-positive rate overall, per language and per category, a P(unsafe) "
            "threshold sweep where the backend gives scores, and the disagreements."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("data", type=Path, help="a .jsonl file of labelled examples")
    e.add_argument("--policies", help="tenant policy folder, one file, or 'builtin'")
    e.add_argument("--tenant", help="tenant for examples that name none")
    e.add_argument(
        "--classifier", help="classifier spec (default: $GUARD_PLUGIN_CLASSIFIER; required)"
    )
    e.add_argument(
        "--out",
        type=Path,
        help="write metrics.json, disagreements.jsonl, confusion.png and pr_curve.png here",
    )
    e.add_argument("--concurrency", type=int, default=16, help="checks in flight (default 16)")
    e.add_argument(
        "--show", type=int, default=20, help="disagreements to print (default 20; all in --out)"
    )
    e.add_argument(
        "--json", action="store_true", help="print only the metrics as JSON (for scripts)"
    )

    d = sub.add_parser("demo", help="run a guarded agent: tool call, screenshot, PDF, escalation")
    d.add_argument(
        "--classifier",
        help="classifier spec (default: $GUARD_PLUGIN_CLASSIFIER, else the scripted stand-in)",
    )
    d.add_argument("--svg", type=Path, help="also save the transcript as an SVG picture")

    pol = sub.add_parser("policy", help="policy tools")
    psub = pol.add_subparsers(dest="policy_command", required=True)
    v = psub.add_parser(
        "validate", help="validate policy files or folders; reports every problem of every file"
    )
    v.add_argument("paths", nargs="+", type=Path)
    return p


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {flag} {path}: {err.strerror}") from None


def _block(path: Path, flag: str) -> dict[str, Any]:
    data = base64.b64encode(_read(path, flag)).decode("ascii")
    mime = mimetypes.guess_type(path.name)[0]
    kind = "image" if flag == "--image" else "file"
    block: dict[str, Any] = {"type": kind, "base64": data, "filename": path.name}
    if mime:
        block["mime_type"] = mime
    return block


def _summary(decision: Any) -> list[str]:
    """One line for the decision, then one per part that was not safe."""
    d = decision
    head = f"{d.action.value.upper()}  {d.surface.value}  {d.status}"
    if d.categories:
        head += f"  {', '.join(d.categories)}"
    if d.score is not None:
        head += f"  P(unsafe) {d.score:.3f}"
    if d.error:
        head += f"  ({d.error_kind}: {d.error})"
    head += f"  [policy {d.policy_id} v{d.policy_version}, {d.model}, {d.latency_ms:.1f} ms]"
    lines = [head]
    if len(d.parts) > 1:
        for p in d.parts:
            if p.status != "safe":
                what = ", ".join(p.categories) or p.error or ""
                lines.append(f"  {p.part}: {p.status}{'  ' + what if what else ''}")
    return lines


def _check(args: argparse.Namespace) -> int:
    from guard_plugin.classifiers.registry import spec_from_env
    from guard_plugin.guard import Guard
    from guard_plugin.types import Surface

    spec = spec_from_env(args.classifier, where="guard-plugin check")
    if spec.split(":", 1)[0] == "scripted":
        print(
            "note: verdicts come from the scripted stand-in (a test double), NOT a safety model.",
            file=sys.stderr,
        )
    surface = (
        Surface(args.surface)
        if args.surface
        else (Surface.RESPONSE if args.response is not None else Surface.INPUT)
    )
    media = [_block(p, "--image") for p in args.image] + [_block(p, "--file") for p in args.file]
    if surface is Surface.RESPONSE:
        if args.response is None:
            raise ConfigError("--surface response needs --response (the text is its prompt)")
        if media:
            raise ConfigError("--image and --file go with the user side, not with --response")
        content: Any = args.response
    else:
        if args.response is not None:
            raise ConfigError(f"--response goes with --surface response, not {surface.value}")
        content = ([{"type": "text", "text": args.text}] if args.text else []) + media
        if not content:
            raise ConfigError("nothing to check: give --text, --image, --file or --response")
    with Guard(spec, policies=args.policies, audit=[]) as guard:
        decision = guard.check_content(
            content, surface=surface, tenant=args.tenant, context=args.text
        )
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(_summary(decision)))
    return EXIT_OK if decision.allowed else EXIT_NOT_ALLOWED


def _pct(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"  # NaN: no examples of that kind


def _eval(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from guard_plugin.classifiers.registry import spec_from_env
    from guard_plugin.evaluation import (
        disagreement_rows,
        evaluate,
        load_examples,
        write_plots,
    )
    from guard_plugin.guard import Guard

    examples = load_examples(args.data)
    spec = spec_from_env(args.classifier, where="guard-plugin eval")
    err = Console(stderr=True)
    if spec.split(":", 1)[0] == "scripted":
        err.print("note: the scripted stand-in is a test double, NOT a safety model.")
    if args.out is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--out writes plots, which need matplotlib: pip install 'guard-plugin[eval]'"
            ) from None
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
    o = report.overall
    out.print(
        f"[bold]{len(examples)} examples[/] from {args.data}, policy '{policy.id}' "
        f"v{policy.version}, {guard.classifier.name}"
    )
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

    row("overall", o)
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
    rows = list(disagreement_rows(report))
    if rows:
        out.print(
            f"[bold]{len(rows)} disagreements and errors[/]"
            + (f" (first {args.show})" if len(rows) > args.show else "")
        )
    for r in rows[: args.show]:
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
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        with (args.out / "disagreements.jsonl").open("w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        written = write_plots(report, args.out)
        out.print(
            "wrote "
            + ", ".join(
                str(p)
                for p in [args.out / "metrics.json", args.out / "disagreements.jsonl", *written]
            )
        )
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from guard_plugin.errors import PolicyError
    from guard_plugin.policy import load_policy

    failed = 0
    for path in args.paths:
        if not path.exists():
            raise ConfigError(f"{path}: no such file or folder")
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        if not files:
            failed += 1
            print(f"FAIL {path}: no *.yaml or *.yml policy files in this folder")
        for f in files:
            try:
                pol = load_policy(f)
            except PolicyError as err:
                failed += 1
                print(f"FAIL {err}")
            else:
                print(f"ok   {f}: policy '{pol.id}' version {pol.version}")
    return EXIT_NOT_ALLOWED if failed else EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    import os

    try:
        from guard_plugin.demo import run_demo
    except ImportError as err:
        raise ConfigError(
            f"the demo needs LangChain and LangGraph ({err.name} is missing): "
            "pip install 'guard-plugin[langchain,langgraph]'"
        ) from None
    spec = args.classifier or os.environ.get("GUARD_PLUGIN_CLASSIFIER")
    if args.svg is None:
        return run_demo(spec)
    from rich.console import Console

    console = Console(record=True, width=100)
    code = run_demo(spec, console=console)
    console.save_svg(str(args.svg), title="guard-plugin demo")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "eval":
            return _eval(args)
        return _validate(args)
    except (ConfigError, MediaError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except GuardError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as err:
        print(
            f"internal error: {type(err).__name__}: {err} (please report it with the command)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
