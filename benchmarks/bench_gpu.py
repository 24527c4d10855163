"""GPU figures for the local classifier with the real Gemma 3 4B shapes (random weights).

    python -m benchmarks.bench_gpu                 # on a CUDA machine, bf16
    python -m benchmarks.bench_gpu --tiny --device cpu --n 5   # code-path check, no GPU needed

Builds a random-weight ``Gemma3ForConditionalGeneration`` with gemma-3-4b-it's text and SigLIP
shapes (so the compute is real), wraps it in the project's runner and batching worker, and
measures: p50 / p99 latency of a text-only check (~700-token prompt), of a check with one
896x896 image, and throughput at batch 1 / 8 / 32. A verdict is short (``User Safety: safe``
plus end of turn is about 5 tokens), so each request generates exactly ``--new-tokens``.
Beside each figure it prints the physical floor: prefill FLOPs / peak bf16 FLOP/s, plus the
weight bytes each decode step must read / peak memory bandwidth.

``--verdict-mode both`` (the default) measures the two ways of reading a verdict on the same
weights: ``logits`` (one forward pass, the label token's logits) and ``generate``.
``--prefix-cache-mb 0`` turns the prefix cache off (each check then prefills the policy
header too): run both to see what it saves. ``--compile`` loads with ``compile=true`` (the
label passes through ``torch.compile``) and prints how long the load's warm-up took.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from guard_plugin import ImageData, Policy, SafetyInput
from guard_plugin.classifiers.transformers import LocalModel, TransformersClassifier
from guard_plugin.policy import compile_policy
from guard_plugin.prompting import ModelRequest, build_request
from guard_plugin.testing.models import TINY_CHAT_TEMPLATE, _tokenizer

# Peak dense bf16 FLOP/s and HBM bandwidth (bytes/s) by device name fragment.
PEAKS = {"H100": (989e12, 3.35e12), "H200": (989e12, 4.8e12), "A100": (312e12, 2.0e12)}

REAL_TEXT = dict(
    hidden_size=2560,
    intermediate_size=10240,
    num_hidden_layers=34,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=256,
    query_pre_attn_scalar=256,
    sliding_window=1024,
    vocab_size=262208,
    max_position_embeddings=131072,
)
REAL_VISION = dict(
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=27,
    num_attention_heads=16,
    image_size=896,
    patch_size=14,
)
TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    query_pre_attn_scalar=32,
    sliding_window=1024,
    vocab_size=262208,
    max_position_embeddings=8192,
)
TINY_VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    image_size=896,
    patch_size=14,
)


def build(tiny: bool, device: str, dtype: torch.dtype) -> LocalModel:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor

    try:
        from transformers import Gemma3ImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import Gemma3ImageProcessor as ImageProcessor  # type: ignore[assignment]

    tok = _tokenizer()
    ids = tok.convert_tokens_to_ids
    processor = Gemma3Processor(
        image_processor=ImageProcessor(size={"height": 896, "width": 896}, do_pan_and_scan=False),
        tokenizer=tok,
        chat_template=TINY_CHAT_TEMPLATE,
        image_seq_length=256,
    )
    text = dict(TINY_TEXT if tiny else REAL_TEXT)
    text.update(
        pad_token_id=ids("<pad>"),
        bos_token_id=ids("<bos>"),
        eos_token_id=[ids("<eos>"), ids("<end_of_turn>")],
    )
    cfg = Gemma3Config(
        text_config=text,
        vision_config=TINY_VISION if tiny else REAL_VISION,
        mm_tokens_per_image=256,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Gemma3ForConditionalGeneration(cfg).eval()
    finally:
        torch.set_default_dtype(prev)
    tok.padding_side = "left"
    return LocalModel(
        model,
        processor,
        torch.device(device),
        dtype,
        "random-gemma3-4b" + ("-tiny" if tiny else ""),
    )


def matmul_params(model) -> tuple[int, int, int]:
    """(language-model matmul params per token, lm_head params, vision tower params)."""
    lm = vision = head = 0
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue
        if "vision_tower" in name or "multi_modal_projector" in name:
            vision += p.numel()
        elif "embed_tokens" in name:
            head = p.numel()  # tied lm_head: used as a matmul for generated positions only
        else:
            lm += p.numel()
    return lm, head, vision


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def breakdown(args: argparse.Namespace, lm: LocalModel, cuda: bool) -> None:
    """Median ms of each stage of a logits-mode check, at batch 1 and 32: where the time
    between the physical floor and the measured latency goes."""
    from guard_plugin.classifiers.transformers.labels import USER_FIELD

    clf = TransformersClassifier(lm, max_batch_size=32, verdict_mode="logits")  # dispatch at once
    waits = TransformersClassifier(lm, max_batch_size=32, max_wait_ms=2, verdict_mode="logits")
    runner = clf._runner
    pool = ThreadPoolExecutor(1)
    tok = lm.processor.tokenizer
    policy = compile_policy(Policy())
    text = "please summarise the attached quarterly report for the board " * (
        args.prompt_tokens // 10
    )
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def reqs(b: int, salt: int) -> list[ModelRequest]:
        return [build_request(SafetyInput(text=f"{salt}.{k} {text}"), policy) for k in range(b)]

    def timed(fn, b: int) -> float:
        out = []
        for k in range(args.n + 3):
            batch = reqs(b, k)
            sync()
            t0 = time.perf_counter()
            fn(batch)
            sync()
            out.append((time.perf_counter() - t0) * 1000)
        return statistics.median(out[3:])

    def forward(batch: list[ModelRequest]) -> None:
        inputs = runner.decoder.inputs(runner.prompts.encode(batch, [USER_FIELD] * len(batch)))
        mask = inputs["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        runner.decoder.forward(inputs, positions, None)

    enc = {b: runner.prompts.encode(reqs(b, 0), [USER_FIELD] * b) for b in (1, 32)}
    stages = {
        "render (chat template)": lambda b: [runner.prompts.render(r) for r in b],
        "encode (render + tokenise)": lambda b: runner.prompts.encode(b, [USER_FIELD] * len(b)),
        "injection check": lambda b: runner.injection.miscounted(b, enc[len(b)]),
        "to device": lambda b: runner.decoder.inputs(enc[len(b)]),
        "encode + forward (one pass)": forward,
        "runner (whole batch)": lambda b: runner(b),
        # the runner on a thread of its own, as the worker runs it: once several threads have
        # called torch on a CPU, each call pays for OpenMP teams that are not its own, so the
        # worker's cost is read against this line, not the one above
        "runner (a thread of its own)": lambda b: pool.submit(runner, b).result(),
        "classify (worker, at once)": lambda b: clf.classify(b),
        "classify (worker, waits 2 ms)": lambda b: waits.classify(b),
    }
    width = len(tok(reqs(1, 0)[0].user_text).input_ids)
    print(f"breakdown, logits mode, ~{width}-token user text, median of {args.n} (ms)")
    print(f"{'stage':32} {'batch 1':>9} {'batch 32':>9}")
    at1: dict[str, float] = {}
    for name, fn in stages.items():
        at1[name] = timed(fn, 1)
        print(f"{name:32} {at1[name]:9.2f} {timed(fn, 32):9.2f}")
    base = at1["runner (a thread of its own)"]
    print(
        f"batch 1, worker / runner: at once {at1['classify (worker, at once)'] / base:.2f}, "
        f"waiting 2 ms {at1['classify (worker, waits 2 ms)'] / base:.2f}"
    )
    clf.close()
    waits.close()
    pool.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="tiny widths (code-path check on CPU)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n", type=int, default=50, help="latency samples")
    ap.add_argument("--prompt-tokens", type=int, default=700)
    ap.add_argument("--new-tokens", type=int, default=5)
    ap.add_argument("--verdict-mode", choices=["logits", "generate", "both"], default="both")
    ap.add_argument(
        "--prefix-cache-mb",
        type=float,
        default=512,
        help="the local backend's prefix cache (0: off; the policy header is then prefilled "
        "by every check)",
    )
    ap.add_argument("--compile", action="store_true", help="compile=true (compiled at load, timed)")
    ap.add_argument(
        "--layers", type=int, default=0, help="decoder layers (0: the shape's own, 34 or 2)"
    )
    ap.add_argument(
        "--breakdown", action="store_true", help="time each stage of a logits-mode check instead"
    )
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    if args.layers:
        (TINY_TEXT if args.tiny else REAL_TEXT)["num_hidden_layers"] = args.layers
    lm = build(args.tiny, args.device, dtype)
    if args.breakdown:
        breakdown(args, lm, cuda)
        return
    modes = ["logits", "generate"] if args.verdict_mode == "both" else [args.verdict_mode]
    for mode in modes:
        run(args, lm, mode, cuda, dtype)


def run(
    args: argparse.Namespace, lm: LocalModel, mode: str, cuda: bool, dtype: torch.dtype
) -> None:
    t0 = time.perf_counter()
    clf = TransformersClassifier(
        lm,
        max_batch_size=32,
        max_wait_ms=2,
        max_queue=256,
        verdict_mode=mode,
        prefix_cache_mb=args.prefix_cache_mb,
        compile=args.compile,
    )
    print(f"[{mode}] compile={args.compile}: load {time.perf_counter() - t0:.1f} s")
    model = lm.model
    orig = model.generate

    def fixed(**kw):
        kw["min_new_tokens"] = kw["max_new_tokens"]
        return orig(**kw)

    model.generate = fixed  # type: ignore[method-assign]
    tok = lm.processor.tokenizer
    policy = compile_policy(Policy())
    words = ("please summarise the attached quarterly report for the board " * 2).split()
    text, i = "", 0
    while len(tok(text).input_ids) < args.prompt_tokens:
        text += words[i % len(words)] + " "
        i += 1

    def request(salt: int, image: ImageData | None = None) -> ModelRequest:
        r = build_request(SafetyInput(text=f"{salt} {text}", image=image), policy)
        return ModelRequest(r.user_text, None, r.image, r.template_kwargs, args.new_tokens, r.key)

    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((896, 896), 64).convert("RGB").save(buf, "PNG")
    img = ImageData(buf.getvalue(), "image/png", 896, 896)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def latency(make) -> list[float]:
        for k in range(3):
            clf.classify([make(-k)])
        out = []
        for k in range(args.n):
            r = make(k)
            sync()
            t0 = time.perf_counter()
            clf.classify([r])
            sync()
            out.append((time.perf_counter() - t0) * 1000)
        return out

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    text_ms = latency(lambda k: request(k))
    image_ms = latency(lambda k: request(k, img))
    thr = {}
    for b in (1, 8, 32):
        reqs = [request(1000 + k) for k in range(b)]
        clf.classify(reqs)
        sync()
        t0 = time.perf_counter()
        rounds = max(1, 64 // b)
        for _ in range(rounds):
            clf.classify(reqs)
        sync()
        thr[b] = b * rounds / (time.perf_counter() - t0)
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")

    prompt_len = len(clf._runner.prompts.encode([request(0)])["input_ids"][0])
    lm_p, head_p, vis_p = matmul_params(model)
    prefill = 2 * lm_p * prompt_len + 2 * head_p  # logits for the last position only
    patches = (896 // 14) ** 2
    vision = 2 * vis_p * patches
    weight_bytes = (lm_p + head_p) * torch.finfo(dtype).bits // 8
    name = torch.cuda.get_device_name() if cuda else "cpu"
    flops, bw = next((v for k, v in PEAKS.items() if k in name), (float("nan"), float("nan")))
    floor_text = (prefill / flops + args.new_tokens * weight_bytes / bw) * 1000
    floor_img = floor_text + (vision + 2 * lm_p * 256) / flops * 1000
    floor_thr32 = 1 / ((prefill / flops) + args.new_tokens * weight_bytes / bw / 32)

    passes = clf.stats["forward_passes"] / max(1, clf.stats["requests"])
    print(f"verdict mode {mode}: {passes:.2f} forward passes per request (batched rows share them)")
    print(
        f"device: {name}, dtype {dtype}, model {lm.source}, prompt {prompt_len} tokens, {args.new_tokens} new tokens"
    )
    print(
        f"params: language matmuls {lm_p / 1e9:.2f} B, lm_head {head_p / 1e9:.2f} B, vision {vis_p / 1e9:.2f} B"
    )
    print(
        f"text check     p50 {statistics.median(text_ms):7.1f} ms  p99 {pct(text_ms, 0.99):7.1f} ms  floor {floor_text:6.1f} ms"
    )
    print(
        f"image check    p50 {statistics.median(image_ms):7.1f} ms  p99 {pct(image_ms, 0.99):7.1f} ms  floor {floor_img:6.1f} ms"
    )
    for b, v in thr.items():
        print(f"throughput b={b:<2}  {v:8.1f} checks/s")
    print(
        f"throughput floor at b=32 (compute + weight reads shared by the batch): {floor_thr32:8.1f} checks/s"
    )
    print(f"peak GPU memory: {peak_mem:.2f} GiB")
    model.generate = orig  # type: ignore[method-assign]
    clf.close()


if __name__ == "__main__":
    main()
