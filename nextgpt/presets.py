"""Named configurations: ``tiny`` (random, CPU, offline) and ``nextgpt-7b`` (the released NExT-GPT design).

``get_preset(name, **overrides)`` builds one; an unknown name raises a KeyError that lists the presets.
"""
from __future__ import annotations

from typing import Any

from nextgpt.decoders import audioldm, stable_diffusion, text_to_video
from nextgpt.encoders import imagebind

from .config import DecoderConfig, LLMConfig, LoRAConfig, ModalitySpec, NextGPTConfig, ProjectorConfig
from .registry import PRESETS

# Vicuna-7B v0 = LLaMA-1 7B (reference doc): hidden 4096, 32 layers, context 2048, 32000 base tokens.
VICUNA_7B_ARCHITECTURE: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

TINY_LLM_ARCHITECTURE: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "vocab_size": 800,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 3,
}

# The reference output projector, and a tiny one of the same kind.
REFERENCE_OUTPUT_PROJECTOR = ProjectorConfig(kind="transformer")
TINY_OUTPUT_PROJECTOR = ProjectorConfig(
    kind="transformer",
    params={"d_model": 32, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 64},
)

# Reference signal token counts; spec order image, video, audio gives the released ids 32002–32037.
SIGNAL_TOKENS = {"image": ("IMG", 4), "video": ("VID", 24), "audio": ("AUD", 8)}
WRAP = {"image": ("<Img>", "</Img>"), "video": ("<Vid>", "</Vid>"), "audio": ("<Aud>", "</Aud>")}


def _modalities(decoders: dict[str, DecoderConfig], input_projector: ProjectorConfig,
                output_projector: ProjectorConfig) -> list[ModalitySpec]:
    return [
        ModalitySpec(
            name=name,
            signal_prefix=prefix,
            num_signal_tokens=count,
            wrap=WRAP[name],
            input_projector=input_projector,
            output_projector=output_projector,
            decoder=decoders[name],
        )
        for name, (prefix, count) in SIGNAL_TOKENS.items()
    ]


@PRESETS.register("tiny")
def tiny(seed: int = 0) -> NextGPTConfig:
    """Every component random and tiny; builds in seconds on CPU with no network."""
    decoders = {
        "image": stable_diffusion.tiny_config(),
        "video": text_to_video.tiny_config(),
        "audio": audioldm.tiny_config(),
    }
    return NextGPTConfig(
        name="tiny",
        llm=LLMConfig(architecture=dict(TINY_LLM_ARCHITECTURE), tokenizer="builtin:tiny-llama"),
        encoder=imagebind.tiny_config(),
        modalities=_modalities(decoders, ProjectorConfig(kind="linear"), TINY_OUTPUT_PROJECTOR),
        template="vicuna_v0",
        shared_input_projector=True,
        allow_random_init=True,
        seed=seed,
    )


@PRESETS.register("nextgpt-7b")
def nextgpt_7b(
    llm_path: str | None = None,
    imagebind_path: str | None = None,
    image_decoder: str | None = None,
    video_decoder: str | None = None,
    audio_decoder: str | None = None,
) -> NextGPTConfig:
    """The released NExT-GPT (legacy) design: ImageBind-huge, Vicuna-7B v0, SD-1.5, Zeroscope, AudioLDM-l-full.

    Args:
        llm_path: folder of a merged Vicuna-7B v0 (the weights are distributed as deltas over LLaMA-1).
        imagebind_path: imagebind_huge weights (.safetensors, or .pth with allow_pickle).
        image_decoder / video_decoder / audio_decoder: override the diffusers model ids or local folders.
    """
    decoders = {
        "image": stable_diffusion.real_config(),
        "video": text_to_video.real_config(),
        "audio": audioldm.real_config(),
    }
    for name, path in (("image", image_decoder), ("video", video_decoder), ("audio", audio_decoder)):
        if path is not None:
            decoders[name] = decoders[name].model_copy(update={"path": path})
    encoder = imagebind.huge_config()
    if imagebind_path is not None:
        encoder = encoder.model_copy(update={"path": imagebind_path})
    return NextGPTConfig(
        name="nextgpt-7b",
        llm=LLMConfig(path=llm_path, architecture=dict(VICUNA_7B_ARCHITECTURE), tokenizer=llm_path),
        encoder=encoder,
        modalities=_modalities(decoders, ProjectorConfig(kind="linear"), REFERENCE_OUTPUT_PROJECTOR),
        template="vicuna_v0",
        lora=LoRAConfig(r=32, alpha=32, dropout=0.1, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
        # ids 32000/32001 as in the released embedding table; signal tokens then get ids 32002–32037.
        media_token="<media>",
        reserved_tokens=["<reserved_32001>"],
        shared_input_projector=True,
        allow_random_init=False,
    )


def get_preset(name: str, **overrides: Any) -> NextGPTConfig:
    """Build a preset config by name (KeyError lists the available presets)."""
    return PRESETS.get(name)(**overrides)


def preset_names() -> list[str]:
    return PRESETS.names()
