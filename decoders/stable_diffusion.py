"""Image decoder: Stable Diffusion (``StableDiffusionPipeline``) conditioned on CLIP hidden states ``[B, 77, 768]``."""
from __future__ import annotations

import copy
import logging
from typing import Any

from nextgpt.config import DecoderConfig
from nextgpt.registry import DECODERS

from .architectures import STABLE_DIFFUSION_V1_5, TINY_HIDDEN, tiny_stable_diffusion_architecture
from .base import DecodedMedia, Decoder
from .media_io import to_uint8

logger = logging.getLogger(__name__)


@DECODERS.register("stable-diffusion")
class StableDiffusionDecoder(Decoder):
    """Text-to-image with ``prompt_embeds`` = the CLIP text encoder's last hidden state (SD-1.x)."""

    file_extension = ".png"
    pipeline_class_name = "StableDiffusionPipeline"

    @staticmethod
    def tiny_config(condition_tokens: int = 77) -> DecoderConfig:
        """Untrained 32×32 images from ``[B, condition_tokens, 32]`` conditions; 2 steps."""
        return DecoderConfig(
            kind="stable-diffusion",
            architecture=tiny_stable_diffusion_architecture(condition_tokens),
            condition_tokens=condition_tokens,
            condition_dim=TINY_HIDDEN,
            defaults={"num_inference_steps": 2, "guidance_scale": 7.5, "height": 32, "width": 32},
        )

    @staticmethod
    def real_config() -> DecoderConfig:
        """``runwayml/stable-diffusion-v1-5`` as NExT-GPT calls it: 512×512, 50 steps, guidance 7.5."""
        return DecoderConfig(
            kind="stable-diffusion",
            path="runwayml/stable-diffusion-v1-5",
            architecture=copy.deepcopy(STABLE_DIFFUSION_V1_5),
            condition_tokens=77,
            condition_dim=768,
            defaults={"num_inference_steps": 50, "guidance_scale": 7.5, "height": 512, "width": 512},
        )

    def assemble_pipeline(self, components: dict[str, Any]) -> Any:
        # An untrained pipeline gets no safety checker: the checker is a CLIP vision model with weights of its own.
        return self.pipeline_class()(
            **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )

    def _encode_prompts(self, captions: list[str]) -> Any:
        embeddings, _ = self.pipeline.encode_prompt(captions, self.device, 1, do_classifier_free_guidance=False)
        return embeddings

    def to_media(self, output: Any) -> list[DecodedMedia]:
        flagged = [i for i, nsfw in enumerate(output.nsfw_content_detected or []) if nsfw]
        if flagged:
            logger.warning("%s: the safety checker blacked out item(s) %s", self._name, flagged)
        return [DecodedMedia(self.modality, to_uint8(image)) for image in output.images]


tiny_config = StableDiffusionDecoder.tiny_config
real_config = StableDiffusionDecoder.real_config
