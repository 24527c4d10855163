"""Real vLLM servers for ``make test-vllm``: skipped where vLLM is not installed.

Two servers start once per session, in parallel: one on the trained test model (real verdict
lines and logprobs) and one on the random-weight tiny model (no verdicts: every decision
must be an audited error). Both serve on 127.0.0.1 with the options of docs/serving.md, in
float32, with a small KV cache, offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.loopback_openai import free_port

pytest.importorskip("vllm", reason="needs vLLM: make test-vllm")

__all__ = ["SERVED", "Server", "free_port"]

SERVED = "tiny-guard"


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT/v1
    process: subprocess.Popen[bytes]
    log: Path
    model: Path
    started_s: float

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("http://").removesuffix("/v1")


def start(model: Path, log: Path) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_HOST_IP": "127.0.0.1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        SERVED,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--limit-mm-per-prompt",
        '{"image": 1}',
        "--max-model-len",
        "4096",
        "--dtype",
        "float32",
    ]
    out = log.open("wb")
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent, env=env, start_new_session=True
    )
    return Server(f"http://127.0.0.1:{port}/v1", proc, log, model, time.monotonic())


def wait_healthy(server: Server, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"vLLM exited with {server.process.returncode}:\n{tail}")
        try:
            if httpx.get(f"{server.root}/health", timeout=2).status_code == 200:
                server.started_s = time.monotonic() - server.started_s
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"vLLM not healthy after {timeout} s; log: {server.log}")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, 15)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, 9)


@pytest.fixture(scope="session")
def servers(verdict_model, tiny_model, tmp_path_factory) -> Iterator[tuple[Server, Server]]:
    logs = tmp_path_factory.mktemp("vllm-logs")
    trained = start(Path(verdict_model.path), logs / "trained.log")
    random_weights = start(Path(tiny_model.path), logs / "random.log")
    try:
        wait_healthy(trained)
        wait_healthy(random_weights)
        print(
            f"\nvLLM healthy after {trained.started_s:.0f} s (trained) and "
            f"{random_weights.started_s:.0f} s (random weights)"
        )
        yield trained, random_weights
    finally:
        stop(trained)
        stop(random_weights)


@pytest.fixture(scope="session")
def server(servers) -> Server:
    return servers[0]


@pytest.fixture(scope="session")
def random_server(servers) -> Server:
    return servers[1]
