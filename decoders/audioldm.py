"""Audio decoder: AudioLDM (``AudioLDMPipeline``) conditioned on one pooled, L2-normalised CLAP text vector.

Our conditions keep the common ``[B, Q, D]`` layout with ``Q = 1``; the pipeline wants ``prompt_embeds`` of shape
``[B, D]`` (it feeds them to the UNet's class embedding), so they are squeezed and normalised as CLAP's are.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from nextgpt.config import DecoderConfig
from nextgpt.registry import DECODERS

from .architectures import AUDIOLDM_L_FULL, TINY_HIDDEN, tiny_audioldm_architecture
from .base import DecodedMedia, Decoder

_UNIT_TOLERANCE = 1e-5


@DECODERS.register("audioldm")
class AudioLDMDecoder(Decoder):
    """Text-to-audio; ``encode_text`` gives the L2-normalised CLAP text projection as ``[B, 1, D]``."""

    file_extension = ".wav"
    pipeline_class_name = "AudioLDMPipeline"

    @staticmethod
    def tiny_config() -> DecoderConfig:
        """Untrained 1-second 16 kHz audio from ``[B, 1, 32]`` conditions; 2 steps."""
        return DecoderConfig(
            kind="audioldm",
            architecture=tiny_audioldm_architecture(),
            condition_tokens=1,
            condition_dim=TINY_HIDDEN,
            defaults={"num_inference_steps": 2, "guidance_scale": 7.5, "audio_length_in_s": 1.0},
        )

    @staticmethod
    def real_config() -> DecoderConfig:
        """``cvssp/audioldm-l-full`` as NExT-GPT's demo calls it: 9 s at 16 kHz, 50 steps, guidance 7.5."""
        return DecoderConfig(
            kind="audioldm",
            path="cvssp/audioldm-l-full",
            architecture=copy.deepcopy(AUDIOLDM_L_FULL),
            condition_tokens=1,
            condition_dim=512,
            defaults={"num_inference_steps": 50, "guidance_scale": 7.5, "audio_length_in_s": 9.0},
        )

    @property
    def sample_rate(self) -> int:
        return int(self.pipeline.vocoder.config.sampling_rate)

    def _encode_prompts(self, captions: list[str]) -> torch.Tensor:
        # the pipeline's own CLAP encoding: text projection, L2-normalised → [B, D]
        embeddings = self.pipeline._encode_prompt(captions, self.device, 1, do_classifier_free_guidance=False)
        return embeddings.unsqueeze(1)

    def prepare_conditions(self, conditions: torch.Tensor) -> torch.Tensor:
        """``[B, 1, D]`` → unit-length ``[B, D]``."""
        vectors = conditions.squeeze(1).to(device=self.device, dtype=self.dtype)
        norms = vectors.norm(dim=-1, keepdim=True)
        # Unit vectors (encode_text outputs) pass unchanged: normalising twice moves the last bits, and
        # prompt_embeds=encode_text(t) must reproduce the pipeline's prompt=t output exactly.
        already_unit = (norms - 1).abs() <= _UNIT_TOLERANCE
        return torch.where(already_unit, vectors, F.normalize(vectors, dim=-1))

    def to_media(self, output: Any) -> list[DecodedMedia]:
        rate = self.sample_rate
        return [DecodedMedia(self.modality, waveform.astype("float32"), rate=rate) for waveform in output.audios]


tiny_config = AudioLDMDecoder.tiny_config
real_config = AudioLDMDecoder.real_config
