"""Write decoded media to files that browsers play: PNG images, 16-bit PCM WAV audio, H.264/yuv420p MP4 video."""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .base import DecodedMedia

MIN_VIDEO_SIDE = 64
"""Tiny test videos (e.g. 32×32) are enlarged by an integer nearest-neighbour factor up to this size when written:
some H.264 decoders and browser players reject frames smaller than a few macroblocks."""


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] → uint8, rounded as diffusers' ``numpy_to_pil`` does; uint8 input is returned as is."""
    if array.dtype == np.uint8:
        return array
    return (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)


def claim_path(folder: str | Path, stem: str, suffix: str, *, bare_first: bool = False) -> Path:
    """Create and return an empty file ``folder/stem-N.suffix`` for the first free ``N`` ≥ 1 (``folder/stem.suffix``
    first when ``bare_first``). Created exclusively, so concurrent writers never share a name and no file is
    overwritten; the names stay short (``image-3.png``) for people and for a planner that copies them.

    Raises:
        FileExistsError: when 100,000 names are taken.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if bare_first:
        try:
            with open(folder / f"{stem}{suffix}", "xb"):
                return folder / f"{stem}{suffix}"
        except FileExistsError:
            pass
    taken = sum(1 for _ in folder.glob(f"{stem}-*{suffix}"))  # a good first guess; the loop checks each name
    for number in range(max(1, taken) + (1 if bare_first else 0), 100_000):
        target = folder / f"{stem}-{number}{suffix}"
        try:
            with open(target, "xb"):
                return target
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder} already holds 100,000 files named {stem}-N{suffix}; use another output folder")


def _prepare_path(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_image(pixels: np.ndarray, path: str | Path) -> Path:
    """Write an ``[H, W, 3]`` image (uint8, or float in [0, 1]) as PNG.

    Raises:
        ValueError: for another shape.
    """
    from PIL import Image

    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"an image must be [H, W, 3], got shape {pixels.shape}")
    path = _prepare_path(path)
    Image.fromarray(to_uint8(pixels), mode="RGB").save(path, format="PNG")
    return path


def write_audio(samples: np.ndarray, sample_rate: int, path: str | Path) -> Path:
    """Write float audio ``[samples]`` (or ``[samples, channels]``) in [-1, 1] as 16-bit PCM WAV.

    Raises:
        ValueError: for another shape or a non-positive sample rate.
    """
    import soundfile

    if samples.ndim not in (1, 2) or samples.shape[0] == 0:
        raise ValueError(f"audio must be [samples] or [samples, channels] with samples > 0, got shape {samples.shape}")
    if not sample_rate or sample_rate <= 0:
        raise ValueError(f"audio needs a positive sample rate, got {sample_rate!r}")
    path = _prepare_path(path)
    # libsndfile wraps out-of-range floats around when converting to integers: clip first
    clipped = np.clip(samples, -1.0, 1.0).astype(np.float32)
    soundfile.write(path, clipped, int(sample_rate), subtype="PCM_16", format="WAV")
    return path


def _playable_frames(frames: np.ndarray, min_side: int) -> np.ndarray:
    """Enlarge small frames by an integer nearest-neighbour factor, then pad to even sizes (yuv420p needs them)."""
    height, width = frames.shape[1:3]
    factor = math.ceil(min_side / min(height, width)) if min(height, width) < min_side else 1
    if factor > 1:
        frames = frames.repeat(factor, axis=1).repeat(factor, axis=2)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def write_video(frames: np.ndarray, fps: float, path: str | Path, *, min_side: int = MIN_VIDEO_SIDE) -> Path:
    """Write ``[F, H, W, 3]`` frames (uint8, or float in [0, 1]) as an H.264 (libx264, yuv420p) MP4 with the index
    at the front (``+faststart``), which browsers play while downloading.

    Raises:
        ValueError: for another shape or a non-positive fps.
    """
    import av

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"a video must be [F, H, W, 3] with F > 0, got shape {frames.shape}")
    if not fps or fps <= 0:
        raise ValueError(f"a video needs a positive fps, got {fps!r}")
    frames = _playable_frames(to_uint8(frames), min_side)
    path = _prepare_path(path)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        # byte-identical files from the same frames in every process (a dataset regenerated from a seed, features
        # cached by file hash): x264's SIMD code made ~1 % of small clips differ between processes, and encode()'s
        # implicit pixel conversion ~5 % (frames are converted below instead). Without SIMD a 24-frame 576×320
        # clip takes ≈ 0.6 s to encode instead of ≈ 0.35 s.
        stream.options = {"crf": "18", "x264-params": "asm=0"}
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(format="yuv420p")
            container.mux(stream.encode(picture))
        container.mux(stream.encode())  # flush delayed frames
    return path


def _write_image_media(media: "DecodedMedia", path: Path) -> Path:
    return write_image(media.data, path)


def _write_audio_media(media: "DecodedMedia", path: Path) -> Path:
    return write_audio(media.data, media.rate, path)


def _write_video_media(media: "DecodedMedia", path: Path) -> Path:
    return write_video(media.data, media.rate, path)


WRITERS: dict[str, Callable[["DecodedMedia", Path], Path]] = {
    ".png": _write_image_media,
    ".wav": _write_audio_media,
    ".mp4": _write_video_media,
}


def write_media(media: "DecodedMedia", path: str | Path) -> Path:
    """Write ``media`` with the writer chosen by the file extension of ``path``; returns the path.

    Raises:
        ValueError: for an unsupported extension (listing the supported ones) or unsuitable data.
    """
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ValueError(f"cannot write {media.modality!r} media to {path}: supported extensions are {sorted(WRITERS)}")
    return writer(media, path)
