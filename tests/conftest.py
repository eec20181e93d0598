"""Shared fixtures: one tiny pipeline per test session (building it costs a few seconds)."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """Tiny models gain nothing from intra-op threads, and OpenMP workers spinning against other processes on a
    busy 2-core machine made training and decoder tests 6–10× slower. Subprocesses keep torch's default."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_pipe():
    from nextgpt import NextGPT

    return NextGPT.from_preset("tiny")


@pytest.fixture(scope="session")
def media_files(tmp_path_factory):
    """A small PNG, WAV and MP4 written with the project's own writers."""
    from nextgpt.decoders import DecodedMedia, write_media

    folder = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    image = DecodedMedia("image", rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))
    audio = DecodedMedia("audio", (0.3 * np.sin(np.linspace(0, 600, 16000))).astype(np.float32), 16000)
    video = DecodedMedia("video", rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), 8)
    return {
        "image": write_media(image, folder / "in.png"),
        "audio": write_media(audio, folder / "in.wav"),
        "video": write_media(video, folder / "in.mp4"),
    }
