"""Loading untrusted media under ``MediaLimits``: images, audio, video and text (reliability.md items 21–24).

Every loader validates at the boundary and raises :class:`MediaError` (a ``ValueError``) whose message names
the item, the problem, the limit or value involved and what to do. Nothing here trusts a header, a file name
or an extension:

- **Images** are identified from their bytes with only the allowed Pillow plugins; the pixel count is checked
  from the header *before* decoding against ``MediaLimits.max_image_pixels`` (not Pillow's global
  ``Image.MAX_IMAGE_PIXELS``), and Pillow's own decompression-bomb warning is turned into an error inside
  ``warnings.catch_warnings()`` for the duration of the call. (Before Python 3.14 that context manager is not
  thread-safe; at worst the "error" filter for that one warning outlives the call, and our own pixel check
  rejects the same images anyway.)
- **Audio** is read with soundfile in blocks; the duration limit is applied to frames actually decoded, and a
  WAV header that claims more audio than the file holds (the "10 hours over a few bytes" trick) is rejected.
- **Video** is read from local files only, with a container allow-list handed to FFmpeg; frame count,
  duration and resolution are measured from the packets and decoded frames, and only the frames the caller
  selects are kept in memory.
- **Text** has a length cap; ``bytes`` must be valid UTF-8 (invalid bytes are an error, not silently
  replaced, so that what the model sees is what the user sent).

The limits always come from the server's ``MediaLimits`` (``EncoderConfig.limits``); no loader accepts a
per-request override.
"""
from __future__ import annotations

import bisect
import io
import logging
import math
import os
import re
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nextgpt.config import MediaLimits

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_SAMPLE_RATE_RANGE",
    "VIDEO_CONTAINERS",
    "DecodedVideo",
    "FrameSelector",
    "MediaError",
    "load_audio",
    "load_image",
    "load_text",
    "load_video",
]


class MediaError(ValueError):
    """A media item that cannot be used: unreadable, of a refused kind, or over a ``MediaLimits`` limit."""


PathLike = Union[str, os.PathLike]
ImageSource = Union[PathLike, bytes, Image.Image, np.ndarray]
AudioSource = Union[PathLike, bytes, "tuple[Any, int]"]
VideoSource = Union[PathLike, np.ndarray, "tuple[np.ndarray, float]"]

AUDIO_SAMPLE_RATE_RANGE = (1_000, 384_000)
"""Accepted source sample rates (Hz). Outside it a file is refused: 0 Hz is invalid, and absurd rates would
make resampling kernels huge."""

AUDIO_MAX_CHANNELS = 64
"""More channels than this in a file or array is refused (a (channels, frames) array passed as (frames,
channels) also ends up here, with a hint)."""

VIDEO_CONTAINERS = ("mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi")
"""FFmpeg demuxer names a video may use. Given to FFmpeg as ``format_whitelist``, so a playlist (HLS,
concat, ...) hidden in a local file cannot make FFmpeg open other files or URLs."""

_PLAYLIST_SUFFIXES = {".m3u8", ".m3u", ".pls", ".xspf", ".asx", ".sdp", ".ffconcat", ".cue"}
_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")  # scheme or FFmpeg protocol prefix; not "C:\"
_READ_BLOCK_FRAMES = 1 << 16

# First bytes of common image formats, only used to *name* a refused format in the error message.
_IMAGE_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"WEBP", 8, "WEBP"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"8BPS", 0, "PSD"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG2000"),
    (b"ftypavif", 4, "AVIF"),
    (b"ftypheic", 4, "HEIC"),
    (b"%PDF", 0, "PDF"),
    (b"P6", 0, "PPM"),
)


# ---- shared helpers ------------------------------------------------------------------------------------------
def _limits(limits: MediaLimits | None) -> MediaLimits:
    return limits if limits is not None else MediaLimits()


def _mb(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB"


def _describe(source: Any) -> str:
    """A short name for ``source`` in messages: the path, or the type and size of in-memory data."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.width}×{source.height} {source.mode}>"
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return f"<array {tuple(source.shape)} {source.dtype}>"
    if isinstance(source, tuple):
        return f"<tuple of {len(source)}>"
    return f"<{type(source).__name__}>"


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def _local_file(source: PathLike, limits: MediaLimits, kind: str) -> Path:
    """Check that ``source`` names an existing local regular file within the size limit.

    Raises:
        MediaError: for URLs, FFmpeg protocols, playlists, missing paths, non-regular files, empty or oversize
            files.
    """
    text = os.fspath(source)
    if "://" in text or _URL_LIKE.match(text):
        raise MediaError(
            f"{text}: {kind} must be a local file, got a URL or protocol; download it first and pass the local path"
        )
    path = Path(text)
    if path.suffix.lower() in _PLAYLIST_SUFFIXES:
        raise MediaError(
            f"{path}: '{path.suffix}' playlists are refused (they make decoders open other files or URLs); "
            f"pass the {kind} file itself"
        )
    try:
        info = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{path}: {kind} file does not exist") from None
    except OSError as error:
        raise MediaError(f"{path}: cannot access the {kind} file ({error.strerror or error})") from None
    if not stat.S_ISREG(info.st_mode):
        raise MediaError(f"{path}: not a regular file; a {kind} must be a plain local file")
    _check_size(info.st_size, limits, str(path), kind)
    return path


def _check_size(size: int, limits: MediaLimits, name: str, kind: str) -> None:
    if size == 0:
        raise MediaError(f"{name}: the {kind} file is empty")
    if size > limits.max_file_bytes:
        raise MediaError(
            f"{name}: {kind} file is {_mb(size)}, over the limit of {_mb(limits.max_file_bytes)} "
            "(MediaLimits.max_file_bytes); send a smaller file"
        )


def _read_bytes(source: PathLike | bytes, limits: MediaLimits, kind: str) -> tuple[bytes, str]:
    """Return the bytes of a path or bytes source, at most ``limits.max_file_bytes`` of them, and its name."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = _describe(data)
        _check_size(len(data), limits, name, kind)
        return data, name
    path = _local_file(source, limits, kind)
    with open(path, "rb") as handle:
        data = handle.read(limits.max_file_bytes + 1)  # the file may have grown since stat()
    _check_size(len(data), limits, str(path), kind)
    return data, str(path)


# ---- images --------------------------------------------------------------------------------------------------
def _sniff_image_format(data: bytes) -> str | None:
    for magic, offset, name in _IMAGE_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def _check_pixels(width: int, height: int, limits: MediaLimits, name: str) -> None:
    if width <= 0 or height <= 0:
        raise MediaError(f"{name}: image has an empty size {width}×{height}")
    if width * height > limits.max_image_pixels:
        raise MediaError(
            f"{name}: image is {width}×{height} = {width * height:,} pixels, over the limit of "
            f"{limits.max_image_pixels:,} (MediaLimits.max_image_pixels; checked before decoding, possible "
            "decompression bomb); send a smaller image"
        )


def _decode_image(image: Image.Image, limits: MediaLimits, name: str) -> Image.Image:
    """Check the declared size, then decode the (first frame of the) image and convert it to RGB."""
    _check_pixels(image.width, image.height, limits, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            return image.convert("RGB")
    except MemoryError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise MediaError(f"{name}: refused as a possible decompression bomb ({error})") from None
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, struct.error, ...
        raise MediaError(
            f"{name}: image data is truncated or corrupt ({type(error).__name__}: {error}); re-save or re-send it"
        ) from None


def load_image(source: ImageSource, limits: MediaLimits | None = None) -> Image.Image:
    """Load an untrusted image as an RGB ``PIL.Image``.

    Args:
        source: a local path, the file's bytes, a ``PIL.Image`` or a ``uint8``/float-in-[0, 1] array of shape
            ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` (alpha is dropped).
        limits: the server's limits (defaults: ``MediaLimits()``).

    Returns:
        A decoded RGB image (the first frame of an animation).

    Raises:
        MediaError: for a missing/oversize/empty file, a format outside ``limits.image_formats`` (judged from
            the bytes, not the name), more than ``limits.max_image_pixels`` pixels (checked from the header
            before decoding), or truncated/corrupt data.
    """
    limits = _limits(limits)
    allowed = [fmt.upper() for fmt in limits.image_formats]
    if isinstance(source, np.ndarray):
        return _image_from_array(source, limits)
    if isinstance(source, Image.Image):
        name = _describe(source)
        if source.format is not None and source.format.upper() not in allowed:
            raise MediaError(f"{name}: {source.format} images are not allowed; allowed formats: {allowed}")
        return _decode_image(source, limits, name)
    if not (_is_path(source) or isinstance(source, (bytes, bytearray, memoryview))):
        raise MediaError(
            f"{_describe(source)}: an image must be a path, bytes, a PIL.Image or a numpy array"
        )
    data, name = _read_bytes(source, limits, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only the allowed plugins get to parse the bytes: less attack surface, and the real format decides.
            image = Image.open(io.BytesIO(data), formats=allowed)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise MediaError(
            f"{name}: image header declares too many pixels ({error}); the limit is "
            f"{limits.max_image_pixels:,} pixels (MediaLimits.max_image_pixels)"
        ) from None
    except UnidentifiedImageError:
        sniffed = _sniff_image_format(data)
        if sniffed is not None and sniffed not in allowed:
            raise MediaError(
                f"{name}: {sniffed} images are not allowed (format read from the file's bytes); "
                f"allowed formats: {allowed} (MediaLimits.image_formats); convert it, e.g. to PNG"
            ) from None
        what = f"looks like {sniffed} but is corrupt" if sniffed else "is not a recognisable image"
        raise MediaError(f"{name}: the data {what}; allowed formats: {allowed}") from None
    except MemoryError:
        raise
    except Exception as error:  # a plugin failing on a damaged header
        raise MediaError(f"{name}: image header is corrupt ({type(error).__name__}: {error})") from None
    return _decode_image(image, limits, name)


def _image_from_array(array: np.ndarray, limits: MediaLimits) -> Image.Image:
    name = _describe(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise MediaError(f"{name}: an image array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]")
    _check_pixels(array.shape[1], array.shape[0], limits, name)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise MediaError(f"{name}: a float image array must hold finite values in [0, 1]")
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise MediaError(f"{name}: image arrays must be uint8 (0–255) or float in [0, 1], got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


# ---- audio ---------------------------------------------------------------------------------------------------
def _check_wav_header(data: bytes, name: str) -> None:
    """Validate the fields libsndfile hides or reports cryptically in a RIFF/WAVE header.

    libsndfile silently clamps a ``data`` chunk that claims more bytes than the file holds, and reports a
    0 Hz sample rate as "SF_INFO struct incomplete". Walk the chunks ourselves and say what is wrong.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    offset, fmt = 12, None
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + 8
        if chunk_id == b"fmt " and size >= 16 and body + 16 <= len(data):
            _, channels, rate, _, block_align, _ = struct.unpack_from("<HHIIHH", data, body)
            fmt = (channels, rate, block_align)
            if channels == 0:
                raise MediaError(f"{name}: WAV header declares 0 channels; the file is corrupt")
            if rate == 0:
                raise MediaError(f"{name}: WAV header declares a sample rate of 0 Hz; the file is corrupt")
        elif chunk_id == b"data":
            if fmt is None or size in (0, 0xFFFFFFFF):  # 0 / 0xFFFFFFFF: length unknown (streamed WAV)
                return
            channels, rate, block_align = fmt
            available = len(data) - body
            if size > available + max(block_align, 1):
                frame_bytes = max(block_align, 1)
                raise MediaError(
                    f"{name}: WAV header claims {size // frame_bytes / rate:,.1f} s of audio but the file holds "
                    f"only {available // frame_bytes / rate:,.3f} s: the file is truncated or its header forged; "
                    "re-encode it"
                )
            return
        offset = body + size + (size & 1)  # chunks are word-aligned


def _read_audio_file(data: bytes, limits: MediaLimits, name: str) -> tuple[np.ndarray, int]:
    import soundfile

    _check_wav_header(data, name)
    try:
        audio_file = soundfile.SoundFile(io.BytesIO(data))
    except MemoryError:
        raise
    except Exception as error:  # soundfile.LibsndfileError (RuntimeError) and friends
        raise MediaError(
            f"{name}: cannot be read as audio ({error}); send WAV, FLAC or OGG audio"
        ) from None
    with audio_file:
        rate, channels = audio_file.samplerate, audio_file.channels
        _check_rate_and_channels(rate, channels, name)
        max_frames = math.floor(limits.max_audio_seconds * rate)
        declared = audio_file.frames
        if 0 < declared < 2**62 and declared > max_frames:  # 2**62+: libsndfile's "length unknown"
            raise MediaError(_too_long(name, declared / rate, limits, "its header claims"))
        blocks, total = [], 0
        # Reading into a buffer of our own: soundfile then asks libsndfile for exactly len(buffer) frames and
        # never sizes anything from the header (which may say "unknown" = 2**63-1 frames, or lie).
        buffer = np.empty((_READ_BLOCK_FRAMES, channels), dtype=np.float32)
        try:
            while True:
                block = audio_file.read(out=buffer[: min(_READ_BLOCK_FRAMES, max_frames + 1 - total)])
                if len(block) == 0:
                    break
                total += len(block)
                if total > max_frames:
                    raise MediaError(_too_long(name, total / rate, limits, "decoding reached"))
                blocks.append(block.mean(axis=1, dtype=np.float32))
        except MediaError:
            raise
        except MemoryError:
            raise
        except Exception as error:
            raise MediaError(f"{name}: audio data is corrupt after {total} frames ({error})") from None
    waveform = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return waveform, rate


def _too_long(name: str, seconds: float, limits: MediaLimits, how: str) -> str:
    return (
        f"{name}: audio is too long ({how} {seconds:,.1f} s); the limit is {limits.max_audio_seconds:g} s "
        "(MediaLimits.max_audio_seconds); trim it"
    )


def _check_rate_and_channels(rate: Any, channels: int, name: str) -> None:
    low, high = AUDIO_SAMPLE_RATE_RANGE
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or not low <= rate <= high:
        raise MediaError(f"{name}: sample rate {rate!r} Hz is invalid; it must be an integer in [{low}, {high}]")
    if channels <= 0:
        raise MediaError(f"{name}: audio has {channels} channels")
    if channels > AUDIO_MAX_CHANNELS:
        raise MediaError(
            f"{name}: audio has {channels} channels (at most {AUDIO_MAX_CHANNELS}); arrays are "
            "[frames] or [frames, channels] — transpose a [channels, frames] array"
        )


def _audio_from_array(source: tuple, limits: MediaLimits) -> tuple[np.ndarray, int]:
    if len(source) != 2:
        raise MediaError(f"{_describe(source)}: in-memory audio is a (waveform, sample_rate) pair")
    array, rate = source
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    name = _describe(array)
    if array.ndim not in (1, 2):
        raise MediaError(f"{name}: an audio array must be [frames] or [frames, channels]")
    channels = 1 if array.ndim == 1 else array.shape[1]
    _check_rate_and_channels(rate, channels, name)
    frames = array.shape[0]
    if frames > limits.max_audio_seconds * rate:
        raise MediaError(_too_long(name, frames / rate, limits, "it holds"))
    if array.dtype == np.int16:
        array = array.astype(np.float32) / 32768.0
    elif array.dtype == np.int32:
        array = array.astype(np.float32) / 2147483648.0
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    else:
        raise MediaError(f"{name}: audio arrays must be float, int16 or int32, got {array.dtype}")
    if not np.isfinite(array).all():
        raise MediaError(f"{name}: audio array holds NaN or infinite values")
    mono = array if array.ndim == 1 else array.mean(axis=1, dtype=np.float32)
    return mono, int(rate)


def load_audio(
    source: AudioSource, limits: MediaLimits | None = None, *, sample_rate: int = 16_000
) -> torch.Tensor:
    """Load untrusted audio as a mono float32 waveform at ``sample_rate``.

    Args:
        source: a local path or the file's bytes (any format libsndfile reads: WAV, FLAC, OGG, ...), or a
            ``(waveform, rate)`` pair with a ``[frames]`` or ``[frames, channels]`` float/int16/int32 array.
        limits: the server's limits (defaults: ``MediaLimits()``).
        sample_rate: the rate to resample to (Hz).

    Returns:
        ``[num_samples]`` float32 tensor, channels averaged.

    Raises:
        MediaError: for a missing/oversize/empty file, unreadable data, a sample rate outside
            ``AUDIO_SAMPLE_RATE_RANGE`` or 0 channels, a WAV header claiming more audio than the file holds, more
            than ``limits.max_audio_seconds`` of decoded audio (counted on decoded frames, decoding stops at
            the limit), or no samples at all.
    """
    limits = _limits(limits)
    if isinstance(source, tuple):
        waveform, rate = _audio_from_array(source, limits)
        name = _describe(source[0])
    elif _is_path(source) or isinstance(source, (bytes, bytearray, memoryview)):
        data, name = _read_bytes(source, limits, "audio")
        waveform, rate = _read_audio_file(data, limits, name)
    else:
        raise MediaError(
            f"{_describe(source)}: audio must be a path, bytes or a (waveform, sample_rate) pair"
        )
    if waveform.size == 0:
        raise MediaError(f"{name}: audio holds no samples")
    tensor = torch.from_numpy(np.ascontiguousarray(waveform))
    if rate != sample_rate:
        import torchaudio.functional

        tensor = torchaudio.functional.resample(tensor, orig_freq=rate, new_freq=sample_rate)
    return tensor


# ---- video ---------------------------------------------------------------------------------------------------
FrameSelector = Callable[[int, float], Sequence[int]]
"""``(num_frames, duration_seconds) -> frame indices to keep`` (any order, repeats allowed)."""


@dataclass(frozen=True)
class DecodedVideo:
    """The frames a caller asked for, plus what was measured about the whole video.

    Attributes:
        frames: ``uint8 [K, H, W, 3]`` RGB frames, in the order of the selected indices.
        indices: the ``K`` selected frame indices (display order, 0-based).
        num_frames: frames in the video (counted from its packets, not its header).
        duration: seconds, measured from the packet timestamps.
    """

    frames: np.ndarray
    indices: tuple[int, ...]
    num_frames: int
    duration: float

    @property
    def fps(self) -> float:
        return self.num_frames / self.duration


def _check_video_budget(
    name: str, limits: MediaLimits, *, frames: int = 0, seconds: float = 0.0, width: int = 0, height: int = 0
) -> None:
    if frames > limits.max_video_frames:
        raise MediaError(
            f"{name}: video has more than {limits.max_video_frames} frames (MediaLimits.max_video_frames); "
            "send a shorter or lower-frame-rate video"
        )
    if seconds > limits.max_video_seconds:
        raise MediaError(
            f"{name}: video lasts {seconds:,.1f} s, over the limit of {limits.max_video_seconds:g} s "
            "(MediaLimits.max_video_seconds); trim it"
        )
    if width * height > limits.max_video_frame_pixels:
        raise MediaError(
            f"{name}: video frames are {width}×{height} = {width * height:,} pixels, over the limit of "
            f"{limits.max_video_frame_pixels:,} (MediaLimits.max_video_frame_pixels); downscale it"
        )


def _select(select: FrameSelector | None, num_frames: int, duration: float, name: str) -> list[int]:
    indices = list(range(num_frames)) if select is None else [int(i) for i in select(num_frames, duration)]
    if not indices or min(indices) < 0 or max(indices) >= num_frames:
        raise ValueError(f"{name}: frame selector returned {indices[:8]}... for a video of {num_frames} frames")
    return indices


def _video_from_array(
    array: np.ndarray, fps: float, limits: MediaLimits, select: FrameSelector | None
) -> DecodedVideo:
    name = _describe(array)
    if array.ndim != 4 or array.shape[3] != 3 or array.dtype != np.uint8:
        raise MediaError(f"{name}: a video array must be uint8 [frames, H, W, 3]")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise MediaError(f"{name}: video frame rate must be a positive number, got {fps!r}")
    num_frames = array.shape[0]
    if num_frames == 0:
        raise MediaError(f"{name}: video has no frames")
    duration = num_frames / fps
    _check_video_budget(
        name, limits, frames=num_frames, seconds=duration, width=array.shape[2], height=array.shape[1]
    )
    indices = _select(select, num_frames, duration, name)
    return DecodedVideo(np.ascontiguousarray(array[indices]), tuple(indices), num_frames, duration)


def _open_container(path: Path, name: str):
    import av

    handle = open(path, "rb")  # a file object, so FFmpeg never interprets the name as a protocol or URL
    try:
        return av.open(handle, options={"format_whitelist": ",".join(VIDEO_CONTAINERS)}), handle
    except av.error.InvalidDataError:
        handle.close()
        raise MediaError(f"{name}: not a readable video (FFmpeg found no valid container in it)") from None
    except av.error.FFmpegError as error:
        handle.close()
        raise MediaError(
            f"{name}: not a video container we accept ({error.strerror or error}); allowed FFmpeg demuxers: "
            f"{', '.join(VIDEO_CONTAINERS)} — convert it to MP4 or WebM"
        ) from None
    except BaseException:
        handle.close()
        raise


def _measure_video(path: Path, name: str, limits: MediaLimits) -> tuple[int, float]:
    """First pass, demuxing only: count the video packets and measure the duration from their timestamps."""
    import av

    container, handle = _open_container(path, name)
    with handle, container:
        if not container.streams.video:
            raise MediaError(f"{name}: the file holds no video stream")
        stream = container.streams.video[0]
        _check_video_budget(name, limits, width=stream.codec_context.width, height=stream.codec_context.height)
        count, first, last, last_duration = 0, None, None, 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                count += 1
                _check_video_budget(name, limits, frames=count)
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    continue
                first = stamp if first is None else min(first, stamp)
                if last is None or stamp >= last:
                    last, last_duration = stamp, packet.duration or 0
        except av.error.FFmpegError as error:
            raise MediaError(f"{name}: video data is corrupt ({error.strerror or error})") from None
        if count == 0:
            raise MediaError(f"{name}: the video stream holds no frames")
        if first is not None and stream.time_base:
            if not last_duration and count > 1:
                last_duration = (last - first) / (count - 1)
            duration = float((last - first + last_duration) * stream.time_base)
        else:
            rate = stream.average_rate or stream.guessed_rate
            duration = count / float(rate) if rate else 0.0
        if not duration > 0:
            raise MediaError(f"{name}: cannot measure the video's duration (no usable timestamps or frame rate)")
        _check_video_budget(name, limits, seconds=duration)
    return count, duration


def _decode_frames(path: Path, name: str, limits: MediaLimits, wanted: set[int]) -> dict[int, np.ndarray]:
    """Second pass: decode in display order, keep only the ``wanted`` frame indices, stop after the last one."""
    import av

    container, handle = _open_container(path, name)
    kept: dict[int, np.ndarray] = {}
    last_wanted = max(wanted)
    with handle, container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream)):
                _check_video_budget(name, limits, frames=index + 1, width=frame.width, height=frame.height)
                if index in wanted:
                    kept[index] = frame.to_ndarray(format="rgb24")
                if index >= last_wanted:
                    break
        except av.error.FFmpegError as error:
            raise MediaError(f"{name}: video data is corrupt ({error.strerror or error})") from None
    return kept


def load_video(
    source: VideoSource,
    limits: MediaLimits | None = None,
    *,
    select: FrameSelector | None = None,
    array_fps: float = 30.0,
) -> DecodedVideo:
    """Load an untrusted video, keeping only the frames ``select`` asks for.

    Files are read in two passes: demuxing alone counts the frames and measures the duration (so limits are
    enforced before anything is decoded and the selection can be made), then decoding keeps the selected
    frames and stops after the last of them.

    Args:
        source: a local file path (no URLs, protocols or playlists), a ``uint8 [F, H, W, 3]`` array, or an
            ``(array, fps)`` pair.
        limits: the server's limits (defaults: ``MediaLimits()``).
        select: picks the frame indices to keep from ``(num_frames, duration)``; default: all frames.
        array_fps: frame rate assumed for a bare array.

    Returns:
        A :class:`DecodedVideo`.

    Raises:
        MediaError: for a URL/playlist/missing/oversize file, a container outside ``VIDEO_CONTAINERS``, garbage
            or corrupt data, no video stream, or more than ``limits.max_video_frames`` frames,
            ``limits.max_video_seconds`` seconds or ``limits.max_video_frame_pixels`` pixels per frame.
    """
    limits = _limits(limits)
    if isinstance(source, tuple):
        if len(source) != 2 or not isinstance(source[0], np.ndarray):
            raise MediaError(f"{_describe(source)}: in-memory video is a (uint8 [F, H, W, 3] array, fps) pair")
        return _video_from_array(source[0], source[1], limits, select)
    if isinstance(source, np.ndarray):
        return _video_from_array(source, array_fps, limits, select)
    if not _is_path(source):
        raise MediaError(f"{_describe(source)}: a video must be a local path or a uint8 [F, H, W, 3] array")
    path = _local_file(source, limits, "video")
    name = str(path)
    num_frames, duration = _measure_video(path, name, limits)
    indices = _select(select, num_frames, duration, name)
    kept = _decode_frames(path, name, limits, set(indices))
    if not kept:
        raise MediaError(f"{name}: no frame of the video could be decoded")
    missing = sorted(set(indices) - set(kept))
    if missing:
        # The packet count promised frames the decoder did not deliver (a damaged tail): use the nearest earlier one.
        logger.warning("%s: %d selected frames could not be decoded; reusing the nearest earlier frames", name,
                       len(missing))
    decoded = sorted(kept)
    frames = [kept[decoded[max(bisect.bisect_right(decoded, i) - 1, 0)]] for i in indices]
    if len({frame.shape for frame in frames}) > 1:
        raise MediaError(f"{name}: the frame size changes within the video; re-encode it at one size")
    return DecodedVideo(np.stack(frames), tuple(indices), num_frames, duration)


# ---- text ----------------------------------------------------------------------------------------------------
def load_text(source: str | bytes, limits: MediaLimits | None = None, *, name: str = "prompt") -> str:
    """Validate untrusted text.

    ``bytes`` are decoded as strict UTF-8: invalid bytes are an error rather than silently replaced, so the
    model never sees text the user did not send.

    Args:
        source: the text, or its UTF-8 bytes.
        limits: the server's limits (defaults: ``MediaLimits()``).
        name: what the text is, for messages ("prompt", "caption", ...).

    Raises:
        MediaError: for invalid UTF-8 (naming the byte offset) or more than ``limits.max_prompt_chars``
            characters.
    """
    limits = _limits(limits)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > 4 * limits.max_prompt_chars:  # UTF-8 uses at most 4 bytes a character
            raise MediaError(_text_too_long(name, f"{len(data):,} bytes", limits))
        try:
            source = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MediaError(
                f"{name}: not valid UTF-8 (byte {data[error.start]:#04x} at offset {error.start}: {error.reason}); "
                "send UTF-8 text"
            ) from None
    if not isinstance(source, str):
        raise MediaError(f"{name}: text must be str or UTF-8 bytes, got {type(source).__name__}")
    if len(source) > limits.max_prompt_chars:
        raise MediaError(_text_too_long(name, f"{len(source):,} characters", limits))
    return source


def _text_too_long(name: str, size: str, limits: MediaLimits) -> str:
    return (
        f"{name}: text is too long ({size}); the limit is {limits.max_prompt_chars:,} characters "
        "(MediaLimits.max_prompt_chars); shorten it"
    )
