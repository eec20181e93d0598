"""The toy audio decoder's polyphase vocoder is exactly overlap-add synthesis, in 0.2 M parameters."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nextgpt.toyworld.vocoder import polyphase_vocoder_config, set_polyphase_vocoder


def _overlap_add(frames: np.ndarray, kernels: np.ndarray, hop: int, scale: float) -> np.ndarray:
    """Reference synthesis: frame m's windowed basis starts at m·hop − hop/2."""
    out = np.zeros(len(frames) * hop + 2 * hop)
    for m, frame in enumerate(frames / scale):
        out[m * hop:m * hop + 2 * hop] += frame @ kernels
    return out[hop // 2:hop // 2 + len(frames) * hop]


def test_polyphase_vocoder_is_overlap_add_synthesis():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    harmonics, hop, scale = 36, 800, 4.0
    rng = np.random.default_rng(0)
    kernels = rng.normal(size=(2 * harmonics, 2 * hop)) * np.hanning(2 * hop) / 30
    config = polyphase_vocoder_config(harmonics, hop, 16000)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**config["config"]))
    set_polyphase_vocoder(vocoder, kernels, hop, scale)
    assert sum(p.numel() for p in vocoder.parameters()) < 250_000
    frames = rng.normal(size=(20, 2 * harmonics)).astype(np.float32)
    with torch.no_grad():
        waveform = vocoder(torch.from_numpy(frames)[None]).numpy()[0]
    expected = np.tanh(_overlap_add(frames.astype(np.float64), kernels, hop, scale))
    assert waveform.shape == (20 * hop,)
    np.testing.assert_allclose(waveform, expected, atol=2e-5)


def test_polyphase_vocoder_rejects_a_hop_it_cannot_split():
    with pytest.raises(ValueError, match="hop % 40"):
        polyphase_vocoder_config(36, 810, 16000)
