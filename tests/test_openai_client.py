"""The official ``openai`` client against a live ``nextgpt serve`` (a real subprocess) on 127.0.0.1, tiny preset.

Covers a plain chat, a streamed chat, an image-in/image-out request (the ``modalities`` field plus the
``nextgpt`` extension in ``extra_body``), error mapping to the client's exception classes, and /health
answering 503 while the model loads.
"""
from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from nextgpt.apps.testing import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

API_KEY = "sk-test-nextgpt"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    out = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "NEXTGPT_API_KEY": API_KEY}
    log = out / "serve.log"  # a file, not a pipe: nobody reads it while the server runs
    with log.open("wb") as sink:  # the child keeps its own handle
        process = subprocess.Popen(
            [sys.executable, "-m", "nextgpt", "serve", "--port", str(port), "--output-dir", str(out / "media")],
            env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    statuses = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"nextgpt serve exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                status = httpx.get(f"{url}/health", timeout=2).status_code
            except httpx.TransportError:
                status = None
            statuses.append(status)
            if status == 200:
                break
            time.sleep(0.1)
        else:
            pytest.fail("nextgpt serve did not become healthy within 120 s")
        yield url, statuses
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def test_health_is_503_while_the_model_loads_then_200(server):
    _, statuses = server
    assert statuses[-1] == 200
    assert 503 in statuses or statuses.count(None) > 0  # loading was observed (or the port opened after loading)


def test_models_lists_the_model_and_its_modalities(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["nextgpt"]
    assert "image" in models[0].model_extra["output_modalities"]


def test_plain_chat(client):
    completion = client.chat.completions.create(
        model="nextgpt", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, seed=1)
    message = completion.choices[0].message
    assert isinstance(message.content, str) and message.role == "assistant"
    assert completion.usage.completion_tokens > 0 and completion.choices[0].finish_reason in ("stop", "length")


def test_streamed_chat(client):
    stream = client.chat.completions.create(
        model="nextgpt", messages=[{"role": "user", "content": "Count to five."}], max_tokens=8, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) >= 2, "the answer came in one piece"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == 8 or chunks[-1].choices[0].finish_reason == "stop"


def test_image_in_image_out(client):
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), (200, 30, 30), np.uint8)).save(buffer, "PNG")
    image_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    completion = client.chat.completions.create(
        model="nextgpt",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Draw this again, bigger."},
                                                {"type": "image_url", "image_url": {"url": image_url}}]}],
        max_tokens=8, modalities=["text", "image"], extra_body={"nextgpt": {"steps": 2}})
    media = completion.choices[0].message.model_extra["media"]
    assert [item["type"] for item in media] == ["image_url"]
    header, encoded = media[0]["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert image.size[0] > 0 and image.mode in ("RGB", "RGBA")


def test_errors_map_to_the_clients_exceptions(server, client):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server[0]}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError, match="context"):
        client.chat.completions.create(model="nextgpt", messages=[{"role": "user", "content": "hi " * 2100}],
                                       max_tokens=8)


def test_uploaded_file_is_referenced_by_id(client, tmp_path):
    picture = tmp_path / "dot.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(picture)
    with picture.open("rb") as handle:
        file_id = client.files.create(file=handle, purpose="user_data").id
    completion = client.chat.completions.create(model="nextgpt", max_tokens=4, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "file", "file": {"file_id": file_id}}]}])
    assert completion.usage.prompt_tokens > 15  # the image's tokens are in the prompt
