"""The local backend: Nemotron Content Safety (Gemma 3 + LoRA) through transformers and peft.

Three layers, as in a serving stack: :func:`load_local_model` loads weights and processor
(optionally merging a raw LoRA adapter); :class:`_Runner` turns a batch of requests into
batched forward passes (left padding, greedy, split on CUDA out-of-memory); a
:class:`BatchWorker` is the only thread that touches the model. The
:class:`TransformersClassifier` callers only submit and wait.

Two ways to read a verdict (``verdict_mode``):

- ``logits`` (default): the answer's first line is forced up to ``User Safety:`` and one
  forward pass gives the label token's logits: the label is their argmax, as greedy generation
  would pick it, and P(unsafe) is the softmax over the two label tokens. A response check adds
  one pass with the chosen user label and ``Response Safety:``. Only an unsafe row that asked
  for categories generates (the ``Safety Categories`` line), and reasoning requests generate.
- ``generate``: greedy generation of the whole answer, no score.

Needs the ``local`` extra: ``pip install 'guard-plugin[local]'``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from guard_plugin.classifiers._batching import BatchWorker
from guard_plugin.classifiers.base import BaseClassifier, ClassifierOutput, ClassifierResult
from guard_plugin.classifiers.registry import register_scheme
from guard_plugin.errors import (
    ClassifierError,
    ClassifierUnavailable,
    ConfigError,
    InjectionDetected,
    ModelLoadError,
)
from guard_plugin.prompting import ModelRequest

try:
    import torch
    import transformers
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the local classifier needs torch and transformers: pip install 'guard-plugin[local]'"
    ) from _err

__all__ = ["LocalModel", "TransformersClassifier", "load_local_model"]

ARCHITECTURE = "Gemma3ForConditionalGeneration"
DEFAULT_MODEL_ID = "nvidia/Nemotron-3.5-Content-Safety"
VERDICT_MODES = ("logits", "generate")
_USER_FIELD = "User Safety:"
# The model and generate() take a KV cache as `cache` from transformers 5.24 (as
# `past_key_values`, deprecated there, before)
_CACHE_KWARG = (
    "cache"
    if tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2]) >= (5, 24)
    else "past_key_values"
)
_RESPONSE_FIELD = "\nResponse Safety:"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass
class LocalModel:
    model: Any
    processor: Any
    device: torch.device
    dtype: torch.dtype
    source: str


def _resolve(model: str) -> Path:
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; give the model's folder")
        return path.resolve()
    if not _HUB_ID.fullmatch(model):
        raise ModelLoadError(
            f"model folder {path} does not exist; give a folder with config.json and weights, "
            f"a Hugging Face id such as {DEFAULT_MODEL_ID}, or an endpoint spec "
            "('openai://host:8000/v1?model=...')"
        )
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception:
        raise ModelLoadError(
            f"model '{model}' is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}). "
            f"Download it first (`hf download {model}`), point to a local folder "
            "('transformers:/path/to/model'), or use a served model "
            "('openai://host:8000/v1?model=...')"
        ) from None


def _check_folder(path: Path) -> None:
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ModelLoadError(f"{path} has no config.json: not a transformers model folder")
    try:
        archs = json.loads(cfg.read_text()).get("architectures") or []
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{cfg} is unreadable: {err}") from None
    if ARCHITECTURE not in archs:
        raise ModelLoadError(
            f"{path} holds {', '.join(archs) or 'an unknown architecture'}, "
            f"not {ARCHITECTURE} (Nemotron Content Safety is a Gemma 3 model)"
        )


def _pick_device(
    device: str | None, dtype: str | torch.dtype | None
) -> tuple[torch.device, torch.dtype]:
    dev = (
        torch.device(device)
        if device
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    if dtype is None:
        dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
    elif isinstance(dtype, torch.dtype):
        dt = dtype
    else:
        dt = getattr(torch, str(dtype), None)  # type: ignore[assignment]
        if not isinstance(dt, torch.dtype):
            raise ConfigError(f"unknown dtype '{dtype}'; use bfloat16, float16 or float32")
    return dev, dt


def load_local_model(
    model: str,
    *,
    adapter: str | None = None,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
) -> LocalModel:
    """Load the model and processor from a folder or the local Hugging Face cache.

    ``adapter``: a PEFT LoRA adapter folder, applied and merged into the weights.
    ``device`` / ``dtype``: default CUDA + bfloat16 when a GPU is visible, else CPU + float32.
    """
    from transformers import AutoProcessor, Gemma3ForConditionalGeneration

    path = _resolve(model)
    _check_folder(path)
    dev, dt = _pick_device(device, dtype)
    try:
        processor = AutoProcessor.from_pretrained(path)
        net = Gemma3ForConditionalGeneration.from_pretrained(path, dtype=dt)
    except Exception as err:
        raise ModelLoadError(
            f"cannot load the model from {path}: {type(err).__name__}: {err}"
        ) from None
    if adapter:
        apath = Path(adapter).expanduser()
        if not (apath / "adapter_config.json").is_file():
            raise ModelLoadError(f"{apath} is not a PEFT adapter folder (no adapter_config.json)")
        try:
            from peft import PeftModel
        except ImportError as err:
            raise ModelLoadError(
                "LoRA adapters need peft: pip install 'guard-plugin[local]'"
            ) from err
        try:
            net = PeftModel.from_pretrained(net, apath).merge_and_unload()
        except Exception as err:
            raise ModelLoadError(
                f"cannot apply the adapter {apath}: {type(err).__name__}: {err}"
            ) from None
    net = net.to(dev).eval()  # type: ignore[arg-type]
    if getattr(processor, "tokenizer", None) is None or not hasattr(
        processor, "apply_chat_template"
    ):
        raise ModelLoadError(f"{path} has no processor with a tokenizer and chat template")
    processor.tokenizer.padding_side = "left"
    return LocalModel(net, processor, dev, dt, str(path) + (f"+{adapter}" if adapter else ""))


class _Runner:
    """Turns a batch of requests into generate calls. Runs only on the worker thread."""

    def __init__(self, lm: LocalModel, verdict_mode: str = "logits") -> None:
        self.lm = lm
        tok = lm.processor.tokenizer
        self.tokenizer = tok
        self.special_tokens: tuple[str, ...] = tuple(
            t.content for t in tok.added_tokens_decoder.values() if t.special
        )
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        stop = [tok.eos_token_id]
        eot = tok.convert_tokens_to_ids("<end_of_turn>")
        if isinstance(eot, int) and eot != tok.unk_token_id:
            stop.append(eot)
        self.stop_ids = [i for i in stop if i is not None]
        # Control-token ids whose count per row must match a benign reference rendering.
        self.control_ids = torch.tensor(
            sorted(
                {tok.convert_tokens_to_ids(t) for t in self.special_tokens}
                - {self.pad_id, tok.unk_token_id}
            ),
            dtype=torch.long,
        )
        self._reference: dict[tuple[Any, ...], torch.Tensor] = {}
        self.oom_splits = 0
        #: forward passes run (prefills, label passes and generation steps), for benchmarks
        self.forward_passes = 0
        self.label_ids = self._find_label_ids() if verdict_mode == "logits" else None
        self.response_field_ids = self._find_response_field_ids() if self.label_ids else None
        if self.response_field_ids is None:
            self.label_ids = None  # the extension cannot be fed as tokens: generate instead

    def _find_label_ids(self) -> tuple[int, int] | None:
        """The token ids of `` safe`` and `` unsafe`` right after each verdict field, or
        ``None`` where a label is not one token after the field (then every row generates)."""
        tok = self.tokenizer
        found: set[tuple[int, int]] = set()
        for field_name in (_USER_FIELD, _RESPONSE_FIELD.strip()):
            base = tok.encode(field_name, add_special_tokens=False)
            pair = []
            for label in ("safe", "unsafe"):
                ids = tok.encode(f"{field_name} {label}", add_special_tokens=False)
                if ids[: len(base)] != base or len(ids) != len(base) + 1:
                    return None
                pair.append(ids[-1])
            found.add((pair[0], pair[1]))
        if len(found) != 1:
            return None
        (safe, unsafe) = found.pop()
        return (safe, unsafe) if safe != unsafe else None

    def _find_response_field_ids(self) -> torch.Tensor | None:
        """The tokens of ``\\nResponse Safety:`` as they follow a label, when the tokenizer
        writes the whole answer as label token + those tokens (then the response pass feeds
        them after the cached prompt without re-tokenising)."""
        assert self.label_ids is not None
        tok = self.tokenizer
        field_ids = tok.encode(_RESPONSE_FIELD, add_special_tokens=False)
        head = tok.encode(_USER_FIELD, add_special_tokens=False)
        for label, lid in zip(("safe", "unsafe"), self.label_ids, strict=True):
            whole = tok.encode(f"{_USER_FIELD} {label}{_RESPONSE_FIELD}", add_special_tokens=False)
            if whole != [*head, lid, *field_ids]:
                return None
        return torch.tensor([field_ids], dtype=torch.long)

    def uses_logits(self, req: ModelRequest) -> bool:
        return self.label_ids is not None and not req.template_kwargs.get("enable_thinking")

    # prompts --------------------------------------------------------------------------------

    def _render(
        self, req: ModelRequest, *, user_text: str | None = None, response_text: str | None = None
    ) -> str:
        msgs = req.messages(lambda img: {"type": "image"})
        if user_text is not None:
            msgs[0]["content"][-1]["text"] = user_text
        if response_text is not None and len(msgs) > 1:
            msgs[1]["content"][0]["text"] = response_text
        return str(
            self.lm.processor.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=True, **dict(req.template_kwargs)
            )
        )

    def _encode(self, reqs: Sequence[ModelRequest], suffixes: Sequence[str] = ()) -> Any:
        """The batch's model input; ``suffixes`` (one per request) continue each prompt with
        a forced start of the answer."""
        texts = [self._render(r) for r in reqs]
        if suffixes:
            texts = [t + s for t, s in zip(texts, suffixes, strict=True)]
        if all(r.image is None for r in reqs):
            return self._encode_text(texts)
        images = [[r.image.to_pil()] if r.image is not None else [] for r in reqs]
        return self.lm.processor(text=texts, images=images, padding=True, return_tensors="pt")

    def _encode_text(self, texts: list[str]) -> Any:
        """Text-only batches: the processor adds nothing but a per-token scan for image
        placeholders (none can be present: the smuggling check ran first), so tokenise with
        the Rust backend and left-pad directly. Equal to the processor's output (tested)."""
        import numpy as np
        from transformers import BatchFeature

        backend = self.tokenizer.backend_tokenizer
        backend.no_padding()
        backend.no_truncation()
        encs = backend.encode_batch(texts, add_special_tokens=False)
        width = max(len(e.ids) for e in encs)
        ids = np.full((len(encs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for row, e in enumerate(encs):
            n = len(e.ids)
            ids[row, width - n :] = e.ids
            mask[row, width - n :] = 1
        return BatchFeature(
            {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        )

    def _counts(self, input_ids: torch.Tensor) -> torch.Tensor:
        return (input_ids.unsqueeze(-1) == self.control_ids).sum(dim=1)

    def _expected(self, req: ModelRequest) -> torch.Tensor:
        key = (
            repr(sorted(req.template_kwargs.items())),
            req.image is not None,
            req.response_text is not None,
        )
        ref = self._reference.get(key)
        if ref is None:
            text = self._render(req, user_text="x", response_text="x")
            kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
            if req.image is not None:
                kwargs["images"] = [[req.image.to_pil()]]
            enc = self._encode_text([text]) if req.image is None else self.lm.processor(**kwargs)
            ref = self._counts(enc["input_ids"])[0]
            if len(self._reference) < 256:
                self._reference[key] = ref
        return ref

    # generation -----------------------------------------------------------------------------

    def __call__(self, reqs: list[ModelRequest]) -> list[ClassifierResult]:
        results: list[ClassifierResult | None] = [None] * len(reqs)
        groups: dict[tuple[int, bool, bool], list[int]] = {}
        for i, r in enumerate(reqs):
            key = (r.max_new_tokens, self.uses_logits(r), r.expects_response)
            groups.setdefault(key, []).append(i)
        for (max_new, logits, _), idx in groups.items():
            group = [reqs[i] for i in idx]
            for i, res in zip(idx, self._run_group(group, max_new, logits), strict=True):
                results[i] = res
        return [r if r is not None else ClassifierError("no result") for r in results]

    def _smuggles(self, req: ModelRequest) -> bool:
        texts = (req.user_text, req.response_text or "")
        return any(tok in text for text in texts for tok in self.special_tokens)

    def _run_group(
        self, reqs: list[ModelRequest], max_new: int, logits: bool = False
    ) -> list[ClassifierResult]:
        # Two layers: literal special tokens in the untrusted text, then (after tokenising)
        # control-token counts that differ from a benign rendering of the same request shape.
        smuggled = [i for i, r in enumerate(reqs) if self._smuggles(r)]
        if smuggled:
            return self._without(reqs, smuggled, max_new, logits)
        try:
            enc = self._encode(reqs, [_USER_FIELD] * len(reqs) if logits else ())
        except Exception as err:
            if len(reqs) == 1:
                return [
                    ClassifierUnavailable(
                        f"cannot build the model input: {type(err).__name__}: {err}"
                    )
                ]
            return [r for req in reqs for r in self._run_group([req], max_new, logits)]
        counts = self._counts(enc["input_ids"])
        bad = [i for i, r in enumerate(reqs) if not torch.equal(counts[i], self._expected(r))]
        if bad:
            return self._without(reqs, bad, max_new, logits)
        if logits:
            return self._read_labels(reqs, enc, max_new)
        return self._generate(reqs, enc, max_new)

    def _without(
        self, reqs: list[ModelRequest], bad: list[int], max_new: int, logits: bool = False
    ) -> list[ClassifierResult]:
        """Refuse the requests at ``bad`` and run the rest."""
        out: list[ClassifierResult] = [
            InjectionDetected(
                "the content carries tokenizer control tokens; refusing to classify it"
            )
        ] * len(reqs)
        keep = [i for i in range(len(reqs)) if i not in bad]
        if keep:
            rest = self._run_group([reqs[i] for i in keep], max_new, logits)
            for i, res in zip(keep, rest, strict=True):
                out[i] = res
        return out

    # label logits ---------------------------------------------------------------------------

    def _inputs(self, enc: Any) -> Any:
        inputs = enc.to(self.lm.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.lm.dtype)
        else:
            # Only image tokens need token_type_ids (bidirectional attention among them).
            # Without images they are all zeros, and passing them makes Gemma 3 build an
            # explicit mask: identical logits, about 1.6x slower prefill on CPU.
            inputs.pop("token_type_ids", None)
        return inputs

    def last_logits(self, enc: Any) -> torch.Tensor:
        """The next-token logits after each (left-padded) row: one forward pass, positions
        counted from each row's first real token, as ``generate`` counts them."""
        inputs = self._inputs(enc)
        positions = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
        logits, _ = self._forward(inputs, positions, None, keep=False)
        return logits

    def _forward(
        self, inputs: Any, positions: torch.Tensor, cache: Any, *, keep: bool = True
    ) -> tuple[torch.Tensor, Any]:
        """One forward pass; the last position's logits and (``keep``) the KV cache."""
        with torch.inference_mode():
            out = self.lm.model(
                **inputs,
                position_ids=positions,
                **{_CACHE_KWARG: cache},
                logits_to_keep=1,
                use_cache=keep,
            )
        self.forward_passes += 1
        return out.logits[:, -1, :].float(), getattr(out, _CACHE_KWARG) if keep else None

    def _read_labels(
        self, reqs: list[ModelRequest], enc: Any, max_new: int
    ) -> list[ClassifierResult]:
        try:
            return self._read_labels_once(reqs, enc, max_new)
        except torch.OutOfMemoryError:
            _free_cache(self.lm.device)
            if len(reqs) == 1:
                return [ClassifierUnavailable("out of GPU memory for a single request")]
            self.oom_splits += 1
            half = len(reqs) // 2
            return self._run_group(reqs[:half], max_new, True) + self._run_group(
                reqs[half:], max_new, True
            )
        except Exception:
            _free_cache(self.lm.device)
            raise

    def _read_labels_once(
        self, reqs: list[ModelRequest], enc: Any, max_new: int
    ) -> list[ClassifierResult]:
        """Labels from logits, reusing the KV cache: the label pass over the prompts, for
        response rows one short pass over ``<user label>\nResponse Safety:``, and for unsafe
        rows that asked for categories a generation that starts after the label token."""
        assert self.label_ids is not None and self.response_field_ids is not None
        safe, unsafe = self.label_ids
        dev = self.lm.device
        inputs = self._inputs(enc)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        logits, cache = self._forward(inputs, positions, None)
        n = len(reqs)
        results: list[ClassifierResult | None] = [None] * n
        texts = [_USER_FIELD] * n
        scores: list[list[float | None]] = [[None, None] for _ in range(n)]
        fields = 2 if reqs[0].expects_response else 1  # groups never mix the two
        chosen = torch.full((n,), safe, device=dev)  # each row's label token so far
        for step in range(fields):
            if step:  # the response field, after each row's greedy user label
                ext = torch.cat(
                    [chosen.unsqueeze(1), self.response_field_ids.to(dev).expand(n, -1)], dim=1
                )
                ext_mask = torch.ones_like(ext)
                ext_pos = positions[:, -1:] + 1 + torch.arange(ext.shape[1], device=dev)
                logits, cache = self._forward(
                    {"input_ids": ext, "attention_mask": torch.cat([mask, ext_mask], dim=1)},
                    ext_pos,
                    cache,
                )
                ids = torch.cat([ids, ext], dim=1)
                mask = torch.cat([mask, ext_mask], dim=1)
                positions = torch.cat([positions, ext_pos], dim=1)
            top = logits.argmax(dim=-1)
            p = torch.softmax(logits[:, [safe, unsafe]], dim=-1)[:, 1].tolist()
            for i, t in enumerate(top.tolist()):
                if results[i] is not None:
                    continue
                if t not in (safe, unsafe):
                    # Not a verdict: the text greedy decoding would have begun with, which
                    # the parser then refuses, as it refuses any answer that is no verdict.
                    results[i] = ClassifierOutput(texts[i] + self.tokenizer.decode([t]))
                    continue
                texts[i] += f" {'unsafe' if t == unsafe else 'safe'}"
                scores[i][step] = p[i]
                if step + 1 < fields:
                    texts[i] += _RESPONSE_FIELD
            # rows that are no verdict go on with a label token too; their result is final
            chosen = torch.where((top == safe) | (top == unsafe), top, safe)
        # Categories: only rows whose deciding label is unsafe and that asked for them.
        extend = [
            i
            for i, req in enumerate(reqs)
            if results[i] is None
            and texts[i].endswith("unsafe")
            and req.template_kwargs.get("request_categories") == "/categories"
        ]
        more: list[ClassifierResult] = []
        if extend and hasattr(cache, "batch_select_indices"):
            rows = torch.tensor(extend, device=dev)
            cache.batch_select_indices(rows)
            more = [
                ClassifierOutput(t)
                for t in self._continue(
                    torch.cat([ids[rows], chosen[rows].unsqueeze(1)], dim=1),
                    torch.cat([mask[rows], torch.ones_like(rows).unsqueeze(1)], dim=1),
                    cache,
                    max_new,
                )
            ]
        elif extend:  # a cache type without row selection: prefill the forced answer again
            sub, forced = [reqs[i] for i in extend], [texts[i] for i in extend]
            more = self._generate(sub, self._encode(sub, forced), max_new, forced)
        for i, res in zip(extend, more, strict=True):
            if isinstance(res, ClassifierOutput):
                texts[i] += res.text if res.text.startswith("\n") else "\n" + res.text
            else:
                results[i] = res
        return [
            r
            if r is not None
            else ClassifierOutput(texts[i], user_score=scores[i][0], response_score=scores[i][1])
            for i, r in enumerate(results)
        ]

    def _continue(
        self, ids: torch.Tensor, mask: torch.Tensor, cache: Any, max_new: int
    ) -> list[str]:
        """Greedy generation after a forced answer whose every token but the last is in
        ``cache``: the ``Safety Categories`` line, without a second prefill."""
        kwargs = {_CACHE_KWARG: cache, "cache_implementation": None}
        out = self._greedy(max_new, input_ids=ids, attention_mask=mask, **kwargs)
        return self._new_text(out, ids.shape[1])

    def _greedy(self, max_new: int, **inputs: Any) -> torch.Tensor:
        with torch.inference_mode():
            return self.lm.model.generate(  # type: ignore[no-any-return]
                **inputs,
                max_new_tokens=max_new,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=self.pad_id,
                eos_token_id=self.stop_ids,
            )

    def _new_text(self, out: torch.Tensor, prompt_width: int) -> list[str]:
        """The generated tokens of each row as text (one forward pass counted per token:
        the prefill makes the first)."""
        new = out[:, prompt_width:]
        self.forward_passes += new.shape[1]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _generate(
        self, reqs: list[ModelRequest], enc: Any, max_new: int, suffixes: Sequence[str] = ()
    ) -> list[ClassifierResult]:
        """Greedy generation for an encoded batch; ``suffixes`` are the forced answer
        prefixes the batch was encoded with (kept when an OOM splits it)."""
        lm = self.lm
        try:
            inputs = self._inputs(enc)
            out = self._greedy(max_new, **inputs)
        except torch.OutOfMemoryError:
            _free_cache(lm.device)
            if len(reqs) == 1:
                return [ClassifierUnavailable("out of GPU memory for a single request")]
            self.oom_splits += 1
            h = len(reqs) // 2
            parts = [(reqs[:h], list(suffixes[:h])), (reqs[h:], list(suffixes[h:]))]
            return [
                res
                for rs, sx in parts
                for res in self._generate(rs, self._encode(rs, sx), max_new, sx)
            ]
        except Exception:
            _free_cache(lm.device)
            raise
        return [ClassifierOutput(t) for t in self._new_text(out, inputs["input_ids"].shape[1])]


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


class TransformersClassifier(BaseClassifier):
    """Nemotron Content Safety run in this process, shared and batched.

    - ``model``: a model folder, a Hugging Face id in the local cache, or a
      :class:`LocalModel` already loaded (then ``adapter``, ``device``, ``dtype`` are unused).
    - ``adapter``: an optional PEFT LoRA adapter folder (merged at load).
    - ``device`` / ``dtype``: default CUDA + bfloat16 when available, else CPU + float32.
    - ``max_batch_size``, ``max_wait_ms``: how the worker forms batches.
    - ``max_queue``: requests allowed to wait; beyond it callers get :class:`QueueFullError`.
    - ``verdict_mode``: ``logits`` (default: labels and P(unsafe) from the label token's
      logits, one forward pass for most checks) or ``generate`` (greedy generation, no score).

    Prefer ``load_classifier("transformers:...")``, which returns one shared instance per spec.
    """

    def __init__(
        self,
        model: str | LocalModel = DEFAULT_MODEL_ID,
        *,
        adapter: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        max_batch_size: int = 16,
        max_wait_ms: float = 2.0,
        max_queue: int = 1024,
        verdict_mode: str = "logits",
    ) -> None:
        if verdict_mode not in VERDICT_MODES:
            raise ConfigError(
                f"verdict_mode must be one of {', '.join(VERDICT_MODES)}, not '{verdict_mode}'"
            )
        if isinstance(model, LocalModel):
            self.local = model
            self.name = f"transformers:{model.source}"
        else:
            self.local = load_local_model(model, adapter=adapter, device=device, dtype=dtype)
            self.name = f"transformers:{model}" + (f"+{adapter}" if adapter else "")
        self._runner = _Runner(self.local, verdict_mode)
        self.verdict_mode = verdict_mode if self._runner.label_ids is not None else "generate"
        self.extra_tokens = self._runner.special_tokens
        self._worker: BatchWorker[ModelRequest, ClassifierResult] = BatchWorker(
            self._runner,
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_ms / 1000.0,
            max_queue=max_queue,
            name="guard-plugin-model",
        )
        self._close_lock = threading.Lock()

    @property
    def stats(self) -> dict[str, Any]:
        s = self._worker.stats
        return {
            "requests": s.requests,
            "batches": s.batches,
            "max_batch": s.max_batch,
            "queue_full": s.queue_full,
            "failures": s.failures,
            "oom_splits": self._runner.oom_splits,
            "forward_passes": self._runner.forward_passes,
        }

    def classify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]:
        return [_as_result(r) for r in self._worker.run(requests, timeout)]

    async def aclassify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]:
        return [_as_result(r) for r in await self._worker.arun(requests, timeout)]

    def health(self) -> bool:
        """Runs a one-token generation through the worker: True when the model answers."""
        from guard_plugin.policy import Policy, compile_policy
        from guard_plugin.prompting import SafetyInput, build_request

        req = build_request(SafetyInput(text="ping"), compile_policy(Policy()))
        probe = ModelRequest(req.user_text, None, None, req.template_kwargs, 1, "health")
        try:
            (res,) = self._worker.run([probe], timeout=60)
        except ClassifierError:
            return False
        return isinstance(res, ClassifierOutput)

    def close(self) -> None:
        with self._close_lock:
            self._worker.close()
            _free_cache(self.local.device)


def _as_result(r: object) -> ClassifierResult:
    if isinstance(r, (ClassifierOutput, ClassifierError)):
        return r
    return ClassifierError(f"unexpected result {type(r).__name__}")


_INT_OPTIONS = ("max_batch_size", "max_queue")
_FLOAT_OPTIONS = ("max_wait_ms",)


def _factory(rest: str, options: dict[str, Any]) -> tuple[str, Any]:
    model, _, query = rest.partition("?")
    model = model or DEFAULT_MODEL_ID
    params: dict[str, Any] = dict(parse_qsl(query))
    known = {"adapter", "device", "dtype", "verdict_mode", *_INT_OPTIONS, *_FLOAT_OPTIONS}
    unknown = set(params) - known
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(sorted(unknown))} in 'transformers:{rest}'; "
            "known: adapter, device, dtype, max_batch_size, max_wait_ms, max_queue, verdict_mode"
        )
    for k in _INT_OPTIONS:
        if k in params:
            params[k] = int(params[k])
    for k in _FLOAT_OPTIONS:
        if k in params:
            params[k] = float(params[k])
    params.update(options)
    p = Path(model).expanduser()
    norm_model = str(p.resolve()) if p.exists() else model
    adapter = params.get("adapter")
    norm_adapter = str(Path(adapter).expanduser().resolve()) if adapter else ""
    dev, dt = _pick_device(params.get("device"), params.get("dtype"))
    extra = sorted((k, v) for k, v in params.items() if k not in ("adapter", "device", "dtype"))
    key = f"transformers:{norm_model}|{norm_adapter}|{dev}|{dt}|{extra}"
    return key, lambda: TransformersClassifier(model, **params)


register_scheme("transformers", _factory)
register_scheme("hf", _factory)

_ = transformers.__version__  # the extra is present
