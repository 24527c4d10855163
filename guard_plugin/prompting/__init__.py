"""From content to what the model is sent: the content of one model call (:mod:`.inputs`),
untrusted text neutralised so it can neither steer the prompt nor pose as a verdict
(:mod:`.neutralize`), and the request a backend sends (:mod:`.request`)."""

from guard_plugin.prompting.inputs import ImageData, SafetyInput
from guard_plugin.prompting.neutralize import GEMMA_CONTROL_TOKENS, neutralize
from guard_plugin.prompting.request import ModelRequest, build_request

__all__ = [
    "GEMMA_CONTROL_TOKENS",
    "ImageData",
    "ModelRequest",
    "SafetyInput",
    "build_request",
    "neutralize",
]
