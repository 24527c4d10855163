"""Media preparation speed: screenshots, large photos and PDF pages into model inputs.

    python -m benchmarks.bench_media [--n 30]

Each of ours is measured beside a naive Pillow / pypdfium2 baseline in the same run
(interleaved), so the ratio is meaningful on a noisy machine. Inputs are generated:
a 1920x1080 PNG screenshot with text, a 4000x3000 photo-like JPEG (noise), a 10-page text
PDF and a 10-page scanned (image-only) PDF.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

from PIL import Image

from benchmarks._util import machine
from guard_plugin.media import load_image, load_pdf
from guard_plugin.testing import make_image_pdf, make_screenshot, make_text_pdf


def naive_image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    im.thumbnail((896, 896), Image.Resampling.LANCZOS)
    return im


def naive_pdf(data: bytes) -> list[tuple[Image.Image, str]]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(data)
    out = []
    for page in doc:
        w, h = page.get_size()
        out.append(
            (page.render(scale=896 / max(w, h)).to_pil(), page.get_textpage().get_text_range())
        )
    return out


def timed(fn, n: int) -> list[float]:
    fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    shot = make_screenshot("Order #1234 confirmed. Your package ships Monday.", size=(1920, 1080))
    photo_im = Image.effect_noise((4000, 3000), 40).convert("RGB")
    buf = io.BytesIO()
    photo_im.save(buf, "JPEG", quality=85)
    photo = buf.getvalue()
    text_pdf = make_text_pdf(
        [f"Page {i + 1}\n" + "Quarterly figures and commentary. " * 30 for i in range(10)]
    )
    scans = [
        Image.open(io.BytesIO(make_screenshot(f"Scanned page {i + 1}", size=(1240, 1754))))
        for i in range(10)
    ]
    scan_pdf = make_image_pdf(scans)

    cases = [
        ("1920x1080 PNG screenshot", lambda: load_image(shot), lambda: naive_image(shot), 1, 25.0),
        ("4000x3000 JPEG photo", lambda: load_image(photo), lambda: naive_image(photo), 1, 100.0),
        (
            "10-page text PDF, per page",
            lambda: load_pdf(text_pdf, parallel=False),
            lambda: naive_pdf(text_pdf),
            10,
            3.3 * 1.2,
        ),
        (
            "10-page scanned PDF, per page",
            lambda: load_pdf(scan_pdf, parallel=False),
            lambda: naive_pdf(scan_pdf),
            10,
            24 * 1.2,
        ),
    ]
    print(f"machine: {machine()}; medians of {args.n}, ours and naive interleaved")
    print(f"{'input':32} {'ours':>9} {'naive':>9} {'ratio':>6} {'target':>8}")
    for name, ours, naive, per, target in cases:
        a, b = [], []
        for _ in range(args.n):
            a += timed(ours, 1)
            b += timed(naive, 1)
        ma, mb = statistics.median(a) / per, statistics.median(b) / per
        print(f"{name:32} {ma:7.2f}ms {mb:7.2f}ms {ma / mb:6.2f} {'<=' + format(target, '.1f'):>8}")


if __name__ == "__main__":
    main()
