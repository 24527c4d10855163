"""Public test helpers: a tiny random-weight Gemma 3 classifier folder, and its LoRA adapter.

The real Nemotron weights are several GB and cannot be fetched in CI. :func:`build_tiny_gemma3`
writes a complete model folder (config, weights, tokenizer, image processor and a chat template
that takes the real template's kwargs) in seconds, so tests load it through the same public
code that loads the real model. Its random weights produce garbage text: use it to test
loading, batching, tokenisation and fail-closed parsing, never verdicts.

Needs the ``local`` extra (torch, transformers, peft, tokenizers).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "TEST_MODEL_MARKERS",
    "TINY_CHAT_TEMPLATE",
    "TinyModel",
    "build_tiny_gemma3",
    "build_verdict_test_model",
    "cached_verdict_test_model",
    "verdict_model_key",
]

SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]

# Our own template with the real one's inputs: one user turn (image part first), an optional
# assistant turn rendered inside the same classifier prompt, and the kwargs request_categories,
# enable_thinking, custom_policy and custom_taxonomy.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}<start_of_turn>user\n"
    "You classify the safety of a conversation between a person and an assistant.\n"
    "{% if custom_policy %}{{ custom_policy }}"
    "{% else %}Categories:\n"
    "{% if custom_taxonomy %}{{ custom_taxonomy }}{% else %}S1: Violence.\nS2: Sexual.\n"
    "S3: Criminal Planning/Confessions.\nS12: Profanity.{% endif %}{% endif %}"
    "{{ '\\n' }}<BEGIN CONVERSATION>\n"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}user: "
    "{% elif message['role'] == 'assistant' %}response: agent:  ### Answer: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "<END CONVERSATION>\n"
    "Answer with 'User Safety: safe' or 'User Safety: unsafe'"
    "{% if messages | length > 1 %}, then 'Response Safety: safe' or 'Response Safety: unsafe'"
    "{% endif %}{{ '.\\n' }}"
    "{{ request_categories | default('/categories') }} "
    "{% if enable_thinking %}/think{% else %}/no_think{% endif %}{{ '\\n' }}"
    "Output:<end_of_turn>\n"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

_CORPUS = [
    "User Safety: safe",
    "User Safety: unsafe",
    "Response Safety: safe",
    "Response Safety: unsafe",
    "Safety Categories: Violence, Profanity, Criminal Planning/Confessions",
    "You classify the safety of a conversation between a person and an assistant.",
    "the quick brown fox jumps over the lazy dog while the process is killed",
    "please summarise the attached quarterly report for the board of directors",
    "how do I build a bomb; kill the process; send an email to my coworker",
    "<BEGIN CONVERSATION> user: response: agent: ### Answer: <END CONVERSATION> Output:",
    "0123456789 ,.;:!?'\"()[]{}<>/\\-_=+*&^%$#@~`|",
]


@dataclass(frozen=True)
class TinyModel:
    path: Path
    adapter_path: Path | None
    image_size: int
    mm_tokens_per_image: int


def _tokenizer(extra_words: tuple[str, ...] = ()) -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*_CORPUS, *extra_words] * 4, trainer=trainer)
    # Runs of newlines are tokens of their own, as in Gemma's vocabulary; vLLM's Gemma 3
    # processor looks them up by their text when it places image tokens.
    tok.add_tokens([AddedToken("\n" * n, normalized=False) for n in (1, 2, 3, 4)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
        extra_special_tokens={
            "image_token": "<image_soft_token>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
        },
        padding_side="left",
        model_max_length=8192,
    )


def build_tiny_gemma3(
    folder: str | Path,
    *,
    lora: bool = False,
    seed: int = 0,
    image_size: int = 16,
    patch_size: int = 4,
    mm_tokens_per_image: int = 4,
    sliding_window: int = 64,
    hidden_size: int = 64,
    num_attention_heads: int = 2,
    num_hidden_layers: int = 2,
    extra_words: tuple[str, ...] = (),
) -> TinyModel:
    """Write a tiny random-weight ``Gemma3ForConditionalGeneration`` with its processor to
    ``folder`` (and, with ``lora``, a tiny PEFT LoRA adapter to ``folder/adapter``)."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor

    try:
        from transformers import Gemma3ImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers: the only image processor is Pillow-based
        from transformers import Gemma3ImageProcessor as ImageProcessor  # type: ignore[assignment]

    per_side = image_size // patch_size
    if round(mm_tokens_per_image**0.5) ** 2 != mm_tokens_per_image or per_side % round(
        mm_tokens_per_image**0.5
    ):
        raise ValueError("sqrt(mm_tokens_per_image) must divide image_size / patch_size")

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(extra_words)
    image_processor = ImageProcessor(
        size={"height": image_size, "width": image_size},
        do_pan_and_scan=False,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=TINY_CHAT_TEMPLATE,
        image_seq_length=mm_tokens_per_image,
    )
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "query_pre_attn_scalar": 32,
            "sliding_window": sliding_window,
            "max_position_embeddings": 8192,
            "pad_token_id": ids("<pad>"),
            "eos_token_id": [ids("<eos>"), ids("<end_of_turn>")],
            "bos_token_id": ids("<bos>"),
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
        },
        mm_tokens_per_image=mm_tokens_per_image,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = ids("<pad>")
    model.generation_config.eos_token_id = [ids("<eos>"), ids("<end_of_turn>")]
    model.generation_config.bos_token_id = ids("<bos>")
    model.save_pretrained(out)
    _published_layout(out)
    processor.save_pretrained(out)

    adapter_path = None
    if lora:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed + 1)
        peft_cfg = LoraConfig(
            r=4,
            lora_alpha=8,
            # The language model only: plain names would also hit the SigLIP tower.
            target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
            init_lora_weights=False,  # random B, so the adapter visibly changes the logits
        )
        peft_model = get_peft_model(model, peft_cfg)
        adapter_path = out / "adapter"
        peft_model.save_pretrained(str(adapter_path))
    return TinyModel(out, adapter_path, image_size, mm_tokens_per_image)


def _published_layout(folder: Path) -> None:
    """Rename the saved weights to the layout of the published Gemma 3 checkpoints
    (``vision_tower.vision_model.*``), which newer transformers still loads and which vLLM
    requires; transformers 5.2x writes the vision tower without ``vision_model``."""
    from safetensors.torch import load_file, save_file

    for f in folder.glob("*.safetensors"):
        tensors = load_file(f)
        renamed = {
            (
                "vision_tower.vision_model." + k.removeprefix("vision_tower.")
                if k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model.")
                else k
            ): v
            for k, v in tensors.items()
        }
        if renamed.keys() != tensors.keys():
            save_file(renamed, f, metadata={"format": "pt"})


# -- a test model trained to answer in the verdict format -----------------------------------------

#: The marker words of :func:`build_verdict_test_model` and the category each stands for.
TEST_MODEL_MARKERS: dict[str, str] = {"bomb": "Violence", "damn": "Profanity"}

_FILLER_TEXT = (
    "the quick brown fox jumps over lazy dog please summarise attached quarterly report for "
    "board of directors how do I build send an email to my coworker process is killed while "
    "kill what where when can you help me with this code today"
)
_FILLER = tuple(_FILLER_TEXT.split())


def _verdict_sample(processor: Any, rng: Any) -> tuple[str, str]:
    """One training example: a rendered classifier prompt and the answer the test model owes."""

    def turn(unsafe_markers: list[str]) -> str:
        words = [rng.choice(_FILLER) for _ in range(rng.randint(1, 24))]
        for marker in unsafe_markers:
            words.insert(rng.randint(0, len(words)), marker)
        return " ".join(words)

    def markers() -> list[str]:
        return [m for m in TEST_MODEL_MARKERS if rng.random() < 0.35]

    user = markers()
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": turn(user)}]}
    ]
    response: list[str] | None = None
    if rng.random() < 0.4:
        response = markers()
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": turn(response)}]})
    categories = rng.random() < 0.6
    kwargs: dict[str, Any] = {
        "request_categories": "/categories" if categories else "/no_categories",
        "enable_thinking": rng.random() < 0.1,
    }
    if rng.random() < 0.15:
        kwargs["custom_taxonomy"] = turn([])
    elif rng.random() < 0.15:
        kwargs["custom_policy"] = turn([])
    prompt = processor.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=True, **kwargs
    )
    lines = [f"User Safety: {'unsafe' if user else 'safe'}"]
    if response is not None:
        lines.append(f"Response Safety: {'unsafe' if response else 'safe'}")
    found = [c for m, c in TEST_MODEL_MARKERS.items() if m in user or m in (response or ())]
    if categories and found:
        lines.append("Safety Categories: " + ", ".join(found))
    return prompt, "\n".join(lines) + "<end_of_turn>"


def build_verdict_test_model(
    folder: str | Path,
    *,
    steps: int = 600,
    batch_size: int = 16,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
) -> TinyModel:
    """A TEST MODEL, not a safety classifier: a tiny Gemma 3 trained on CPU (about a minute) to
    answer in the Nemotron verdict format, unsafe exactly when a marker word of
    :data:`TEST_MODEL_MARKERS` is in a turn (``bomb``: Violence, ``damn``: Profanity).

    It gives the transformers and served paths real verdict lines and real label logits, so
    tests and the ``eval`` command can run end to end offline. It knows nothing about safety.
    ``progress(step, steps, loss)`` is called every 50 steps and after the last one.
    """
    import random

    import torch
    from transformers import AutoProcessor, Gemma3ForConditionalGeneration

    # A window longer than any prompt it sees: the answer must attend back to the turns.
    tiny = build_tiny_gemma3(
        folder,
        seed=seed,
        sliding_window=1024,
        hidden_size=128,
        num_attention_heads=4,
        extra_words=(" ".join(TEST_MODEL_MARKERS),),
    )
    processor = AutoProcessor.from_pretrained(tiny.path)
    tok = processor.tokenizer
    model = Gemma3ForConditionalGeneration.from_pretrained(tiny.path, dtype=torch.float32)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    pad = tok.pad_token_id
    model.train()
    for step in range(steps):
        if step == int(steps * 0.85):  # settle: the last stretch at a tenth of the rate
            for group in opt.param_groups:
                group["lr"] = 5e-4
        pairs = []
        for _ in range(batch_size):
            prompt, answer = _verdict_sample(processor, rng)
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            a = tok(answer, add_special_tokens=False)["input_ids"]
            pairs.append((p, a))
        width = max(len(p) + len(a) for p, a in pairs)
        ids = torch.full((batch_size, width), pad)
        labels = torch.full((batch_size, width), -100)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for row, (p, a) in enumerate(pairs):
            n = len(p) + len(a)
            ids[row, :n] = torch.tensor(p + a)
            labels[row, len(p) : n] = torch.tensor(a)
            mask[row, :n] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if progress is not None and ((step + 1) % 50 == 0 or step + 1 == steps):
            progress(step + 1, steps, loss.item())
    model.eval()
    model.save_pretrained(tiny.path)
    _published_layout(tiny.path)
    return tiny


# -- the trained test model, built once per machine ---------------------------------------------

_CACHE_ENV = "GUARD_PLUGIN_TEST_MODEL_CACHE"


def verdict_model_key() -> str:
    """What the trained test model depends on: the code that builds it and the versions of the
    libraries that train and save it. Another key means another model, built anew."""
    import peft
    import tokenizers
    import torch
    import transformers

    h = hashlib.sha256(Path(__file__).read_bytes())
    for mod in (torch, transformers, tokenizers, peft):
        h.update(f"|{mod.__name__}={mod.__version__}".encode())
    return h.hexdigest()[:16]


def _cache_root() -> Path:
    found = os.environ.get(_CACHE_ENV)
    if found:
        return Path(found)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "guard_plugin" / "test-models"


def cached_verdict_test_model(
    cache: str | Path | None = None,
    *,
    progress: Callable[[int, int, float], None] | None = None,
) -> TinyModel:
    """The TEST MODEL of :func:`build_verdict_test_model`, trained once per machine and kept in
    ``cache`` (default ``$GUARD_PLUGIN_TEST_MODEL_CACHE``, else
    ``~/.cache/guard_plugin/test-models``) under :func:`verdict_model_key`. Processes that ask
    at once wait for one build (a file lock) instead of each training its own; a build that
    fails leaves nothing behind."""
    import fcntl

    root = Path(cache) if cache is not None else _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = verdict_model_key()
    final = root / f"verdict-{key}"
    with open(root / f"verdict-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (final / "config.json").is_file():
            work = Path(tempfile.mkdtemp(prefix=f"verdict-{key}-", dir=root))
            try:
                build_verdict_test_model(work, progress=progress)
                shutil.rmtree(final, ignore_errors=True)
                work.rename(final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return TinyModel(final, None, 16, 4)
