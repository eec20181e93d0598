"""Component configs of the decoders: the real checkpoints of the ``nextgpt-7b`` preset and tiny test versions.

Real: copied from each checkpoint's component ``config.json`` where it could be read (see the notes on each constant);
they let the real pipelines be built on the ``meta`` device to count parameters without downloading anything.

Tiny: every component of each pipeline at hidden 32–64 and 1–2 layers, keeping the real structure (block types,
schedulers, tokenizer families, pooled CLAP conditioning for audio) so tests exercise the real code paths; each builds
offline in well under a second and a 2-step generation takes (milli)seconds on a CPU.
"""
from __future__ import annotations

from typing import Any

TINY_HIDDEN = 32
"""Text-encoder width of the tiny decoders: their ``condition_dim``."""

TINY_CLIP_MERGES = 2000
"""BPE merges of the tiny CLIP vocabulary (514 + 2000 = 2514 tokens)."""

SD_SCHEDULER = {
    "class": "PNDMScheduler",
    "config": {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "prediction_type": "epsilon",
    },
}
"""runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json (checked)."""

VIDEO_SCHEDULER = {
    "class": "DDIMScheduler",
    "config": {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "epsilon",
    },
}
"""DDIM as in damo-vilab/text-to-video-ms-1.7b's model_index.json; the beta values are SD's and are NOT verified
against cerspense/zeroscope_v2_576w's scheduler_config.json (schedulers hold no weights; loading uses the file)."""

AUDIOLDM_SCHEDULER = {
    "class": "DDIMScheduler",
    "config": {
        "num_train_timesteps": 1000,
        "beta_start": 0.0015,
        "beta_end": 0.0195,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "epsilon",
    },
}
"""What diffusers' AudioLDM conversion script builds (original linear_start/linear_end)."""


def clip_text_components(
    *,
    hidden_size: int = TINY_HIDDEN,
    condition_tokens: int = 77,
    pad_token: str = "<|endoftext|>",
    hidden_act: str = "quick_gelu",
) -> dict[str, Any]:
    """A tiny CLIP text encoder and its tokenizer (a prefix of CLIP's real BPE merges)."""
    vocab_size = 2 * 256 + TINY_CLIP_MERGES + 2
    return {
        "tokenizer": {
            "class": "CLIPTokenizer",
            "tokenizer": {
                "source": "clip-bpe",
                "num_merges": TINY_CLIP_MERGES,
                "model_max_length": condition_tokens,
                "pad_token": pad_token,
            },
        },
        "text_encoder": {
            "class": "CLIPTextModel",
            "config": {
                "vocab_size": vocab_size,
                "hidden_size": hidden_size,
                "intermediate_size": 2 * hidden_size,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "max_position_embeddings": condition_tokens,
                "hidden_act": hidden_act,
                "projection_dim": hidden_size,
                "bos_token_id": vocab_size - 2,  # <|startoftext|>
                "eos_token_id": vocab_size - 1,  # <|endoftext|>
                "pad_token_id": vocab_size - 1 if pad_token == "<|endoftext|>" else 0,  # "!" is byte 33, id 0
            },
        },
    }


def tiny_vae(in_channels: int = 3, latent_channels: int = 4) -> dict[str, Any]:
    """A 2-level AutoencoderKL (downsampling ×2)."""
    return {
        "class": "AutoencoderKL",
        "config": {
            "in_channels": in_channels,
            "out_channels": in_channels,
            "block_out_channels": [32, 64],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
            "latent_channels": latent_channels,
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "sample_size": 32,
        },
    }


def tiny_stable_diffusion_architecture(condition_tokens: int = 77) -> dict[str, Any]:
    """StableDiffusionPipeline components: UNet2D with cross-attention on ``[B, condition_tokens, 32]``."""
    return {
        "unet": {
            "class": "UNet2DConditionModel",
            "config": {
                "sample_size": 16,
                "in_channels": 4,
                "out_channels": 4,
                "block_out_channels": [32, 64],
                "layers_per_block": 1,
                "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
                "cross_attention_dim": TINY_HIDDEN,
                "attention_head_dim": 2,
                "norm_num_groups": 8,
            },
        },
        "vae": tiny_vae(),
        **clip_text_components(condition_tokens=condition_tokens),
        "scheduler": SD_SCHEDULER,
    }


def tiny_text_to_video_architecture(condition_tokens: int = 77) -> dict[str, Any]:
    """TextToVideoSDPipeline components: UNet3D, an image VAE, an OpenCLIP-style (gelu, "!" padding) text encoder."""
    return {
        "unet": {
            "class": "UNet3DConditionModel",
            "config": {
                "sample_size": 16,
                "in_channels": 4,
                "out_channels": 4,
                "block_out_channels": [32, 64],
                "layers_per_block": 1,
                "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"],
                "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"],
                "cross_attention_dim": TINY_HIDDEN,
                "attention_head_dim": 8,
                "norm_num_groups": 8,
            },
        },
        "vae": tiny_vae(),
        **clip_text_components(condition_tokens=condition_tokens, pad_token="!", hidden_act="gelu"),
        "scheduler": VIDEO_SCHEDULER,
    }


def tiny_audioldm_architecture(tokenizer_max_length: int = 16) -> dict[str, Any]:
    """AudioLDMPipeline components: CLAP text encoder with a 32-d projection (the pooled condition), a UNet2D
    conditioned through its class embedding, a 1-channel mel VAE and a HiFi-GAN vocoder at 16 kHz."""
    return {
        "unet": {
            "class": "UNet2DConditionModel",
            "config": {
                "sample_size": 16,
                "in_channels": 8,
                "out_channels": 8,
                "block_out_channels": [32, 64],
                "layers_per_block": 1,
                "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
                "cross_attention_dim": [32, 64],
                "attention_head_dim": 2,
                "class_embed_type": "simple_projection",
                "projection_class_embeddings_input_dim": TINY_HIDDEN,
                "class_embeddings_concat": True,
                "norm_num_groups": 8,
            },
        },
        "vae": tiny_vae(in_channels=1, latent_channels=8),
        "tokenizer": {
            "class": "RobertaTokenizer",
            "tokenizer": {"source": "builtin:tiny-roberta", "model_max_length": tokenizer_max_length},
        },
        "text_encoder": {
            "class": "ClapTextModelWithProjection",
            "config": {
                "vocab_size": 400,
                "hidden_size": TINY_HIDDEN,
                "intermediate_size": 2 * TINY_HIDDEN,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                # AudioLDM pads its negative prompt to projection_dim tokens (+2 RoBERTa position offset)
                "max_position_embeddings": max(tokenizer_max_length, TINY_HIDDEN) + 2,
                "type_vocab_size": 1,
                "projection_dim": TINY_HIDDEN,
                "pad_token_id": 1,
                "bos_token_id": 0,
                "eos_token_id": 2,
            },
        },
        "vocoder": {
            "class": "SpeechT5HifiGan",
            "config": {
                "model_in_dim": 16,  # mel bins; divisible by the VAE's ×2 downsampling
                "sampling_rate": 16000,
                "upsample_initial_channel": 32,
                "upsample_rates": [5, 4, 2, 2, 2],  # 160 samples per mel frame, as in the real vocoder
                "upsample_kernel_sizes": [16, 16, 8, 4, 4],
                "resblock_kernel_sizes": [3, 7],
                "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
                "normalize_before": False,
                # HiFi-GAN's default init (0.01) shrinks a random 5-stage vocoder's output to ~1e-10, which
                # 16-bit WAV stores as silence; 0.2 keeps untrained output audible without clipping.
                "initializer_range": 0.2,
            },
        },
        "scheduler": AUDIOLDM_SCHEDULER,
    }


# ---- real checkpoints -------------------------------------------------------------------------------------
_SD_VAE_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

STABLE_DIFFUSION_V1_5 = {
    "unet": {
        "class": "UNet2DConditionModel",
        "config": {
            "act_fn": "silu",
            "attention_head_dim": 8,
            "block_out_channels": [320, 640, 1280, 1280],
            "center_input_sample": False,
            "cross_attention_dim": 768,
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "downsample_padding": 1,
            "flip_sin_to_cos": True,
            "freq_shift": 0,
            "in_channels": 4,
            "layers_per_block": 2,
            "mid_block_scale_factor": 1,
            "mid_block_type": "UNetMidBlock2DCrossAttn",
            "norm_eps": 1e-05,
            "norm_num_groups": 32,
            "out_channels": 4,
            "sample_size": 64,
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "use_linear_projection": False,
        },
    },
    "vae": {"class": "AutoencoderKL", "config": _SD_VAE_CONFIG},
    "text_encoder": {  # openai/clip-vit-large-patch14 text tower
        "class": "CLIPTextModel",
        "config": {
            "vocab_size": 49408,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-05,
            "projection_dim": 768,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "pad_token_id": 1,
        },
    },
    "tokenizer": {
        "class": "CLIPTokenizer",
        "tokenizer": {"source": "clip-bpe", "num_merges": None, "model_max_length": 77, "pad_token": "<|endoftext|>"},
    },
    "scheduler": SD_SCHEDULER,
}
"""runwayml/stable-diffusion-v1-5: unet, vae, text_encoder and scheduler configs checked against the repository's
files. The safety checker is not part of the architecture (it is loaded with the weights when present)."""

ZEROSCOPE_V2_576W = {
    "unet": {
        "class": "UNet3DConditionModel",
        "config": {
            "act_fn": "silu",
            "attention_head_dim": 64,
            "block_out_channels": [320, 640, 1280, 1280],
            "cross_attention_dim": 1024,
            "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
            "downsample_padding": 1,
            "in_channels": 4,
            "layers_per_block": 2,
            "mid_block_scale_factor": 1,
            "norm_eps": 1e-05,
            "norm_num_groups": 32,
            "out_channels": 4,
            "sample_size": 32,
            "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
        },
    },
    "vae": {"class": "AutoencoderKL", "config": _SD_VAE_CONFIG},
    "text_encoder": {  # OpenCLIP ViT-H/14 text tower without its last layer (SD-2 style)
        "class": "CLIPTextModel",
        "config": {
            "vocab_size": 49408,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 23,
            "num_attention_heads": 16,
            "max_position_embeddings": 77,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-05,
            "projection_dim": 512,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "pad_token_id": 1,
        },
    },
    "tokenizer": {
        "class": "CLIPTokenizer",
        "tokenizer": {"source": "clip-bpe", "num_merges": None, "model_max_length": 77, "pad_token": "!"},
    },
    "scheduler": VIDEO_SCHEDULER,
}
"""cerspense/zeroscope_v2_576w, a fine-tune of damo-vilab/text-to-video-ms-1.7b. The unet, vae and text_encoder
configs were checked against text-to-video-ms-1.7b's files; that zeroscope keeps them unchanged (it loads into the
same pipeline and UNet3DConditionModel) and pads with "!" (SD-2's OpenCLIP tokenizer) was NOT verified here."""

AUDIOLDM_L_FULL = {
    "unet": {
        "class": "UNet2DConditionModel",
        "config": {
            "act_fn": "silu",
            "attention_head_dim": 8,
            "block_out_channels": [256, 512, 768, 1280],
            "class_embed_type": "simple_projection",
            "class_embeddings_concat": True,
            "cross_attention_dim": [256, 512, 768, 1280],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "downsample_padding": 1,
            "flip_sin_to_cos": True,
            "freq_shift": 0,
            "in_channels": 8,
            "layers_per_block": 2,
            "mid_block_scale_factor": 1,
            "mid_block_type": "UNetMidBlock2DCrossAttn",
            "norm_eps": 1e-05,
            "norm_num_groups": 32,
            "out_channels": 8,
            "projection_class_embeddings_input_dim": 512,
            "sample_size": 128,
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "use_linear_projection": False,
        },
    },
    "vae": {
        "class": "AutoencoderKL",
        "config": {
            "act_fn": "silu",
            "block_out_channels": [128, 256, 512],
            "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3,
            "in_channels": 1,
            "out_channels": 1,
            "latent_channels": 8,
            "layers_per_block": 2,
            "norm_num_groups": 32,
            "sample_size": 512,
            "scaling_factor": 0.9392935633659363,
        },
    },
    "text_encoder": {  # laion/clap-htsat-unfused text tower: RoBERTa-base + 768→512→512 projection
        "class": "ClapTextModelWithProjection",
        "config": {
            "vocab_size": 50265,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 514,
            "type_vocab_size": 1,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-12,
            "projection_dim": 512,
            "projection_hidden_act": "relu",
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
        },
    },
    "vocoder": {
        "class": "SpeechT5HifiGan",
        "config": {
            "model_in_dim": 64,
            "sampling_rate": 16000,
            "upsample_initial_channel": 1024,
            "upsample_rates": [5, 4, 2, 2, 2],
            "upsample_kernel_sizes": [16, 16, 8, 4, 4],
            "resblock_kernel_sizes": [3, 7, 11],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            "normalize_before": False,
        },
    },
    # RoBERTa-base's 50k BPE cannot ship here: the real tokenizer comes from the checkpoint (or the hub)
    "tokenizer": {
        "class": "RobertaTokenizer",
        "tokenizer": {"source": "pretrained", "path": "cvssp/audioldm-l-full", "subfolder": "tokenizer"},
    },
    "scheduler": AUDIOLDM_SCHEDULER,
}
"""cvssp/audioldm-l-full. Its own config files could not be read here. The UNet is audioldm-s-full-v2's checked
config with the channels the model card gives for L (UNet dim 256 instead of 128, ×[1, 2, 3, 5]); VAE (incl. the
learnt scaling_factor, which is s-full-v2's), vocoder and scheduler are the s-full-v2 / conversion-script values,
which the card says the L checkpoint shares except for the UNet. The total parameter count (975M on the card) is the
check that the UNet is right; the exact VAE scaling_factor of L is NOT verified (loading uses the file)."""
