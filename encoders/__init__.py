"""Encoders: untrusted media → one pooled embedding per item (ImageBind by default; others plug in).

``build_encoder`` looks the config's ``kind`` up in ``nextgpt.registry.ENCODERS``; importing this package
registers the built-in encoders. ``nextgpt.encoders.media`` holds the loaders that enforce ``MediaLimits``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from nextgpt.config import EncoderConfig
from nextgpt.registry import ENCODERS

from .base import MediaEncoder
from .imagebind import HUGE_ARCHITECTURE, TINY_ARCHITECTURE, ImageBindEncoder, huge_config, tiny_config
from .media import MediaError, load_audio, load_image, load_text, load_video

__all__ = [
    "HUGE_ARCHITECTURE",
    "TINY_ARCHITECTURE",
    "ImageBindEncoder",
    "MediaEncoder",
    "MediaError",
    "build_encoder",
    "huge_config",
    "load_audio",
    "load_image",
    "load_text",
    "load_video",
    "tiny_config",
]


def build_encoder(
    config: EncoderConfig,
    *,
    base_dir: str | Path | None = None,
    allow_random_init: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
    allow_pickle: bool = False,
    dtype: torch.dtype | None = None,
) -> MediaEncoder:
    """Build the frozen encoder named by ``config.kind``.

    Args:
        config: the encoder config (``kind``, ``path``, ``architecture``, ``embed_dim``, ``options``, ``limits``).
        base_dir: folder a relative ``config.path`` is resolved against (the checkpoint folder).
        allow_random_init: allow seeded random weights when ``config.path`` is None (tests, tiny models).
        seed: seed for that random initialisation.
        device: target device (default CPU); ``"meta"`` instantiates without memory or weights, e.g. to count
            parameters.
        allow_pickle: accept a pickled checkpoint (loaded with ``torch.load(weights_only=True)``).
        dtype: parameter dtype (default float32).

    Returns:
        A frozen ``MediaEncoder`` in eval mode whose ``embed_dim == config.embed_dim``.

    Raises:
        KeyError: for an unknown ``config.kind``, listing the registered encoders.
        FileNotFoundError / ValueError: from the encoder, naming the weights file or setting at fault.
    """
    encoder_class = ENCODERS.get(config.kind)
    return encoder_class.from_config(
        config,
        base_dir=base_dir,
        allow_random_init=allow_random_init,
        seed=seed,
        device=device,
        dtype=dtype,
        allow_pickle=allow_pickle,
    )
