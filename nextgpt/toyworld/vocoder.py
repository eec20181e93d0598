"""The toy audio decoder's fixed vocoder: a ``SpeechT5HifiGan`` whose weights are *set* to invert harmonic frames.

Harmonic frames (``train_decoders.harmonic_frames``): per 50 ms hop, coefficients of the 36 harmonics of 220 Hz,
each in a column of the frame (``conv_pre`` gathers them: the log-frequency layout leaves columns between
harmonics that are not played). Synthesis is overlap-add of Hann-windowed sinusoids — a transposed convolution with
stride ``HOP`` and kernel ``2·HOP``. Done in one layer that is a ``[2·C, C, 1600]`` weight (16–66 MB); here it is done
**polyphase** in two layers that HiFi-GAN already has, 0.8 MB in all:

1. ``upsampler[0]`` (stride ``HOP / P``, kernel ``2·HOP / P``) writes the ``P`` polyphase components of the
   waveform (channel ``p`` holds samples ``t ≡ p (mod P)``) at ``16000 / P`` Hz;
2. ``upsampler[1]`` (stride and kernel ``P``) interleaves them into the waveform, twice: ``(y, -y)``, because
   HiFi-GAN applies a fixed ``leaky_relu`` (slope 0.01) before ``conv_post``, and
   ``leaky_relu(y) - leaky_relu(-y) = 1.01·y`` is linear again.

The configurable leaky ReLUs in between get slope 1 (the identity); the residual blocks have zero weights (the
identity). The output passes HiFi-GAN's final ``tanh``, which the frames' scale keeps in its near-linear range.

With a **dead zone** ``t`` (``dead_zone=True`` in the config, ``threshold`` when setting it) the same two layers
soft-threshold every coefficient first, ``sign(x)·max(|x| − t, 0)``, so that the small errors a VAE leaves on
partials that should be silent are not played: ``conv_pre`` writes ``x − t`` and ``−x − t``, the configurable
activations become ReLUs (slope 0), ``upsampler[0]`` writes each polyphase component as ``(y, −y)`` from their
difference and ``upsampler[1]`` takes ``relu(y) − relu(−y) = y`` back before interleaving.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

PHASES = 40
"""Polyphase components (divides the hop of 800 samples; 2·40 = 80 channels ≥ the 72 frame coefficients)."""


def polyphase_vocoder_config(coefficients: int, hop: int, sample_rate: int, *, dead_zone: bool = False,
                              model_in_dim: int | None = None) -> dict[str, Any]:
    """The ``SpeechT5HifiGan`` config (``{"class", "config"}`` as the decoder architectures hold it) for frames of
    ``coefficients`` synthesis coefficients laid out in ``model_in_dim`` columns (default: one column each; wider
    frames leave columns the vocoder does not read); with ``dead_zone`` the layout that soft-thresholds the
    coefficients (twice the channels, ReLU activations)."""
    model_in_dim = coefficients if model_in_dim is None else model_in_dim
    if hop % PHASES or coefficients > 2 * PHASES or model_in_dim < coefficients:
        raise ValueError(f"the polyphase vocoder needs hop % {PHASES} == 0, ≤ {2 * PHASES} coefficients and at "
                         f"least as many frame columns; got hop={hop}, coefficients={coefficients}, "
                         f"model_in_dim={model_in_dim}")
    return {
        "class": "SpeechT5HifiGan",
        "config": {
            "model_in_dim": model_in_dim,
            "sampling_rate": sample_rate,
            "upsample_initial_channel": (4 if dead_zone else 2) * PHASES,
            "upsample_rates": [hop // PHASES, PHASES],
            "upsample_kernel_sizes": [2 * hop // PHASES, PHASES],
            "resblock_kernel_sizes": [1],  # zero weights: identity residual blocks
            "resblock_dilation_sizes": [[1]],
            # the configurable activations: ReLUs for the dead zone, else the identity
            "leaky_relu_slope": 0.0 if dead_zone else 1.0,
            "normalize_before": False,
        },
    }


def set_polyphase_vocoder(vocoder: torch.nn.Module, kernels: np.ndarray, hop: int, frame_scale: float | np.ndarray,
                          threshold: float = 0.0, columns: np.ndarray | None = None) -> None:
    """Set ``vocoder`` (built from :func:`polyphase_vocoder_config`) to overlap-add ``kernels``
    (``[coefficients, 2·hop]``: the synthesis window × basis of each coefficient) of frames scaled by
    ``frame_scale`` (one factor, or one per coefficient), coefficient ``c`` read from frame column ``columns[c]``
    (default: column ``c``); a ``threshold`` > 0 (frame units, before the scale is undone) soft-thresholds every
    coefficient first and needs the ``dead_zone`` layout. Gradients off.

    Raises:
        ValueError: a threshold for a vocoder without the dead-zone layout, or the other way round; columns that
            are not one distinct frame column per coefficient.
    """
    coefficients, span = kernels.shape
    columns = np.arange(coefficients) if columns is None else np.asarray(columns)
    width = vocoder.config.model_in_dim
    if columns.shape != (coefficients,) or len(set(columns.tolist())) != coefficients or not (
            0 <= columns.min() and columns.max() < width):
        raise ValueError(f"columns must name a distinct frame column (0..{width - 1}) for each of the "
                         f"{coefficients} coefficients; got {columns.tolist()}")
    stride = hop // PHASES
    dead_zone = vocoder.config.leaky_relu_slope == 0.0
    if dead_zone != (threshold > 0):
        raise ValueError(f"threshold {threshold} does not fit this vocoder: build it with "
                         f"polyphase_vocoder_config(dead_zone={threshold > 0})")
    scale = torch.as_tensor(np.broadcast_to(np.asarray(frame_scale, dtype=np.float64), (coefficients,)).copy())
    # kernel tap k of polyphase channel p is sample PHASES·k + p of the frame's span
    polyphase = torch.from_numpy(kernels.reshape(coefficients, span // PHASES, PHASES).transpose(0, 2, 1).copy())
    slope = 0.01  # HiFi-GAN's last leaky_relu (torch's default slope)
    with torch.no_grad():
        for parameter in vocoder.parameters():
            parameter.zero_()
        first, second = vocoder.upsampler
        assert first.stride[0] == stride and second.stride[0] == PHASES, "build it with polyphase_vocoder_config"
        phases = torch.arange(PHASES)
        gather = torch.zeros(coefficients, width)  # coefficient c ← frame column columns[c]
        gather[torch.arange(coefficients), torch.from_numpy(columns).long()] = 1.0
        if dead_zone:  # channels c and C + c: relu(x − t), relu(−x − t); their difference is x soft-thresholded
            polyphase = (polyphase / scale[:, None, None]).float()  # the threshold is in frame units: unscale after
            vocoder.conv_pre.weight[:coefficients, :, 3] = gather
            vocoder.conv_pre.weight[coefficients:2 * coefficients, :, 3] = -gather
            vocoder.conv_pre.bias[:2 * coefficients] = -threshold
            first.weight[:coefficients, :PHASES] = polyphase
            first.weight[coefficients:2 * coefficients, :PHASES] = -polyphase
            first.weight[:coefficients, PHASES:2 * PHASES] = -polyphase
            first.weight[coefficients:2 * coefficients, PHASES:2 * PHASES] = polyphase
            second.weight[phases, 0, phases] = 1.0  # relu(y) − relu(−y) = y, and its negative
            second.weight[PHASES + phases, 0, phases] = -1.0
            second.weight[phases, 1, phases] = -1.0
            second.weight[PHASES + phases, 1, phases] = 1.0
        else:
            vocoder.conv_pre.weight[:coefficients, :, 3] = (gather / scale[:, None]).float()
            first.weight[:coefficients] = polyphase.float()
            second.weight[phases, 0, phases] = 1.0
            second.weight[phases, 1, phases] = -1.0
        vocoder.conv_post.weight[0, 0, 3] = 1 / (1 + slope)
        vocoder.conv_post.weight[0, 1, 3] = -1 / (1 + slope)
    vocoder.requires_grad_(False)
