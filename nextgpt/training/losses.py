"""Training losses: signal-feature distance (stages 2/3) and the optional min-SNR diffusion denoising loss.

The language-model loss is the LLM's own shifted cross-entropy on the assistant labels.
"""
from __future__ import annotations

import torch


def signal_distance(conditions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean per-token Euclidean distance (an L2 norm per token, not a squared error).

    Args:
        conditions: projected signal features ``[n, Q, D]``.
        targets: the decoder text-encoder embeddings of the captions ``[n, Q, D]``.

    Returns:
        A scalar: ``mean over n and Q of ||conditions - targets||_2``.

    Raises:
        ValueError: when the shapes differ (naming both).
    """
    if conditions.shape != targets.shape:
        raise ValueError(f"signal features {tuple(conditions.shape)} and caption targets {tuple(targets.shape)} "
                         "differ in shape; were the targets cached for another decoder?")
    return (conditions.float() - targets.float()).norm(dim=-1).mean()


def min_snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float | None,
                    prediction_type: str = "epsilon") -> torch.Tensor:
    """Per-sample loss weights of min-SNR-γ (Hang et al. 2023): ``min(SNR, γ) / SNR`` for ε-prediction,
    ``min(SNR, γ) / (SNR + 1)`` for v-prediction; ones when ``gamma`` is None."""
    if gamma is None:
        return torch.ones_like(timesteps, dtype=torch.float32)
    alpha = alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = alpha / (1 - alpha)
    clipped = torch.clamp(snr, max=gamma)
    return clipped / (snr + 1) if prediction_type == "v_prediction" else clipped / snr


def denoising_loss(unet_call: "torch.nn.Module", scheduler: object, latents: torch.Tensor,
                   conditions: torch.Tensor, gamma: float | None, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """Noise-prediction loss through a frozen UNet conditioned on the projected signal features.

    Args:
        unet_call: ``unet_call(noisy_latents, timesteps, conditions) -> prediction`` (the decoder adapts the
            conditions to its UNet: cross-attention states or a class embedding).
        scheduler: the decoder's diffusers noise scheduler (``add_noise``, ``alphas_cumprod``, ``config``).
        latents: clean latents of the ground-truth media ``[n, ...]``.
        conditions: projected signal features ``[n, Q, D]`` (gradients flow back through them).
        gamma: min-SNR γ (None: plain MSE).

    Returns:
        Scalar weighted MSE between the prediction and its target (noise, or velocity for v-prediction).
    """
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    steps = scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (latents.shape[0],), device=latents.device, generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction_type = getattr(scheduler.config, "prediction_type", "epsilon")
    target = scheduler.get_velocity(latents, noise, timesteps) if prediction_type == "v_prediction" else noise
    prediction = unet_call(noisy, timesteps, conditions)
    per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(1)
    weights = min_snr_weights(scheduler.alphas_cumprod, timesteps, gamma, prediction_type)
    return (per_sample * weights).mean()
