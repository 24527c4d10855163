"""Media: every content format, images and PDFs with limits, and every bad input."""

from __future__ import annotations

import asyncio
import io
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from guard_plugin import MediaError
from guard_plugin.errors import UnverifiableMedia
from guard_plugin.media import (
    DocumentPart,
    FailedPart,
    ImagePart,
    PartRef,
    TextPart,
    aload_pdf,
    extract_parts,
    fan_out,
    load_image,
    load_pdf,
    split_text,
    text_windows,
)
from guard_plugin.policy import MediaLimits
from guard_plugin.testing import make_screenshot, make_text_pdf
from guard_plugin.types import Surface
from tests.media_fixtures import (
    b64,
    bomb_png,
    data_url,
    empty_pdf,
    encode,
    encrypted_pdf,
    jpeg_with_orientation,
    png,
    scanned_pdf,
)

# -- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_image_format_decodes_to_rgb(fmt: str) -> None:
    img = load_image(encode(Image.new("RGB", (120, 80), "red"), fmt))
    pil = img.to_pil()
    assert pil.mode == "RGB" and pil.size == (120, 80)
    r, g, b = pil.getpixel((10, 10))
    assert r > 200 and g < 60 and b < 60


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ("blue", "yellow")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r, _, b = load_image(buf.getvalue()).to_pil().getpixel((5, 5))
    assert b > 200 and r < 60


def test_exif_orientation_is_applied() -> None:
    img = load_image(jpeg_with_orientation((80, 40), orientation=6))
    assert (img.width, img.height) == (40, 80)


def test_transparency_is_flattened_on_white() -> None:
    img = load_image(encode(Image.new("RGBA", (10, 10), (255, 0, 0, 0)), "PNG"))
    assert img.to_pil().getpixel((1, 1)) == (255, 255, 255)


def test_large_screenshot_is_downscaled_and_jpeg_uses_draft() -> None:
    shot = load_image(make_screenshot("hello"))
    assert (shot.width, shot.height) == (960, 540)  # within 2x of 896, for one final resample
    big = load_image(encode(Image.new("RGB", (4000, 3000), "white"), "JPEG"))
    assert 896 <= max(big.width, big.height) < 2 * 896


def test_identity_is_the_source_bytes() -> None:
    a, b = load_image(png("red")), load_image(png("red"))
    assert a == b and a.sha256 == b.sha256 and a != load_image(png("blue"))
    assert a.data.startswith(b"\x89PNG")  # bytes only when asked for


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (png()[:40], "truncated or corrupt"),
        (bomb_png(), "decompression bomb"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
        (b"\x00\x01 random bytes", "not a decodable image"),
    ],
    ids=["zero-bytes", "truncated-png", "bomb-header", "svg", "garbage"],
)
def test_bad_images_raise_clear_errors(data: bytes, needle: str) -> None:
    with pytest.raises(MediaError, match=needle):
        load_image(data)


def test_image_byte_limit() -> None:
    with pytest.raises(MediaError, match="max_image_bytes"):
        load_image(png(size=(300, 300)), MediaLimits(max_image_bytes=100))


# -- PDFs ---------------------------------------------------------------------------------------


def test_text_pdf_pages_and_text() -> None:
    pdf = load_pdf(make_text_pdf(["first page", "second (page)", "third"]))
    assert pdf.page_count == 3 and [p.index for p in pdf.pages] == [0, 1, 2]
    assert "second (page)" in pdf.pages[1].text
    assert max(pdf.pages[0].image.width, pdf.pages[0].image.height) == 896


def test_image_only_pdf_has_pages_and_no_text() -> None:
    pdf = load_pdf(scanned_pdf(2))
    assert len(pdf.pages) == 2 and all(not p.text.strip() for p in pdf.pages)


def test_page_cap_reports_skipped_pages() -> None:
    pdf = load_pdf(make_text_pdf([f"page {i}" for i in range(500)]), MediaLimits(max_pdf_pages=20))
    assert len(pdf.pages) == 20 and pdf.skipped == range(20, 500) and pdf.page_count == 500


def test_encrypted_pdf_needs_a_password() -> None:
    data = encrypted_pdf("s3cret")
    with pytest.raises(MediaError, match="encrypted"):
        load_pdf(data)
    with pytest.raises(MediaError, match="password is wrong"):
        load_pdf(data, password="nope")
    assert "secret page" in load_pdf(data, password="s3cret").pages[0].text


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"%PDF-1.7\nthis is not really a pdf", "corrupt"),
        (b"PK\x03\x04 zip", "not a PDF"),
        (None, "no pages"),
    ],
    ids=["zero-bytes", "corrupt", "not-pdf", "zero-pages"],
)
def test_bad_pdfs(data: bytes | None, needle: str) -> None:
    with pytest.raises(MediaError, match=needle):
        load_pdf(empty_pdf() if data is None else data)


def test_pdf_byte_limit() -> None:
    with pytest.raises(MediaError, match="max_document_bytes"):
        load_pdf(make_text_pdf(["x"]), MediaLimits(max_document_bytes=50))


def test_parallel_and_serial_rendering_agree() -> None:
    data = make_text_pdf([f"page {i}" for i in range(7)])
    serial, parallel = load_pdf(data, parallel=False), load_pdf(data, parallel=True)
    assert [p.text for p in serial.pages] == [p.text for p in parallel.pages]
    assert [p.image.to_pil().tobytes() for p in serial.pages] == [
        p.image.to_pil().tobytes() for p in parallel.pages
    ]


def test_aload_pdf_runs_off_the_loop() -> None:
    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        pdf = await aload_pdf(make_text_pdf([f"p{i}" for i in range(30)]))
        t.cancel()
        assert len(pdf.pages) == 20
        return ticks

    assert asyncio.run(main()) > 1


# -- extraction from every content format ---------------------------------------------------------

IMG = png("red")
PDF = make_text_pdf(["page one", "page two"])


def kinds(parts) -> list[str]:
    return [type(p).__name__ for p in parts]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("plain text", ["TextPart"]),
        ([{"type": "text", "text": "hi"}], ["TextPart"]),
        ([{"type": "image", "base64": b64(IMG), "mime_type": "image/png"}], ["ImagePart"]),
        ([{"type": "image", "url": data_url(IMG, "image/png")}], ["ImagePart"]),
        ([{"type": "file", "base64": b64(PDF), "mime_type": "application/pdf"}], ["DocumentPart"]),
        (
            [
                {
                    "type": "image",
                    "source_type": "base64",
                    "data": b64(IMG),
                    "mime_type": "image/png",
                }
            ],
            ["ImagePart"],
        ),
        (
            [
                {
                    "type": "file",
                    "source_type": "base64",
                    "data": b64(PDF),
                    "mime_type": "application/pdf",
                }
            ],
            ["DocumentPart"],
        ),
        ([{"type": "image_url", "image_url": {"url": data_url(IMG, "image/png")}}], ["ImagePart"]),
        ([{"type": "image_url", "image_url": data_url(IMG, "image/png")}], ["ImagePart"]),
        (
            [
                {
                    "type": "file",
                    "file": {"file_data": data_url(PDF, "application/pdf"), "filename": "a.pdf"},
                }
            ],
            ["DocumentPart"],
        ),
        (
            [{"type": "file", "file": {"file_data": b64(PDF), "filename": "a.pdf"}}],
            ["DocumentPart"],
        ),
        (
            [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": b64(IMG)},
                }
            ],
            ["ImagePart"],
        ),
        (
            [
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
                }
            ],
            ["DocumentPart"],
        ),
        (
            [
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "doc text"},
                }
            ],
            ["TextPart"],
        ),
        (
            [
                {"type": "input_text", "text": "t"},
                {"type": "input_image", "image_url": data_url(IMG, "image/png")},
            ],
            ["TextPart", "ImagePart"],
        ),
        ([{"type": "input_file", "file_data": data_url(PDF, "application/pdf")}], ["DocumentPart"]),
        ([{"type": "reasoning", "reasoning": "thinking aloud"}], ["TextPart"]),
        ([{"type": "text-plain", "text": "plain", "mime_type": "text/plain"}], ["TextPart"]),
        ([{"type": "text-plain", "base64": b64(b"plain text")}], ["TextPart"]),
        ([{"type": "text-plain", "file_id": "f-1"}], ["FailedPart"]),
        ([{"type": "tool_call", "name": "x", "args": {}}], []),
        (IMG, ["ImagePart"]),
        (PDF, ["DocumentPart"]),
        ([b"raw bytes that are no media"], ["FailedPart"]),
    ],
)
def test_content_formats(content, expected: list[str]) -> None:
    assert kinds(extract_parts(content)) == expected


def test_mime_type_lies_are_ignored() -> None:
    jpeg = encode(Image.new("RGB", (10, 10)), "JPEG")
    (part,) = extract_parts([{"type": "image", "base64": b64(jpeg), "mime_type": "image/png"}])
    assert isinstance(part, ImagePart)
    (doc,) = extract_parts([{"type": "image", "base64": b64(PDF), "mime_type": "image/png"}])
    assert isinstance(doc, DocumentPart)  # a PDF posing as an image is still checked, as a PDF


@pytest.mark.parametrize(
    ("block", "error", "needle"),
    [
        (
            {"type": "image", "base64": "!!!not base64!!!", "mime_type": "image/png"},
            MediaError,
            "not valid base64",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,"}},
            MediaError,
            "no payload",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64"}},
            MediaError,
            "no payload",
        ),
        (
            {"type": "image", "url": "https://example.com/a.png"},
            UnverifiableMedia,
            "allow_url_fetch",
        ),
        ({"type": "image", "file_id": "file-123"}, UnverifiableMedia, "without inline data"),
        ({"type": "image_url", "image_url": {"file_id": "x"}}, UnverifiableMedia, "file id"),
        ({"type": "file", "file": {"file_id": "file-1"}}, UnverifiableMedia, "file id"),
        ({"type": "image", "path": "/etc/hostname"}, UnverifiableMedia, "allow_local_files"),
        ({"type": "audio", "base64": "AAAA"}, UnverifiableMedia, "audio"),
        ({"type": "mystery"}, UnverifiableMedia, "mystery"),
        ({"type": "image", "base64": "QUFB" * 100}, MediaError, "over the policy's limit"),
        (
            {"type": "image", "base64": b64(b"<svg></svg>"), "mime_type": "image/svg+xml"},
            MediaError,
            "SVG",
        ),
    ],
)
def test_bad_blocks_become_failed_parts(block, error, needle: str) -> None:
    (part,) = extract_parts([block], MediaLimits(max_image_bytes=200))
    assert isinstance(part, FailedPart) and type(part.error) is error and needle in str(part.error)


def test_local_files_when_allowed(tmp_path: Path) -> None:
    f = tmp_path / "shot.png"
    f.write_bytes(IMG)
    allowed = MediaLimits(allow_local_files=True)
    assert kinds(extract_parts([{"type": "image", "path": str(f)}], allowed)) == ["ImagePart"]
    assert kinds(extract_parts([f], allowed)) == ["ImagePart"]
    assert kinds(extract_parts([f])) == ["FailedPart"]


def test_a_local_file_is_read_only_if_regular_bounded_and_under_the_root(tmp_path: Path) -> None:
    """A path in content is input: a device never ends (/dev/zero would exhaust memory), a
    file may be larger than its size says, and a root keeps paths to the folder meant."""
    allowed = MediaLimits(allow_local_files=True, max_image_bytes=1000)
    (zero,) = extract_parts([{"type": "image", "path": "/dev/zero"}], allowed)
    assert isinstance(zero, FailedPart) and "not a regular file" in str(zero.error)
    big = tmp_path / "big.png"
    big.write_bytes(b"x" * 5000)
    (part,) = extract_parts([{"type": "image", "path": str(big)}], allowed)
    assert isinstance(part, FailedPart) and "over the policy's limit" in str(part.error)
    shots = tmp_path / "shots"
    shots.mkdir()
    (shots / "ok.png").write_bytes(IMG)
    (shots / "escape.png").symlink_to(big)
    rooted = MediaLimits(allow_local_files=True, local_files_root=str(shots))
    assert kinds(extract_parts([{"type": "image", "path": str(shots / "ok.png")}], rooted)) == [
        "ImagePart"
    ]
    for outside in (str(big), str(shots / "escape.png"), str(shots / ".." / "big.png")):
        (part,) = extract_parts([{"type": "image", "path": outside}], rooted)
        assert isinstance(part, FailedPart) and "local_files_root" in str(part.error)


def test_artifact_parts_are_checked_and_labelled() -> None:
    parts = extract_parts("summary", artifact={"screenshot": IMG, "report": PDF})
    assert kinds(parts) == ["TextPart", "ImagePart", "DocumentPart"]
    assert [p.ref.label for p in parts] == ["content", "artifact[0]", "artifact[1]"]


def test_url_fetch_when_allowed_with_a_size_cap() -> None:
    noise = encode(Image.effect_noise((200, 200), 80).convert("RGB"), "PNG")
    body = {"/ok.png": IMG, "/big.png": noise}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            data = body.get(self.path)
            self.send_response(200 if data else 404)
            self.end_headers()
            if data:
                self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        lim = MediaLimits(allow_url_fetch=True, fetch_private_networks=True, max_image_bytes=2000)
        ok, big, missing = extract_parts(
            [
                {"type": "image", "url": base + "/ok.png"},
                {"type": "image", "url": base + "/big.png"},
                {"type": "image", "url": base + "/nope.png"},
            ],
            lim,
        )
        assert isinstance(ok, ImagePart)
        assert isinstance(big, FailedPart) and "over the policy's limit" in str(big.error)
        assert isinstance(missing, FailedPart) and isinstance(missing.error, UnverifiableMedia)
    finally:
        srv.shutdown()
        srv.server_close()


def _serve(routes: dict[str, tuple[int, dict[str, str], bytes]]) -> ThreadingHTTPServer:
    """A local HTTP server answering ``path -> (status, headers, body)``; it records the Host
    header of each request in ``srv.hosts``."""

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            srv.hosts.append(self.headers.get("Host"))
            status, headers, data = routes.get(self.path, (404, {}, b""))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.hosts = []  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True).start()
    return srv


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x.png",
        "http://localhost:9/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.8/x.png",
        "http://[::1]:9/x.png",
        "http://[::ffff:127.0.0.1]:9/x.png",
        "http://0.0.0.0:9/x.png",
    ],
)
def test_a_url_naming_a_private_network_is_not_fetched(url: str) -> None:
    """User content cannot make the guard request internal services (SSRF)."""
    (part,) = extract_parts([{"type": "image", "url": url}], MediaLimits(allow_url_fetch=True))
    assert isinstance(part, FailedPart) and isinstance(part.error, UnverifiableMedia)
    assert "non-public address" in str(part.error) and "fetch_private_networks" in str(part.error)


def test_a_redirect_to_a_private_network_is_not_followed(monkeypatch) -> None:
    """Each hop is checked: a host that passes the check cannot redirect the fetch inward."""
    from guard_plugin.media import fetching

    routes: dict[str, tuple[int, dict[str, str], bytes]] = {"/inside.png": (200, {}, IMG)}
    srv = _serve(routes)
    port = srv.server_address[1]
    routes["/start.png"] = (302, {"Location": f"http://127.0.0.2:{port}/inside.png"}, b"")
    routes["/onward.png"] = (302, {"Location": "/inside.png"}, b"")
    lim = MediaLimits(allow_url_fetch=True)
    # the test server stands for a public host; 127.0.0.2 stays private
    monkeypatch.setattr(fetching, "_public", lambda addr: addr == "127.0.0.1")
    try:
        start = [{"type": "image", "url": f"http://127.0.0.1:{port}/start.png"}]
        (part,) = extract_parts(start, lim)
        assert isinstance(part, FailedPart) and "127.0.0.2" in str(part.error)
        onward = [{"type": "image", "url": f"http://127.0.0.1:{port}/onward.png"}]
        (part,) = extract_parts(onward, lim)
        assert isinstance(part, ImagePart)  # a redirect to a public address is followed
    finally:
        srv.shutdown()
        srv.server_close()


def test_the_fetch_goes_to_the_checked_address_with_the_urls_host(monkeypatch) -> None:
    """The host is resolved once and the connection goes to that address (a DNS answer that
    changes after the check cannot move it); the server still sees the URL's host."""
    from guard_plugin.media import fetching

    srv = _serve({"/ok.png": (200, {}, IMG)})
    port = srv.server_address[1]
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])  # a rebinding resolver
    monkeypatch.setattr(fetching, "_addresses", lambda host, port: next(answers))
    monkeypatch.setattr(fetching, "_public", lambda addr: addr == "127.0.0.1")
    try:
        lim = MediaLimits(allow_url_fetch=True)
        (part,) = extract_parts(
            [{"type": "image", "url": f"http://images.example:{port}/ok.png"}], lim
        )
        assert isinstance(part, ImagePart)
        assert srv.hosts == [f"images.example:{port}"]  # type: ignore[attr-defined]
    finally:
        srv.shutdown()
        srv.server_close()


def test_too_many_redirects_and_other_schemes_are_unverifiable() -> None:
    srv = _serve({"/loop.png": (302, {"Location": "/loop.png"}, b"")})
    port = srv.server_address[1]
    lim = MediaLimits(allow_url_fetch=True, fetch_private_networks=True)
    try:
        looping = [{"type": "image", "url": f"http://127.0.0.1:{port}/loop.png"}]
        (part,) = extract_parts(looping, lim)
        assert isinstance(part, FailedPart) and "redirects" in str(part.error)
    finally:
        srv.shutdown()
        srv.server_close()
    (part,) = extract_parts([{"type": "image", "url": "ftp://example.com/x.png"}], lim)
    assert isinstance(part, FailedPart)


# -- windows and fan-out ---------------------------------------------------------------------------


def test_text_windows_cover_everything_with_overlap() -> None:
    text = " ".join(f"word{i}" for i in range(3000))
    spans = text_windows(text, 1000)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (a1, b1), (a2, b2) in itertools.pairwise(spans):
        assert a2 < b1 and b1 - a1 <= 1000 and b2 - a2 <= 1000
    assert split_text("short", 1000) == ["short"]


def test_fan_out_one_input_per_image_and_page_with_labels() -> None:
    content = [
        {"type": "text", "text": "tool output"},
        {"type": "image", "base64": b64(IMG), "mime_type": "image/png"},
        {
            "type": "file",
            "base64": b64(make_text_pdf(["p1 text", "p2 text", "p3 text"])),
            "mime_type": "application/pdf",
        },
    ]
    items = fan_out(extract_parts(content), MediaLimits(), Surface.TOOL, tool_name="reader")
    labels = [i.part.label for i in items]
    assert labels == [
        "content[0]",
        "content[1]",
        "content[2].page[0]",
        "content[2].page[1]",
        "content[2].page[2]",
    ]
    page = items[3]
    assert page.image is not None and "p2 text" in page.text and page.tool_name == "reader"
    assert PartRef.parse("content[2].page[1]") == PartRef("content", 2, 1, None)
    assert PartRef.parse("content[0].chars[10:20]") == PartRef("content", 0, None, (10, 20))
    assert PartRef.parse("artifact").label == "artifact"


def test_fan_out_skipped_pages_and_response_surface() -> None:
    items = fan_out(
        extract_parts(make_text_pdf(["a", "b", "c"])), MediaLimits(max_pdf_pages=2), Surface.TOOL
    )
    assert [type(i).__name__ for i in items] == ["SafetyInput", "SafetyInput", "FailedPart"]
    assert "page 3 of 3" in str(items[2].error)
    resp = fan_out(
        extract_parts([{"type": "text", "text": "answer"}, IMG]),
        MediaLimits(),
        Surface.RESPONSE,
        context="q",
    )
    assert resp[0].response == "answer" and resp[0].text == "q"
    assert isinstance(resp[1], FailedPart)


def test_fan_out_long_text_into_windows() -> None:
    text = "x " * 10_000
    items = fan_out([TextPart(PartRef(), text)], MediaLimits(text_window_chars=2000), Surface.INPUT)
    assert len(items) > 5 and items[1].part.label.startswith("content.chars[")
    capped = fan_out([TextPart(PartRef(), text)], MediaLimits(max_text_chars=1000), Surface.INPUT)
    assert isinstance(capped[0], FailedPart) and "max_text_chars" in str(capped[0].error)


def test_bomb_under_pillows_limit_meets_the_policy_limit() -> None:
    with pytest.raises(MediaError, match="max_image_pixels"):
        load_image(bomb_png(9000, 9000))  # 81 M pixels: under Pillow's guard, over ours (40 M)
