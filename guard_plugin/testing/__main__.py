"""``python -m guard_plugin.testing``: write a test model folder."""

from __future__ import annotations

from pathlib import Path

from guard_plugin.testing.models import (
    TEST_MODEL_MARKERS,
    build_tiny_gemma3,
    build_verdict_test_model,
)


def main(argv: list[str] | None = None) -> int:
    """``python -m guard_plugin.testing verdict-model DIR`` (the trained TEST MODEL) or
    ``tiny-model DIR`` (random weights): write a test model folder for trying the local and
    served paths offline."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m guard_plugin.testing", description=main.__doc__)
    p.add_argument("kind", choices=["verdict-model", "tiny-model"])
    p.add_argument("folder", type=Path)
    args = p.parse_args(argv)
    if args.kind == "verdict-model":
        tiny = build_verdict_test_model(args.folder)
        print(
            f"{tiny.path}: a TEST MODEL (unsafe iff a marker word: {TEST_MODEL_MARKERS}), "
            "not a safety classifier"
        )
    else:
        tiny = build_tiny_gemma3(args.folder)
        print(f"{tiny.path}: random weights (no verdicts; for loading and fail-closed tests)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
