"""The ``guard-plugin`` command.

::

    guard-plugin check [--text T] [--image PATH ...] [--file PATH ...] [--response R]
                       [--surface S] [--tenant T] [--policies DIR|FILE|builtin]
                       [--classifier SPEC] [--json]
    guard-plugin eval DATA.jsonl [--policies P] [--tenant T] [--classifier SPEC]
                      [--out DIR] [--concurrency N] [--show N] [--json]
    guard-plugin policy validate PATH [PATH ...]
    guard-plugin init nemo|langgraph DIR [--requirement REQ] [--force]
    guard-plugin serve [--host H] [--port P] [--keys FILE | --no-auth] [--classifier SPEC]
    guard-plugin demo [--classifier SPEC] [--svg PATH]
    guard-plugin --version

Exit codes (also in ``--help``): 0 allowed / valid, 1 not allowed (block, rewrite or escalate)
/ invalid policy, 2 usage or configuration error (the message says what to fix), 3 internal
failure, 4 no verdict (``check``: the classifier failed, timed out or answered no verdict, and
``on_error`` decided). ``check`` reads the classifier from ``--classifier`` or
``GUARD_PLUGIN_CLASSIFIER`` and stops with exit 2 when neither is set; ``--classifier
scripted`` runs the scripted stand-in, a test double that is not a safety model, and says so
on standard error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from guard_plugin.cli.common import EXIT_INTERNAL, EXIT_NOT_ALLOWED, EXIT_OK, EXIT_USAGE
from guard_plugin.errors import ConfigError, GuardError, MediaError

__all__ = ["EXIT_INTERNAL", "EXIT_NOT_ALLOWED", "EXIT_OK", "EXIT_USAGE", "main"]


_EPILOG = """\
exit codes:
  0  allowed (check) / every policy valid (policy validate) / evaluation done (eval)
  1  not allowed: block, rewrite or escalate (check) / a policy is invalid (policy validate)
  2  usage or configuration error; the message says what to fix
  3  internal failure
  4  no verdict (check): the classifier failed, timed out or gave no verdict; on_error decided

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
    e.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
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

    s = sub.add_parser(
        "serve", help="an OpenAI-compatible content-safety endpoint (NeMo, vLLM/NIM clients)"
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8088)
    s.add_argument("--classifier", help="classifier spec (default: $GUARD_PLUGIN_CLASSIFIER)")
    s.add_argument("--policies", help="tenant policy folder, one file, or 'builtin' (default)")
    s.add_argument(
        "--keys", type=Path, help="YAML file: tenant -> API key (or $GUARD_PLUGIN_SERVE_KEYS)"
    )
    s.add_argument("--no-auth", action="store_true", help="no API keys (a private network only)")
    s.add_argument("--served-model-name", default="guard-plugin", help="the model id clients name")
    s.add_argument("--max-body-bytes", type=int, default=64 * 2**20, help="larger requests get 413")
    s.add_argument("--grace-s", type=int, default=30, help="seconds to finish checks on shutdown")
    s.add_argument(
        "--audit-all", action="store_true", help="log allowed checks too (default: the rest)"
    )

    i = sub.add_parser(
        "init", help="write a deployable folder: NeMo Guardrails configs or the LangGraph app"
    )
    i.add_argument("kind", choices=["nemo", "langgraph"])
    i.add_argument("dir", type=Path, help="the folder to write (new or empty)")
    i.add_argument("--force", action="store_true", help="write into a folder that has files")
    i.add_argument(
        "--requirement",
        help="langgraph: how the app's image installs guard-plugin (a pip requirement: a "
        "version, a wheel's path or URL); default guard-plugin[langchain,langgraph]==VERSION",
    )

    pol = sub.add_parser("policy", help="policy tools")
    psub = pol.add_subparsers(dest="policy_command", required=True)
    v = psub.add_parser(
        "validate", help="validate policy files or folders; reports every problem of every file"
    )
    v.add_argument("paths", nargs="+", type=Path)
    return p


def _demo(args: argparse.Namespace) -> int:
    import os

    try:
        from guard_plugin.cli.demo import run_demo
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
    # a command prints its own results: no weight-loading bars from Hugging Face libraries
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # what the library logs as warnings (a decision without a verdict, say) the commands
    # print themselves, once, in their own words
    lib = logging.getLogger("guard_plugin")
    level = lib.level
    lib.setLevel(logging.ERROR)
    try:
        return _run(args)
    finally:
        lib.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "check":
            from guard_plugin.cli import check

            return check.run(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "eval":
            from guard_plugin.cli import eval_cmd

            return eval_cmd.run(args)
        if args.command == "init":
            from guard_plugin.cli import init_cmd

            return init_cmd.run(args)
        if args.command == "serve":
            from guard_plugin.cli import serve_cmd

            return serve_cmd.run(args)
        from guard_plugin.cli import policy

        return policy.validate(args)
    except (ConfigError, MediaError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except GuardError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as err:  # noqa: BLE001 (the documented exit code for an internal error)
        print(
            f"internal error: {type(err).__name__}: {err} (please report it with the command)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
