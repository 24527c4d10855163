"""Hostile media: what one page-count bomb costs a check, in time and peak memory.

    python -m benchmarks.bench_hostile [--pages 1048574]

A PDF of 20 small pages (the default ``max_pdf_pages``) whose page tree claims ``--pages`` pages (PDFium reports the claim) is checked as a
tool result, each run in a fresh subprocess so peak RSS is its own. Beside it, in the same run,
an honest PDF of its 20 real pages, so the figures read as a ratio on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks._util import machine

_CHILD = r"""
import base64, json, resource, sys, time
from guard_plugin import Guard
from guard_plugin.testing import make_text_pdf
claimed = int(sys.argv[1])
pdf = make_text_pdf([f"page {i}" for i in range(20)], claimed_pages=claimed or None)
guard = Guard("scripted", audit=[])
block = {"type": "file", "base64": base64.b64encode(pdf).decode(), "mime_type": "application/pdf"}
warm = base64.b64encode(make_text_pdf(["warm-up"])).decode()
guard.check_content([{**block, "base64": warm}], surface="tool")  # imports, PDFium
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
d = guard.check_content([block], surface="tool")
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"bytes": len(pdf), "s": dt, "rss_growth_mib": (peak - base) / 1024,
                  "parts": len(d.parts), "action": d.action.value}))
"""


def run(claimed: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(claimed)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=1_048_574)
    args = ap.parse_args()
    print(machine())
    honest, bomb = run(0), run(args.pages)
    for name, r in (("honest 20 pages", honest), (f"claims {args.pages:,} pages", bomb)):
        print(
            f"{name:>24}: {r['bytes']:,} B, {r['s'] * 1000:9.1f} ms, peak RSS +{r['rss_growth_mib']:7.1f} MiB, "
            f"{r['parts']:,} parts, {r['action']}"
        )
    print(f"time ratio bomb/honest: {bomb['s'] / honest['s']:.1f}")


if __name__ == "__main__":
    main()
