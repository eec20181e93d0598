"""nextgpt: any-to-any multimodal chat — ImageBind encoders, an LLM with signal tokens, diffusion decoders.

Quick start::

    from nextgpt import NextGPT
    pipe = NextGPT.from_preset("tiny")
    response = pipe.chat("draw a red circle", force={"image"})
    response.media[0].path
"""
from __future__ import annotations

import os
from typing import Any

# No telemetry or hub calls from libraries we import (the project runs offline by default).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

__version__ = "0.1.0"

_LAZY = {
    "NextGPT": "nextgpt.pipeline",
    "Conversation": "nextgpt.pipeline",
    "NextGPTConfig": "nextgpt.config",
    "ModalitySpec": "nextgpt.config",
    "GenerationOptions": "nextgpt.options",
    "RuntimeOptions": "nextgpt.options",
    "Message": "nextgpt.types",
    "Media": "nextgpt.types",
    "MediaOutput": "nextgpt.types",
    "Response": "nextgpt.types",
    "get_preset": "nextgpt.presets",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nextgpt' has no attribute {name!r}")
