"""The local backend: Nemotron Content Safety (Gemma 3 + LoRA) through transformers and peft.

One module per step, as in a serving stack:

- :mod:`.loader`: weights and processor from a folder or the local Hugging Face cache, an
  optional LoRA adapter merged in, device and dtype;
- :mod:`.prompts`: requests rendered with their own template kwargs, tokenised, left-padded;
- :mod:`.injection`: requests whose untrusted text would carry control tokens are refused;
- :mod:`.decoding`: forward passes and greedy generation, split in halves on CUDA OOM;
- :mod:`.labels`: ``verdict_mode=logits`` (default), the label and P(unsafe) from the label
  token's logits in one forward pass (``generate`` mode generates the whole answer);
- :mod:`.runner`: a batch into results, on the batching worker's thread;
- :mod:`.classifier`: :class:`TransformersClassifier` and the ``transformers:`` specs.

Needs the ``local`` extra: ``pip install 'guard-plugin[local]'``.
"""

try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the local classifier needs torch and transformers: pip install 'guard-plugin[local]'"
    ) from _err

from guard_plugin.classifiers.transformers.classifier import SCHEMES, TransformersClassifier
from guard_plugin.classifiers.transformers.loader import (
    ARCHITECTURE,
    DEFAULT_MODEL_ID,
    LocalModel,
    load_local_model,
)
from guard_plugin.classifiers.transformers.runner import VERDICT_MODES

__all__ = [
    "ARCHITECTURE",
    "DEFAULT_MODEL_ID",
    "SCHEMES",
    "VERDICT_MODES",
    "LocalModel",
    "TransformersClassifier",
    "load_local_model",
]
