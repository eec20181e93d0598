"""Ground-truth renderings of toy-world meanings as numpy arrays: images, tones and moving-shape videos.

With ``rng=None`` a rendering is canonical (the same meaning gives the same array); with a generator it is
jittered a little (position, size, colour, phase, loudness) so datasets and classifiers see variety.
"""
from __future__ import annotations

import numpy as np

from .world import Meaning

IMAGE_SIZE = 32
SAMPLE_RATE = 16_000
AUDIO_SECONDS = 1.0
VIDEO_FRAMES = 8
VIDEO_FPS = 8

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 235), "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
}
RADIUS = {"small": 5.0, "large": 9.0}  # at 32 px; scaled with the image size
POSITIONS = {"centre": (0.0, 0.0), "left": (-6.0, 0.0), "right": (6.0, 0.0), "top": (0.0, -6.0),
             "bottom": (0.0, 6.0)}
PITCH_HZ = {"low": 220.0, "middle": 440.0, "high": 880.0}
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
BEEP_SECONDS = 0.125  # beeping: on and off in turn


def shape_mask(shape: str, size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean ``[size, size]`` mask of a shape centred at ``centre`` (x, y in pixels) with ``radius``."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = xs - centre[0], ys - centre[1]
    if shape == "circle":
        return dx ** 2 + dy ** 2 <= radius ** 2
    if shape == "square":
        return (np.abs(dx) <= 0.85 * radius) & (np.abs(dy) <= 0.85 * radius)
    if shape == "triangle":  # apex up, base 0.8 r below the centre
        return (dy >= -radius) & (dy <= 0.8 * radius) & (np.abs(dx) <= (dy + radius) / 1.8)
    if shape == "cross":
        arm = 0.32 * radius
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= radius))
    raise KeyError(f"no renderer for shape {shape!r}; available: ['circle', 'square', 'triangle', 'cross']")


def _colour(name: str, rng: np.random.Generator | None) -> np.ndarray:
    colour = np.array(COLOURS[name], dtype=np.float32)
    if rng is not None:
        colour = colour + rng.uniform(-15, 15, size=3)
    return np.clip(colour, 0, 255)


def _paint(frame: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    frame[mask] = colour.astype(np.uint8)


def render_image(meaning: Meaning, rng: np.random.Generator | None = None, size: int = IMAGE_SIZE) -> np.ndarray:
    """``[size, size, 3]`` uint8: the shape in its colour, size and position on black."""
    scale = size / IMAGE_SIZE
    offset = np.array(POSITIONS[meaning["position"]]) * scale
    radius = RADIUS[meaning["size"]] * scale
    if rng is not None:
        offset = offset + rng.uniform(-1.5, 1.5, size=2) * scale
        radius = radius * rng.uniform(0.9, 1.1)
    image = np.zeros((size, size, 3), dtype=np.uint8)
    centre = (size / 2 + offset[0], size / 2 + offset[1])
    _paint(image, shape_mask(meaning["shape"], size, centre, radius), _colour(meaning["colour"], rng))
    return image


def _band_limited(timbre: str, cycles: np.ndarray, frequency: float, rate: int) -> np.ndarray:
    """A sine, square or sawtooth wave summed from its harmonics below Nyquist (no aliasing), peak about 1.

    One period is synthesised into a table and read at ``cycles`` (fast: the sum runs over the table only)."""
    if timbre not in ("sine", "square", "sawtooth"):
        raise KeyError(f"no renderer for timbre {timbre!r}; available: ['sine', 'square', 'sawtooth']")
    grid = np.arange(_TABLE + 1) / _TABLE
    table = np.zeros_like(grid)
    for k in range(1, (1 if timbre == "sine" else int(rate / 2 / frequency)) + 1):
        if timbre == "square" and k % 2 == 0:
            continue
        sign = 1.0 if timbre != "sawtooth" or k % 2 else -1.0
        table += sign * np.sin(2 * np.pi * k * grid) / k
    scale = {"sine": 1.0, "square": 4 / np.pi, "sawtooth": 2 / np.pi}[timbre]
    return np.interp(cycles % 1.0, grid, table) * scale


_TABLE = 4096


def render_audio(meaning: Meaning, rng: np.random.Generator | None = None,
                 seconds: float = AUDIO_SECONDS, rate: int = SAMPLE_RATE, fade_seconds: float = 0.0) -> np.ndarray:
    """``[rate * seconds]`` float32 in [-1, 1]: a tone of the pitch and timbre, steady or beeping.

    ``fade_seconds`` > 0 ramps every beep's on/off edge linearly over that time (the world's renderings switch at
    once: 0); the judges train on such fades too, so that they read a beep's timbre from its partials rather than
    from the splatter of a hard edge."""
    if not 0 <= fade_seconds < BEEP_SECONDS:
        raise ValueError(f"fade_seconds must be in [0, {BEEP_SECONDS}) (a beep is {BEEP_SECONDS} s long), "
                         f"got {fade_seconds}")
    frequency = PITCH_HZ[meaning["pitch"]] * (rng.uniform(0.97, 1.03) if rng is not None else 1.0)
    phase = rng.uniform(0, 1) if rng is not None else 0.0
    loudness = rng.uniform(0.3, 0.6) if rng is not None else 0.5
    t = np.arange(int(rate * seconds)) / rate
    cycles = frequency * t + phase
    wave = _band_limited(meaning["timbre"], cycles, frequency, rate)
    envelope = np.ones_like(t)
    if meaning["rhythm"] == "beeping":
        start = rng.uniform(0, BEEP_SECONDS) if rng is not None else 0.0
        envelope = (((t + start) // BEEP_SECONDS) % 2 == 0).astype(np.float64)
        if fade_seconds > 0:  # a moving average turns each switch into a linear ramp of that length
            width = max(1, int(round(fade_seconds * rate)))
            envelope = np.convolve(np.pad(envelope, width, mode="edge"), np.ones(width) / width, "same")[width:-width]
    ramp = int(0.005 * rate)  # 5 ms fades: no clicks at the ends
    envelope[:ramp] *= np.linspace(0, 1, ramp)
    envelope[-ramp:] *= np.linspace(1, 0, ramp)
    return (loudness * wave * envelope).astype(np.float32)


def render_video(meaning: Meaning, rng: np.random.Generator | None = None, frames: int = VIDEO_FRAMES,
                 size: int = IMAGE_SIZE) -> np.ndarray:
    """``[frames, size, size, 3]`` uint8: a small shape crossing the frame in its direction."""
    scale = size / IMAGE_SIZE
    direction = np.array(DIRECTIONS[meaning["direction"]])
    across = np.array([direction[1], direction[0]])  # perpendicular offset
    shift = rng.uniform(-3, 3) if rng is not None else 0.0
    radius = RADIUS["small"] * scale * (rng.uniform(0.9, 1.1) if rng is not None else 1.0)
    colour = _colour(meaning["colour"], rng)
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for index, progress in enumerate(np.linspace(-8, 8, frames) * scale):
        centre = size / 2 + direction * progress + across * shift * scale
        _paint(video[index], shape_mask(meaning["shape"], size, (centre[0], centre[1]), radius), colour)
    return video


RENDERERS = {"image": render_image, "audio": render_audio, "video": render_video}


def render(meaning: Meaning, rng: np.random.Generator | None = None) -> np.ndarray:
    """The rendering of ``meaning`` in its own modality (see the ``render_*`` functions for shapes)."""
    return RENDERERS[meaning.modality](meaning, rng)
