"""The remote backend's own cost: sync and async checks against a loopback server.

    python -m benchmarks.bench_remote [--n 300]

A ThreadingHTTPServer on 127.0.0.1 answers every chat completion at once with a fixed verdict,
so what is timed is guard_plugin's side (request building, the HTTP client, the retry state,
for sync calls the hop to the backend's private event loop) plus loopback HTTP. Sync and
async checks are interleaved in one run; medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks._util import machine
from guard_plugin import Guard

BODY = json.dumps(
    {"choices": [{"index": 0, "message": {"role": "assistant", "content": "User Safety: safe"}}]}
).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as vLLM does
    wbufsize = 1 << 16  # headers and body in one segment: no Nagle / delayed-ACK stalls

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._send(json.dumps({"data": [{"id": "nvidia/Nemotron-3.5-Content-Safety"}]}).encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(BODY)

    def _send(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"127.0.0.1:{httpd.server_address[1]}/v1"
    guard = Guard(f"vllm://{url}?model=nvidia/Nemotron-3.5-Content-Safety", audit=[], cache_size=0)
    loop = asyncio.new_event_loop()
    sync_ms, async_ms = [], []
    for i in range(30):  # warm-up: connections, imports
        guard.check(f"warm {i}")
        loop.run_until_complete(guard.acheck(f"warm {i}"))
    for i in range(args.n):
        t0 = time.perf_counter()
        guard.check(f"text {i}")
        sync_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        loop.run_until_complete(guard.acheck(f"text {i}"))
        async_ms.append((time.perf_counter() - t0) * 1000)
    httpd.shutdown()
    s, a = statistics.median(sync_ms), statistics.median(async_ms)
    print(machine())
    print(f"sync  check: median {s:.3f} ms (n={args.n})")
    print(f"async check: median {a:.3f} ms (n={args.n})")
    print(f"ratio sync/async: {s / a:.2f}")


if __name__ == "__main__":
    main()
