"""Media arrays of any size → the fixed classifier inputs: images and videos at 32×32, audio as spectrum + envelope.

Generated media come at the decoder's size, rate and length; these functions bring them (and the ground-truth
renderings) to one shape so the attribute classifiers judge both the same way.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .render import IMAGE_SIZE, SAMPLE_RATE, VIDEO_FRAMES

SPECTRUM_BINS = 200  # 0–8 kHz in 40 Hz bins
ENVELOPE_FRAMES = 50  # 20 ms frames over 1 s
HARMONICS = 12  # levels of harmonics 2..13 relative to the fundamental: the timbre, whatever the pitch
AUDIO_FEATURES = SPECTRUM_BINS + ENVELOPE_FRAMES + HARMONICS


def _pixels(frame: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 or float in [0, 1] → ``[3, 32, 32]`` float32 in [0, 1]."""
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"an image must be [H, W, 3], got shape {frame.shape}")
    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0, 1) * 255).round().astype(np.uint8)
    if frame.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        frame = np.asarray(Image.fromarray(frame).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
    return frame.transpose(2, 0, 1).astype(np.float32) / 255.0


def image_features(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` → ``[3, 32, 32]``."""
    return _pixels(image)


def video_features(video: np.ndarray) -> np.ndarray:
    """``[F, H, W, 3]`` → ``[8 * 3, 32, 32]`` (8 frames picked evenly)."""
    if video.ndim != 4 or video.shape[0] == 0:
        raise ValueError(f"a video must be [F, H, W, 3] with F > 0, got shape {video.shape}")
    indices = np.linspace(0, video.shape[0] - 1, VIDEO_FRAMES).round().astype(int)
    return np.concatenate([_pixels(video[i]) for i in indices], axis=0)


def audio_features(samples: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """``[samples]`` (or ``[samples, channels]``) at ``rate`` → ``[262]``: the log spectrum of the first second
    (relative to its peak), its loudness envelope (relative to its peak) and its harmonic levels."""
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1 or samples.size == 0 or not rate or rate <= 0:
        raise ValueError(f"audio must be [samples] with a positive rate, got shape {samples.shape}, rate {rate}")
    samples = samples.astype(np.float64)
    if rate != SAMPLE_RATE:
        times = np.arange(int(samples.size * SAMPLE_RATE / rate)) / SAMPLE_RATE
        samples = np.interp(times, np.arange(samples.size) / rate, samples)
    samples = np.pad(samples[:SAMPLE_RATE], (0, max(0, SAMPLE_RATE - samples.size)))
    full = np.abs(np.fft.rfft(samples))  # 1 Hz per bin (one second)
    spectrum = full[:SAMPLE_RATE // 2].reshape(SPECTRUM_BINS, -1).max(axis=1)
    log_spectrum = np.log10(spectrum + 1e-6) - np.log10(spectrum.max() + 1e-6)
    envelope = np.sqrt((samples.reshape(ENVELOPE_FRAMES, -1) ** 2).mean(axis=1))
    envelope = envelope / (envelope.max() + 1e-8)
    return np.concatenate([np.maximum(log_spectrum, -6.0) / 6.0, envelope, _harmonics(full)]).astype(np.float32)


def _harmonics(spectrum: np.ndarray) -> np.ndarray:
    """Log level of harmonics 2..13 of the strongest peak (max within ±3 %) relative to it, in [-1, 0]."""
    f0 = max(int(spectrum[20:].argmax()) + 20, 1)  # ignore DC and rumble below 20 Hz
    base = spectrum[f0] + 1e-8
    levels = []
    for k in range(2, HARMONICS + 2):
        centre = k * f0
        if centre >= spectrum.size:
            levels.append(-1.0)
            continue
        width = max(1, int(0.03 * centre))
        peak = spectrum[max(0, centre - width):centre + width + 1].max()
        levels.append(max(np.log10(peak / base + 1e-6), -4.0) / 4.0)
    return np.array(levels)


def features(modality: str, data: np.ndarray, rate: int | None = None) -> np.ndarray:
    """The classifier input of one item of ``modality`` (``rate``: audio sample rate)."""
    if modality == "image":
        return image_features(data)
    if modality == "video":
        return video_features(data)
    if modality == "audio":
        return audio_features(data, rate or SAMPLE_RATE)
    raise KeyError(f"no classifier features for modality {modality!r}; available: ['image', 'audio', 'video']")
