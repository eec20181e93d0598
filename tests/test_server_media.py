"""Untrusted media and text through the HTTP API on the tiny preset (reliability.md items 21–24, and 6).

Each bad item must come back as a 400 that says what is wrong, without the server's paths, and the server must
keep answering. Good items of every input modality go through.
"""
from __future__ import annotations

import base64
import io
import struct
import zlib

import httpx
import numpy as np
import pytest
import soundfile
from PIL import Image

from nextgpt.apps.limits import ServeLimits
from nextgpt.apps.runner import Runner
from nextgpt.apps.server import create_app
from nextgpt.apps.testing import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_pipe):
    runner = Runner(tiny_pipe)
    app = create_app(runner, output_dir=tmp_path_factory.mktemp("out"), limits=ServeLimits(deadline_s=60))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def part(kind: str, mime: str, data: bytes) -> dict:
    return {"type": kind, kind: {"url": data_url(mime, data)}}


def ask(client: httpx.Client, *parts: dict, text: str = "what is this?") -> httpx.Response:
    content = [{"type": "text", "text": text}, *parts]
    return client.post(CHAT, json={"messages": [{"role": "user", "content": content}], "max_tokens": 4,
                                   "modalities": ["text"]})


# ---- media builders --------------------------------------------------------------------------------------
def png(width=8, height=8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 120, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header and a tiny body that claims ``width × height`` pixels (a decompression bomb header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def wav(seconds=0.5, rate=16_000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(seconds * rate), np.float32), rate, format="WAV")
    return buffer.getvalue()


def wav_header(rate: int, frames: int, channels: int = 1) -> bytes:
    """A PCM16 WAV header claiming ``frames`` frames, followed by only a few bytes of data."""
    data_bytes = frames * channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16) +
            b"data" + struct.pack("<I", data_bytes) + b"\0" * 64)


def mp4() -> bytes:
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", np.zeros((4, 32, 32, 3), np.uint8), extension=".mp4", fps=8)


# ---- good inputs -----------------------------------------------------------------------------------------
def test_image_audio_and_video_inputs_are_accepted(client):
    response = ask(client, part("image_url", "image/png", png()),
                   {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav()).decode(), "format": "wav"}},
                   part("video_url", "video/mp4", mp4()))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] > 20  # the media tokens are in the prompt


# ---- bad inputs ------------------------------------------------------------------------------------------
BAD = {
    # 21. images
    "garbage image": (lambda: part("image_url", "image/png", b"\x00garbage" * 50), "not a recognisable image"),
    "truncated image": (lambda: part("image_url", "image/png", png(64, 64)[:80]), "image"),
    "bomb header": (lambda: part("image_url", "image/png", png_claiming(60_000, 60_000)), "pixels"),
    "refused format": (lambda: part("image_url", "image/x-portable-pixmap", b"P6\n8 8\n255\n" + b"\0" * 192),
                       "PPM"),
    # 22. audio
    "10 hours of audio in 100 bytes": (lambda: part("audio_url", "audio/wav", wav_header(16_000, 16_000 * 36_000)),
                                       "audio"),
    "sample rate 0": (lambda: part("audio_url", "audio/wav", wav_header(0, 100)), "audio"),
    "zero channels": (lambda: part("audio_url", "audio/wav", wav_header(16_000, 100, channels=0)), "audio"),
    "garbage audio": (lambda: {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"xyz" * 99).decode(),
                                                                      "format": "wav"}}, "audio"),
    # 23. video
    "garbage video": (lambda: part("video_url", "video/mp4", b"\x00\x01garbage" * 40), "video"),
    "playlist as video": (lambda: part("video_url", "application/vnd.apple.mpegurl",
                                       b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n"), "video"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_media_is_a_clear_400_without_server_paths(client, name):
    build, needle = BAD[name]
    response = ask(client, build())
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert needle.lower() in message.lower(), message
    assert "/tmp" not in message and "nextgpt-serve" not in message and "Traceback" not in message
    assert "root:" not in response.text


# ---- 24. text ----------------------------------------------------------------------------------------------
def test_prompt_over_the_character_cap_is_refused_naming_the_limit(client):
    response = ask(client, text="a" * 33_000)
    assert response.status_code == 400 and "max_prompt_chars" in response.json()["error"]["message"]


def test_non_ascii_text_round_trips_and_the_server_keeps_serving(client):
    response = ask(client, text="Grüße, 你好, emoji 🎉 and a lone \udcff surrogate".encode("utf-8", "replace").decode())
    assert response.status_code == 200, response.text
    assert client.get("/health").json()["status"] == "ready"
