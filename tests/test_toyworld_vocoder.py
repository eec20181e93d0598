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


@pytest.mark.parametrize("spread", [False, True])
def test_polyphase_vocoder_is_overlap_add_synthesis(spread):
    """Frames of one column per coefficient, or coefficients spread over wider frames (the log-frequency layout):
    the other columns are not played."""
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    coefficients, hop, scale = 72, 800, 4.0
    width = 116 if spread else coefficients
    rng = np.random.default_rng(0)
    kernels = rng.normal(size=(coefficients, 2 * hop)) * np.hanning(2 * hop) / 30
    columns = np.sort(rng.choice(width, size=coefficients, replace=False)) if spread else None
    config = polyphase_vocoder_config(coefficients, hop, 16000, model_in_dim=width)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**config["config"]))
    set_polyphase_vocoder(vocoder, kernels, hop, scale, columns=columns)
    assert sum(p.numel() for p in vocoder.parameters()) < 250_000
    frames = rng.normal(size=(20, width)).astype(np.float32)
    with torch.no_grad():
        waveform = vocoder(torch.from_numpy(frames)[None]).numpy()[0]
    played = frames[:, columns] if spread else frames
    expected = np.tanh(_overlap_add(played.astype(np.float64), kernels, hop, scale))
    assert waveform.shape == (20 * hop,)
    np.testing.assert_allclose(waveform, expected, atol=2e-5)


def test_polyphase_vocoder_refuses_columns_that_do_not_fit():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    kernels = np.zeros((4, 1600))
    config = polyphase_vocoder_config(4, 800, 16000, model_in_dim=8)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**config["config"]))
    for columns in ([0, 1, 1, 2], [0, 1, 2, 8], [0, 1, 2]):
        with pytest.raises(ValueError, match=r"a distinct frame column \(0..7\) for each of the 4 coefficients"):
            set_polyphase_vocoder(vocoder, kernels, 800, 1.0, columns=np.array(columns))
    with pytest.raises(ValueError, match="at least as many frame columns"):
        polyphase_vocoder_config(8, 800, 16000, model_in_dim=4)


def test_polyphase_vocoder_rejects_a_hop_it_cannot_split():
    with pytest.raises(ValueError, match="hop % 40"):
        polyphase_vocoder_config(72, 810, 16000)
