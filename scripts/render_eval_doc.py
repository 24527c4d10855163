"""Write docs/eval.md's example output and docs/eval/*.png anew from the command itself:
``guard-plugin eval`` on the shipped examples with the project's test model (trained once
per machine, from the test-model cache). Run from the repository root:

    .venv/bin/python scripts/render_eval_doc.py
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from guard_plugin.testing import cached_verdict_test_model

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "eval.md"
COMMAND = (
    "guard-plugin eval examples/eval/marker-words.jsonl "
    "--classifier transformers:/tmp/verdict-model --out docs/eval --overwrite"
)


def main() -> int:
    model = cached_verdict_test_model().path
    argv = COMMAND.replace("/tmp/verdict-model", str(model)).split()[1:]
    done = subprocess.run(
        [sys.executable, "-m", "guard_plugin.cli", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"COLUMNS": "110", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    printed = done.stdout.replace(str(model), "/tmp/verdict-model")
    printed = "\n".join(line for line in printed.splitlines() if not line.startswith("wrote "))
    text = DOC.read_text()
    pattern = re.compile(r"(" + re.escape(COMMAND) + r"\n```\n\n```\n)(.*?)(\n```)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{DOC}: the example block after '{COMMAND}' is missing")
    DOC.write_text(pattern.sub(lambda m: m.group(1) + printed.rstrip() + m.group(3), text))
    print(f"rewrote the example output in {DOC.relative_to(ROOT)} and the plots in docs/eval/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
