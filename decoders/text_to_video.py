"""Video decoder: ModelScope text-to-video / Zeroscope (``TextToVideoSDPipeline`` with a ``UNet3DConditionModel``)
conditioned on OpenCLIP-H text hidden states ``[B, 77, 1024]``."""
from __future__ import annotations

import copy
from typing import Any

from nextgpt.config import DecoderConfig
from nextgpt.registry import DECODERS

from .architectures import TINY_HIDDEN, ZEROSCOPE_V2_576W, tiny_text_to_video_architecture
from .base import DecodedMedia, Decoder
from .media_io import to_uint8


@DECODERS.register("text-to-video")
class TextToVideoDecoder(Decoder):
    """Text-to-video with ``prompt_embeds`` = the CLIP text encoder's last hidden state; media carry the fps."""

    file_extension = ".mp4"
    pipeline_class_name = "TextToVideoSDPipeline"
    media_options = ("fps",)

    @staticmethod
    def tiny_config(condition_tokens: int = 77) -> DecoderConfig:
        """Untrained 4-frame 32×32 videos at 8 fps from ``[B, condition_tokens, 32]`` conditions; 2 steps."""
        return DecoderConfig(
            kind="text-to-video",
            architecture=tiny_text_to_video_architecture(condition_tokens),
            condition_tokens=condition_tokens,
            condition_dim=TINY_HIDDEN,
            defaults={
                "num_inference_steps": 2,
                "guidance_scale": 7.5,
                "height": 32,
                "width": 32,
                "num_frames": 4,
                "fps": 8,
            },
        )

    @staticmethod
    def real_config() -> DecoderConfig:
        """``cerspense/zeroscope_v2_576w`` as NExT-GPT calls it: 24 frames of 320×576 at 8 fps, 50 steps, 7.5."""
        return DecoderConfig(
            kind="text-to-video",
            path="cerspense/zeroscope_v2_576w",
            architecture=copy.deepcopy(ZEROSCOPE_V2_576W),
            condition_tokens=77,
            condition_dim=1024,
            defaults={
                "num_inference_steps": 50,
                "guidance_scale": 7.5,
                "height": 320,
                "width": 576,
                "num_frames": 24,
                "fps": 8,
            },
        )

    def _encode_prompts(self, captions: list[str]) -> Any:
        embeddings, _ = self.pipeline.encode_prompt(captions, self.device, 1, do_classifier_free_guidance=False)
        return embeddings

    def to_media(self, output: Any, fps: int = 8) -> list[DecodedMedia]:
        return [DecodedMedia(self.modality, to_uint8(frames), rate=fps) for frames in output.frames]


tiny_config = TextToVideoDecoder.tiny_config
real_config = TextToVideoDecoder.real_config
