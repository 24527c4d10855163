"""Exit codes and what every command shares."""

from __future__ import annotations

import sys

__all__ = ["EXIT_INTERNAL", "EXIT_NOT_ALLOWED", "EXIT_OK", "EXIT_USAGE", "note_if_scripted"]

EXIT_OK, EXIT_NOT_ALLOWED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def note_if_scripted(spec: str, note: str) -> None:
    """Say on standard error that verdicts come from the test double, never a safety model."""
    if spec.split(":", 1)[0] == "scripted":
        print(note, file=sys.stderr)
