"""A loopback OpenAI-compatible chat server for tests that run deployables as users do.

``reply(body) -> dict`` decides each answer from the request body (a message dict with
``content`` and optional ``tool_calls``), or returns ``(status, payload)`` to send a whole
response of its own; every request body is recorded. It serves ``/v1/chat/completions`` (a
request with ``stream: true`` gets the answer as server-sent chunks, a word each) and
``/v1/models`` on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], Any]


def tool_call_message(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        ],
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopbackServer:
    """An HTTP server on 127.0.0.1 in a daemon thread, for a handler class of the test's."""

    def _serve(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class LoopbackChatServer(LoopbackServer):
    def __init__(self, reply: Reply, *, port: int = 0, model: str = "loopback-model") -> None:
        self.reply = reply
        self.model = model
        self.bodies: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": server.model}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                server.bodies.append(body)
                message = server.reply(body)
                if isinstance(message, tuple):
                    self._send(*message)
                    return
                finish = "tool_calls" if message.get("tool_calls") else "stop"
                if body.get("stream"):
                    self._stream(body, message, finish)
                    return
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(server.bodies)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", server.model),
                        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

            def _stream(self, body: dict[str, Any], message: dict[str, Any], finish: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                base = {
                    "id": f"chatcmpl-{len(server.bodies)}",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": body.get("model", server.model),
                }
                text = message.get("content") or ""
                words = [w + " " for w in text.split(" ")]
                words[-1] = words[-1][:-1]
                deltas: list[dict[str, Any]] = [{"role": "assistant", "content": w} for w in words]
                if message.get("tool_calls"):
                    calls = [{**c, "index": i} for i, c in enumerate(message["tool_calls"])]
                    deltas.append({"tool_calls": calls})
                ends = [None] * (len(deltas) - 1) + [finish]
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    for delta, end in zip(deltas, ends, strict=True):
                        choice = {"index": 0, "delta": delta, "finish_reason": end}
                        chunk = {**base, "choices": [choice]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                self.close_connection = True

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError):
                    self.wfile.write(data)

        self._serve(Handler, port)


def wait_up(url: str, alive: Callable[[], bool] = lambda: True, seconds: float = 60.0) -> bool:
    """Poll ``url`` until it answers 200: True then; False when ``alive()`` turns false (the
    process behind it exited) or ``seconds`` pass."""
    import httpx

    end = time.monotonic() + seconds
    while time.monotonic() < end and alive():
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def nemoguardrails_server(config_dir: Any, env: dict[str, str]) -> Iterator[str]:
    """``nemoguardrails server`` on ``config_dir`` (a folder of config folders) on 127.0.0.1,
    as a user starts it; yields its URL and stops it (its process group) after."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    port = free_port()
    exe = Path(sys.executable).with_name("nemoguardrails")
    proc = subprocess.Popen(
        [str(exe), "server", "--config", str(config_dir), "--port", str(port), "--disable-chat-ui"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_up(f"{url}/v1/health", lambda: proc.poll() is None), "nemoguardrails server"
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
