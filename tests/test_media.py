"""Untrusted media loading under MediaLimits (reliability.md items 21–24): every limit, every refusal message."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from nextgpt.config import MediaLimits
from nextgpt.encoders.media import (
    DecodedVideo,
    MediaError,
    load_audio,
    load_image,
    load_text,
    load_video,
)

RNG = np.random.default_rng(0)


# ---- media factories -----------------------------------------------------------------------------------------
def image_bytes(width: int = 40, height: int = 30, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def png_with_header(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose IHDR claims ``width × height`` over a body of a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16_000, channels: int = 1) -> Path:
    samples = (0.1 * RNG.standard_normal((int(seconds * rate), channels))).astype(np.float32)
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


def write_video(path: Path, frames: int = 12, fps: int = 6, width: int = 64, height: int = 48) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            array = np.full((height, width, 3), (index * 20) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ---- images (item 21) ----------------------------------------------------------------------------------------
def test_image_sources_all_give_rgb(tmp_path: Path) -> None:
    data = image_bytes(40, 30)
    (tmp_path / "a.png").write_bytes(data)
    gray = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
    rgba = RNG.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    sources = [
        tmp_path / "a.png",
        str(tmp_path / "a.png"),
        data,
        Image.open(io.BytesIO(data)),
        Image.new("L", (40, 30)),
        gray,
        gray[:, :, None],
        rgba,
        RNG.random((30, 40, 3)),
    ]
    for source in sources:
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (40, 30)
    assert np.array_equal(np.asarray(load_image(data)), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


@pytest.mark.parametrize(
    "width, height",
    [
        (100_000, 100_000),  # Pillow raises DecompressionBombError itself
        (10_000, 10_000),  # Pillow only *warns* (100M > 89M pixels)
        (7_000, 7_000),  # under Pillow's thresholds, over our 40M limit
    ],
)
def test_decompression_bomb_header_rejected_before_decoding(tmp_path: Path, width: int, height: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header(width, height))
    assert path.stat().st_size < 100
    with pytest.raises(MediaError, match=r"bomb\.png.*(pixels|decompression bomb)") as caught:
        load_image(path)
    assert "40,000,000" in str(caught.value) or "decompression bomb" in str(caught.value)


def test_pixel_limit_is_per_call_not_global() -> None:
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(MediaError, match=r"40×30 = 1,200 pixels, over the limit of 1,000 \(MediaLimits.max_image_pixels"):
        load_image(image_bytes(40, 30), MediaLimits(max_image_pixels=1000))
    with pytest.raises(MediaError, match="max_image_pixels"):
        load_image(np.zeros((40, 30, 3), np.uint8), MediaLimits(max_image_pixels=1000))
    assert Image.MAX_IMAGE_PIXELS == before
    assert load_image(image_bytes(40, 30)).size == (40, 30)  # the default limit is untouched


def test_truncated_png(tmp_path: Path) -> None:
    data = image_bytes(64, 64)
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"cut\.png: image data is truncated or corrupt"):
        load_image(path)


def test_garbage_with_png_name(tmp_path: Path) -> None:
    path = tmp_path / "garbage.png"
    path.write_bytes(RNG.bytes(500))
    with pytest.raises(MediaError, match=r"garbage\.png: the data is not a recognisable image; allowed formats"):
        load_image(path)


def test_real_format_decides_not_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "disguised.png"
    path.write_bytes(image_bytes(fmt="TIFF"))
    with pytest.raises(MediaError, match=r"disguised\.png: TIFF images are not allowed.*MediaLimits.image_formats"):
        load_image(path)
    with pytest.raises(MediaError, match="TIFF images are not allowed"):
        load_image(Image.open(io.BytesIO(image_bytes(fmt="TIFF"))))
    only_jpeg = MediaLimits(image_formats=["JPEG"])
    with pytest.raises(MediaError, match=r"PNG images are not allowed .*; allowed formats: \['JPEG'\]"):
        load_image(image_bytes(), only_jpeg)
    assert load_image(image_bytes(fmt="JPEG"), only_jpeg).size == (40, 30)


@pytest.mark.parametrize("loader", [load_image, load_audio, load_video])
def test_file_level_refusals(tmp_path: Path, loader) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 2048)
    with pytest.raises(MediaError, match=r"big\.bin: \w+ file is 0\.0 MB, over the limit of 0\.0 MB \(MediaLimits.max_file_bytes\)"):
        loader(big, MediaLimits(max_file_bytes=1024))
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.bin: the \w+ file is empty"):
        loader(empty)
    with pytest.raises(MediaError, match=r"missing\.bin: \w+ file does not exist"):
        loader(tmp_path / "missing.bin")
    with pytest.raises(MediaError, match="not a regular file"):
        loader(tmp_path)
    for url in ("http://127.0.0.1/x.png", "https://example.com/a", "file:///etc/passwd", "concat:a.mp4|b.mp4"):
        with pytest.raises(MediaError, match="must be a local file, got a URL or protocol"):
            loader(url)


def test_oversize_bytes_refused_before_parsing() -> None:
    with pytest.raises(MediaError, match=r"<2048 bytes>: image file is .* \(MediaLimits.max_file_bytes\)"):
        load_image(b"\0" * 2048, MediaLimits(max_file_bytes=1024))


def test_bad_image_arrays() -> None:
    with pytest.raises(MediaError, match="uint8"):
        load_image(np.zeros((4, 4, 3), np.int64))
    with pytest.raises(MediaError, match=r"\[H, W, 3\]"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(MediaError, match=r"in \[0, 1\]"):
        load_image(np.full((4, 4, 3), 2.0))


# ---- audio (item 22) -----------------------------------------------------------------------------------------
def test_audio_sources_mono_float32_16k(tmp_path: Path) -> None:
    stereo = write_wav(tmp_path / "stereo.wav", seconds=1.0, rate=44_100, channels=2)
    waveform = load_audio(stereo)
    assert waveform.dtype == torch.float32 and waveform.shape == (16_000,)
    assert torch.allclose(load_audio(stereo.read_bytes()), waveform)
    flac = tmp_path / "a.flac"
    soundfile.write(flac, 0.1 * RNG.standard_normal(8000), 8000)
    assert load_audio(flac).shape == (16_000,)
    array = (0.1 * RNG.standard_normal((24_000, 2))).astype(np.float32)
    assert load_audio((array, 48_000)).shape == (8000,)
    assert torch.allclose(load_audio((array.mean(1), 16_000)), torch.from_numpy(array.mean(1)))
    as_int16 = (array[:, 0] * 32767).astype(np.int16)
    assert load_audio((as_int16, 16_000)).abs().max() <= 1.0
    assert load_audio((torch.from_numpy(array[:, 0]), 16_000)).shape == (24_000,)


def test_wav_header_claiming_ten_hours_over_a_few_bytes(tmp_path: Path) -> None:
    data = bytearray(write_wav(tmp_path / "real.wav", seconds=0.1).read_bytes())
    claimed = 10 * 3600 * 16_000 * 2  # 10 hours of 16-bit mono
    data[40:44] = struct.pack("<I", claimed)
    data[4:8] = struct.pack("<I", claimed + 36)
    path = tmp_path / "forged.wav"
    path.write_bytes(bytes(data[:44 + 400]))
    with pytest.raises(MediaError, match=r"forged\.wav: WAV header claims 36,000\.0 s of audio but the file holds only 0\.0\d+ s"):
        load_audio(path)


def test_duration_cap_counts_decoded_frames_when_header_says_unknown(tmp_path: Path) -> None:
    """A FLAC whose STREAMINFO total is 0 ('unknown'): libsndfile reports 2**63-1 frames; a plain
    ``soundfile.read`` would try to allocate that. We read blocks and stop past the cap."""
    path = tmp_path / "unknown_length.flac"
    soundfile.write(path, 0.1 * RNG.standard_normal(3 * 16_000), 16_000)
    data = bytearray(path.read_bytes())
    fields = int.from_bytes(data[18:26], "big")
    data[18:26] = (fields & ~((1 << 36) - 1)).to_bytes(8, "big")  # total samples := 0
    path.write_bytes(bytes(data))
    assert soundfile.info(str(path)).frames > 2**62
    with pytest.raises(MediaError, match=r"too long \(decoding reached 1\.0 s\); the limit is 1 s \(MediaLimits.max_audio_seconds\)"):
        load_audio(path, MediaLimits(max_audio_seconds=1.0))


def test_too_long_audio(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "long.wav", seconds=2.0)
    limits = MediaLimits(max_audio_seconds=1.0)
    with pytest.raises(MediaError, match=r"long\.wav: audio is too long \(its header claims 2\.0 s\); the limit is 1 s"):
        load_audio(path, limits)
    with pytest.raises(MediaError, match="MediaLimits.max_audio_seconds"):
        load_audio((np.zeros(32_000, np.float32), 16_000), limits)


@pytest.mark.parametrize(
    "offset, value, message",
    [
        (24, struct.pack("<I", 0), "WAV header declares a sample rate of 0 Hz"),
        (22, struct.pack("<H", 0), "WAV header declares 0 channels"),
    ],
)
def test_corrupt_wav_fields(tmp_path: Path, offset: int, value: bytes, message: str) -> None:
    data = bytearray(write_wav(tmp_path / "ok.wav", seconds=0.1).read_bytes())
    data[offset : offset + len(value)] = value
    path = tmp_path / "bad.wav"
    path.write_bytes(bytes(data))
    with pytest.raises(MediaError, match=rf"bad\.wav: {message}"):
        load_audio(path)


def test_garbage_audio(tmp_path: Path) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"RIFF" + RNG.bytes(400))
    with pytest.raises(MediaError, match=r"garbage\.wav: cannot be read as audio \(.*\); send WAV, FLAC or OGG"):
        load_audio(path)


def test_bad_audio_arrays() -> None:
    with pytest.raises(MediaError, match=r"sample rate 0 Hz is invalid"):
        load_audio((np.zeros(100, np.float32), 0))
    with pytest.raises(MediaError, match=r"sample rate 1000000000 Hz is invalid; it must be an integer in \[1000, 384000\]"):
        load_audio((np.zeros(100, np.float32), 1_000_000_000))
    with pytest.raises(MediaError, match=r"transpose a \[channels, frames\] array"):
        load_audio((np.zeros((2, 16_000), np.float32), 16_000))
    with pytest.raises(MediaError, match="NaN"):
        load_audio((np.full(100, np.nan, np.float32), 16_000))
    with pytest.raises(MediaError, match="holds no samples"):
        load_audio((np.zeros(0, np.float32), 16_000))
    with pytest.raises(MediaError, match=r"\(waveform, sample_rate\) pair"):
        load_audio((np.zeros(10, np.float32),))


# ---- video (item 23) -----------------------------------------------------------------------------------------
def test_video_file_measured_and_only_selected_frames_kept(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", frames=12, fps=6)
    video = load_video(path, select=lambda count, duration: [0, count - 1, 5, 5])
    assert isinstance(video, DecodedVideo)
    assert video.num_frames == 12 and video.duration == pytest.approx(2.0) and video.fps == pytest.approx(6.0)
    assert video.frames.shape == (4, 48, 64, 3) and video.frames.dtype == np.uint8
    assert video.indices == (0, 11, 5, 5)
    brightness = video.frames.reshape(4, -1).mean(1)
    assert brightness[0] < brightness[2] < brightness[1]  # frame i is filled with 20·i
    assert load_video(path).frames.shape[0] == 12


def test_video_arrays() -> None:
    frames = RNG.integers(0, 256, (10, 8, 6, 3), dtype=np.uint8)
    video = load_video((frames, 5.0), select=lambda count, duration: [9, 0])
    assert video.duration == 2.0 and np.array_equal(video.frames, frames[[9, 0]])
    assert load_video(frames, array_fps=10).duration == 1.0
    with pytest.raises(MediaError, match=r"uint8 \[frames, H, W, 3\]"):
        load_video(frames.astype(np.float32))
    with pytest.raises(MediaError, match="frame rate must be a positive number"):
        load_video((frames, 0.0))


@pytest.mark.parametrize(
    "limits, message",
    [
        (MediaLimits(max_video_frames=10), r"video has more than 10 frames \(MediaLimits.max_video_frames\)"),
        (MediaLimits(max_video_seconds=1.5), r"video lasts 2\.0 s, over the limit of 1\.5 s \(MediaLimits.max_video_seconds\)"),
        (
            MediaLimits(max_video_frame_pixels=1000),
            r"video frames are 64×48 = 3,072 pixels, over the limit of 1,000 \(MediaLimits.max_video_frame_pixels\)",
        ),
    ],
)
def test_video_limits(tmp_path: Path, limits: MediaLimits, message: str) -> None:
    path = write_video(tmp_path / "clip.mp4", frames=12, fps=6)
    with pytest.raises(MediaError, match=rf"clip\.mp4: {message}"):
        load_video(path, limits)
    with pytest.raises(MediaError, match=message):
        load_video((np.zeros((12, 48, 64, 3), np.uint8), 6.0), limits)


def test_garbage_video(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(RNG.bytes(4000))
    with pytest.raises(MediaError, match=r"garbage\.mp4: not a (readable video|video container we accept)"):
        load_video(path)


def test_playlists_refused(tmp_path: Path) -> None:
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:9/segment.ts\n#EXT-X-ENDLIST\n"
    named = tmp_path / "list.m3u8"
    named.write_text(playlist)
    with pytest.raises(MediaError, match=r"list\.m3u8: '\.m3u8' playlists are refused"):
        load_video(named)
    hidden = tmp_path / "hidden.mp4"  # the same playlist behind a video name: FFmpeg's format allow-list refuses it
    hidden.write_text(playlist)
    with pytest.raises(MediaError, match=r"hidden\.mp4: not a (video container we accept|readable video)"):
        load_video(hidden)


# ---- text (item 24) ------------------------------------------------------------------------------------------
def test_text() -> None:
    assert load_text("héllo") == "héllo"
    assert load_text("héllo".encode()) == "héllo"
    limits = MediaLimits(max_prompt_chars=10)
    with pytest.raises(MediaError, match=r"prompt: text is too long \(11 characters\); the limit is 10 characters \(MediaLimits.max_prompt_chars\)"):
        load_text("x" * 11, limits)
    with pytest.raises(MediaError, match=r"caption: text is too long \(41 bytes\)"):
        load_text(b"x" * 41, limits, name="caption")
    with pytest.raises(MediaError, match=r"prompt: not valid UTF-8 \(byte 0xff at offset 2: invalid start byte\); send UTF-8 text"):
        load_text(b"ok\xff")
    with pytest.raises(MediaError, match="must be str or UTF-8 bytes"):
        load_text(42)  # type: ignore[arg-type]


def test_claim_path_gives_short_names_that_are_never_shared(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from nextgpt.decoders.media_io import claim_path

    assert claim_path(tmp_path, "image", ".png").name == "image-1.png"
    assert claim_path(tmp_path, "image", ".png").name == "image-2.png"
    with ThreadPoolExecutor(8) as pool:  # concurrent writers (the server shares one output folder)
        names = list(pool.map(lambda _: claim_path(tmp_path, "image", ".png").name, range(40)))
    assert len(set(names)) == 40 and not {"image-1.png", "image-2.png"} & set(names)
    (tmp_path / "image-1.png").write_bytes(b"kept")
    assert claim_path(tmp_path, "cat", ".png", bare_first=True).name == "cat.png"
    assert claim_path(tmp_path, "cat", ".png", bare_first=True).name == "cat-2.png"
    assert (tmp_path / "image-1.png").read_bytes() == b"kept"
