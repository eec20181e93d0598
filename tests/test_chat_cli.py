"""The terminal chat: attachments by path, streamed text, saved media paths, settings, retry/undo, errors."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from nextgpt.apps.testing import FakePipeline
from nextgpt.chat_cli import run_chat
from nextgpt.options import GenerationOptions

pytestmark = pytest.mark.timeout(120)


class Recorder(io.StringIO):
    """stdout that remembers how many separate writes the answers took (streaming shows as many writes)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def chat(pipe, lines, **options) -> Recorder:
    out = Recorder()
    assert run_chat(pipe, GenerationOptions(output_dir=options.pop("output_dir", None), **options),
                    io.StringIO("\n".join(lines) + "\n"), out) == 0
    return out


@pytest.fixture
def tiny(tiny_pipe):
    return tiny_pipe


@pytest.mark.slow
def test_attached_image_and_forced_image_print_the_saved_path(tiny, tmp_path):
    picture = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(picture)
    out = chat(tiny, [f"/image {picture}", "/force image", "/steps 2", "/max-tokens 6", "what is this?", "/quit"],
               output_dir=tmp_path / "media")
    text = out.getvalue()
    assert f"attached image: {picture}" in text and "steps=2" in text
    saved = re.findall(r"\n  image: (\S+\.png)", text)
    assert saved and all((tmp_path / "media").joinpath(p.rsplit("/", 1)[-1]).is_file() for p in saved)
    assert out.writes > 10  # text arrived in pieces, not in one write


@pytest.mark.slow
def test_bad_media_is_an_error_line_and_the_chat_goes_on(tiny, tmp_path):
    garbage = tmp_path / "broken.png"
    garbage.write_bytes(b"\x00garbage" * 20)
    out = chat(tiny, [f"/image {garbage}", "hello", "/max-tokens 3", "hello again"])
    text = out.getvalue()
    assert "error:" in text and "image" in text
    assert text.count("bot> ") == 2 and "Traceback" not in text


def test_commands_change_settings_and_history():
    fake = FakePipeline(tokens=3)
    out = chat(fake, ["/seed 7", "/temperature 0.5", "/guidance 3", "/force audio", "/forbid audio", "/force none",
                      "/forbid smell", "/image /no/such/file.png", "/frobnicate", "one", "/retry", "/undo", "/retry",
                      "/reset", "/settings"])
    text = out.getvalue()
    assert "seed=7" in text and "temperature=0.5" in text and "guidance=3.0" in text
    assert "force: ['audio']" in text and "forced and forbidden" in text and "force: none" in text
    assert "cannot generate" in text  # /forbid smell
    assert "no such file" in text and "unknown command '/frobnicate'" in text
    assert "nothing to retry" in text and fake.started == 2  # "one" and its retry


@pytest.mark.parametrize("error, needle", [(KeyboardInterrupt(), "[stopped]"),
                                           (torch.OutOfMemoryError("CUDA out of memory"), "out of memory"),
                                           (MemoryError(), "out of memory")])
def test_interrupt_and_out_of_memory_end_the_answer_not_the_chat(error, needle):
    fake = FakePipeline(tokens=2)

    def fail():
        fake.fail = None
        raise error

    fake.fail = fail
    text = chat(fake, ["first", "second"]).getvalue()
    assert needle in text and "w1" in text.split(needle, 1)[1]  # the second answer still came
