"""Loading the local model: a folder or the local Hugging Face cache, an optional LoRA adapter
merged into the weights, the device and dtype."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from guard_plugin.errors import ConfigError, ModelLoadError

__all__ = ["ARCHITECTURE", "DEFAULT_MODEL_ID", "LocalModel", "free_cache", "load_local_model"]

ARCHITECTURE = "Gemma3ForConditionalGeneration"
DEFAULT_MODEL_ID = "nvidia/Nemotron-3.5-Content-Safety"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass
class LocalModel:
    """A loaded model: the network, its processor (tokenizer, image processor, chat template),
    where it runs, and what it was loaded from."""

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
    except Exception:  # noqa: BLE001 (any cache miss or hub error: say how to fetch it)
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


def pick_device(
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
    dev, dt = pick_device(device, dtype)
    try:
        processor = AutoProcessor.from_pretrained(path)
        net = Gemma3ForConditionalGeneration.from_pretrained(path, dtype=dt)
    except Exception as err:  # noqa: BLE001 (any load failure is a ModelLoadError)
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
        except Exception as err:  # noqa: BLE001 (any adapter failure is a ModelLoadError)
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


def free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
