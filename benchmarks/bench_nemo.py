"""NeMo Guardrails input rail: NeMo's built-in content safety rail vs guard_plugin's, per check.

    python -m benchmarks.bench_nemo [--n 300]

Both run through ``LLMRails.check_async`` on Colang 1, with a zero-latency guard model (the
built-in rail) and a zero-latency classifier (ours), interleaved in one process. Target: ours
within 10% of the built-in rail.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.types import LLMResponse

import guard_plugin.nemo as gn
from benchmarks._util import machine
from guard_plugin import Guard
from guard_plugin.classifiers import ClassifierOutput
from guard_plugin.classifiers.base import BaseClassifier
from guard_plugin.prompting import ModelRequest

CONFIGS = Path(__file__).resolve().parents[1] / "integrations" / "nemoguardrails"

BUILTIN = """
models:
  - type: main
    engine: openai
    model: gpt-4o-mini
  - type: content_safety
    engine: nim
    model: nvidia/nemotron-3.5-content-safety
rails:
  input:
    flows:
      - content safety check input $model=content_safety
prompts:
  - task: content_safety_check_input $model=content_safety
    content: "{{ user_input }}"
    output_parser: nemotron_content_safety_parse_prompt_safety
    max_tokens: 64
"""


class ZeroLatencyModel:
    """A NeMo LLMModel that answers a safe verdict at once (benchmark double)."""

    model_name = "zero"
    provider_name = "bench"
    provider_url = None

    async def generate_async(self, prompt: Any, *, stop: Any = None, **kw: Any) -> LLMResponse:
        return LLMResponse(content="User Safety: safe")

    async def stream_async(self, prompt: Any, *, stop: Any = None, **kw: Any):  # pragma: no cover
        yield None


class ZeroLatency(BaseClassifier):
    name = "zero-latency"

    def classify(self, requests: Sequence[ModelRequest], *, timeout: float | None = None):
        return [ClassifierOutput("User Safety: safe") for _ in requests]

    async def aclassify(self, requests: Sequence[ModelRequest], *, timeout: float | None = None):
        return self.classify(requests)


async def main(n: int) -> None:
    builtin = LLMRails(RailsConfig.from_content(yaml_content=BUILTIN), llm=ZeroLatencyModel())
    builtin.runtime.registered_action_params["llms"] = {"content_safety": ZeroLatencyModel()}
    gn.configure(Guard(ZeroLatency(), audit=[], cache_size=0))
    ours = LLMRails(RailsConfig.from_path(str(CONFIGS / "colang1")), llm=ZeroLatencyModel())
    msgs = [{"role": "user", "content": "What are the opening hours of the museum on Sundays?"}]
    times: dict[str, list[float]] = {"built-in rail": [], "guard_plugin rail": []}
    action_times: dict[str, list[float]] = {"built-in action": [], "guard_plugin action": []}
    for r in (builtin, ours):
        for _ in range(20):
            await r.check_async(msgs)
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            for name, r in (("built-in rail", builtin), ("guard_plugin rail", ours)):
                t0 = time.perf_counter()
                res = await r.check_async(msgs)
                times[name].append((time.perf_counter() - t0) * 1000)
                assert res.status.value == "passed", res
            t0 = time.perf_counter()
            await gn.ACTIONS["guard_plugin_check_input"](
                context={"user_message": msgs[0]["content"]}
            )
            action_times["guard_plugin action"].append((time.perf_counter() - t0) * 1000)
            if i % 50 == 49:
                gc.collect()
    finally:
        gc.enable()
    print(f"machine: {machine()}; {n} checks each, interleaved; medians")
    for k, v in {**times, **action_times}.items():
        if v:
            print(f"{k:22} {statistics.median(v):7.3f} ms")
    ratio = statistics.median(times["guard_plugin rail"]) / statistics.median(
        times["built-in rail"]
    )
    print(f"guard_plugin / built-in per check_async: {ratio:.2f} (target <= 1.10)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    asyncio.run(main(ap.parse_args().n))
