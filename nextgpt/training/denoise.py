"""The optional diffusion denoising loss: ground-truth output media → latents of the frozen decoder VAE, noise at
a random timestep, and the frozen UNet's noise prediction conditioned on the projected signal features
(min-SNR weighted). Off by default (NExT-GPT's legacy recipe has none; its refactor added it).

Supported decoders: those whose pipeline has an image VAE (3 input channels) and a 2-D UNet with
cross-attention (Stable Diffusion). Others raise a ``ValueError`` that names the modality, so a config that
enables the loss for data with such outputs fails before training goes far.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .losses import denoising_loss


class Denoiser:
    """Per-modality latents and UNet calls for the denoising loss.

    Args:
        decoders: modality → ``nextgpt.decoders.Decoder``.
        snr_gamma: min-SNR γ (None: plain MSE).
    """

    def __init__(self, decoders: dict[str, Any], snr_gamma: float | None) -> None:
        self.decoders = decoders
        self.snr_gamma = snr_gamma
        self._latents: dict[str, torch.Tensor] = {}
        self._frozen: set[str] = set()

    def check(self, modality: str) -> Any:
        """The decoder's pipeline, if this loss supports it.

        Raises:
            ValueError: naming the modality and what its decoder lacks.
        """
        pipeline = self.decoders[modality].pipeline
        unet, vae = getattr(pipeline, "unet", None), getattr(pipeline, "vae", None)
        if (unet is None or vae is None or type(unet).__name__ != "UNet2DConditionModel"
                or vae.config.in_channels != 3 or unet.config.cross_attention_dim is None):
            raise ValueError(f"loss.denoise is enabled but the {modality!r} decoder ({type(pipeline).__name__}) is "
                             "not an image latent-diffusion pipeline with cross-attention; the denoising loss "
                             "supports Stable-Diffusion-style decoders — disable it or remove ground-truth "
                             f"{modality} paths from the data")
        if modality not in self._frozen:  # frozen: gradients flow through the UNet to the conditions only
            unet.requires_grad_(False).eval()
            vae.requires_grad_(False).eval()
            self._frozen.add(modality)
        return pipeline

    @torch.no_grad()
    def latents(self, modality: str, paths: Sequence[str]) -> torch.Tensor:
        """VAE latents (distribution means × scaling factor) of image files, memoised per path: ``[n, C, h, w]``."""
        from nextgpt.encoders import load_image

        pipeline = self.check(modality)
        decoder = self.decoders[modality]
        defaults = decoder.config.defaults
        scale = 2 ** (len(pipeline.vae.config.block_out_channels) - 1)
        height = defaults.get("height", pipeline.unet.config.sample_size * scale)
        width = defaults.get("width", pipeline.unet.config.sample_size * scale)
        out = []
        for path in paths:
            key = f"{modality}|{path}"
            if key not in self._latents:
                image = load_image(path).resize((width, height))
                pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
                vae = pipeline.vae
                encoded = vae.encode(pixels[None].to(vae.device, vae.dtype)).latent_dist.mean
                self._latents[key] = (encoded * vae.config.scaling_factor)[0].cpu()
            out.append(self._latents[key])
        return torch.stack(out)

    def loss(self, modality: str, paths: Sequence[str], conditions: torch.Tensor) -> torch.Tensor:
        """Min-SNR denoising loss of ``conditions`` ``[n, Q, D]`` for the ground-truth files ``paths``."""
        pipeline = self.check(modality)
        decoder = self.decoders[modality]
        latents = self.latents(modality, paths).to(pipeline.unet.device, pipeline.unet.dtype)

        def unet_call(noisy: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            return pipeline.unet(noisy, timesteps, encoder_hidden_states=decoder.prepare_conditions(cond)).sample

        return denoising_loss(unet_call, pipeline.scheduler, latents, conditions, self.snr_gamma)
