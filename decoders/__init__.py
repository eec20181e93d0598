"""Decoders: conditioning embeddings ``[B, Q, D]`` → images, audio, video, by composing diffusers pipelines.

Importing this package registers ``stable-diffusion``, ``audioldm`` and ``text-to-video`` in ``DECODERS``.
"""
from __future__ import annotations

from typing import Any

from nextgpt.config import DecoderConfig
from nextgpt.registry import DECODERS

from . import audioldm, stable_diffusion, text_to_video  # noqa: F401  (registration)
from .audioldm import AudioLDMDecoder
from .base import DecodedMedia, Decoder, StepCallback
from .components import build_components, count_parameters
from .media_io import write_audio, write_image, write_media, write_video
from .stable_diffusion import StableDiffusionDecoder
from .text_to_video import TextToVideoDecoder

__all__ = [
    "AudioLDMDecoder",
    "DecodedMedia",
    "Decoder",
    "StableDiffusionDecoder",
    "StepCallback",
    "TextToVideoDecoder",
    "build_components",
    "build_decoder",
    "count_parameters",
    "write_audio",
    "write_image",
    "write_media",
    "write_video",
]


def build_decoder(modality: str, config: DecoderConfig, **kwargs: Any) -> Decoder:
    """Create the decoder registered as ``config.kind`` (the pipeline itself is built on first use).

    Args:
        modality: the modality it produces (e.g. ``"image"``).
        config: its ``DecoderConfig``.
        **kwargs: ``base_dir``, ``allow_random_init``, ``seed``, ``device``, ``dtype`` (see :class:`Decoder`).

    Raises:
        KeyError: for an unknown kind, listing the registered ones.
    """
    return DECODERS.get(config.kind)(modality, config, **kwargs)
