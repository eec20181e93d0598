"""The Gradio app's safety properties against a running app on 127.0.0.1 (reliability.md items 1–7, 9, 10, 21).

Most tests share one app around a ``FakePipeline`` whose behaviour each test sets (slow, crashing, out of
memory); the last ones use the real tiny preset for media.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from nextgpt.apps.gradio_app import build_demo, launch_demo
from nextgpt.apps.limits import ServeLimits
from nextgpt.apps.testing import FakePipeline, free_port

pytestmark = pytest.mark.timeout(120)

LIMITS = ServeLimits(max_queue=1, deadline_s=2.0, max_media_bytes=200_000)
SETTINGS = (0, 0, 0, 8, 0, [], [])  # seed, steps, guidance, max new tokens, temperature, force, forbid


@pytest.fixture(scope="module")
def outbound():
    """Every non-loopback connection attempted in this process while the module's apps run (item: no telemetry)."""
    attempts = []
    original = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
        return original(sock, address)

    socket.socket.connect = connect
    yield attempts
    socket.socket.connect = original


@pytest.fixture(scope="module")
def app(tmp_path_factory, outbound):
    output_dir = tmp_path_factory.mktemp("outputs")
    (output_dir / "generated.png").write_bytes(b"\x89PNG fake")
    sibling = Path(str(output_dir) + "-evil")  # shares the output folder's name as a prefix
    sibling.mkdir()
    (sibling / "secret.txt").write_text("root:secret")
    fake = FakePipeline()
    demo = build_demo(fake, output_dir=output_dir, limits=LIMITS)
    url = launch_demo(demo, output_dir=output_dir, limits=LIMITS, port=free_port(), block=False)
    yield url.rstrip("/"), fake, output_dir
    demo.close()


@pytest.fixture
def fake(app):
    fake = app[1]
    fake.tokens, fake.delay_s, fake.fail = 5, 0.0, None
    return fake


def client_for(url):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


# ---- 1. loopback, no share without auth; analytics off ---------------------------------------------------
@pytest.mark.parametrize("host, share", [("0.0.0.0", False), ("127.0.0.1", True)])
def test_launch_refuses_exposure_without_auth(host, share, tmp_path):
    demo = build_demo(FakePipeline(), output_dir=tmp_path)
    with pytest.raises(ValueError, match="--auth"):
        launch_demo(demo, output_dir=tmp_path, host=host, share=share, block=False)


def test_no_analytics_and_no_outbound_connections(app, fake, outbound):
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    client_for(app[0]).predict({"text": "hi", "files": []}, *SETTINGS, api_name="/chat")
    assert outbound == [], f"the app tried to reach {outbound}"


# ---- 2 / 4. path traversal; only the output folder is served -----------------------------------------------
def traversal_paths(output_dir: Path) -> list[str]:
    return ["/etc/passwd", "/ETC/PASSWD", f"{output_dir}/../../../../etc/passwd",
            quote(f"{output_dir}/../../../../etc/passwd", safe=""), f"{output_dir}-evil/secret.txt",
            f"{str(output_dir).upper()}/GENERATED.PNG", "../../../../etc/passwd", "%2Fetc%2Fpasswd"]


def test_path_traversal_is_refused(app):
    url, _, output_dir = app
    for path in traversal_paths(output_dir):
        for route in ("/gradio_api/file=", "/file="):
            response = httpx.get(f"{url}{route}{path}", timeout=10)
            assert response.status_code in (403, 404), (route, path, response.status_code)
            assert "root:" not in response.text
    served = httpx.get(f"{url}/gradio_api/file={output_dir}/generated.png", timeout=10)
    assert served.status_code == 200 and served.content == b"\x89PNG fake"


def test_a_client_cannot_make_the_app_read_an_arbitrary_path(app, fake, tmp_path):
    """A raw queue request naming a local file that was never uploaded is refused before the handler runs."""
    url = app[0]
    secret = tmp_path / "secret.png"  # exists and looks like an image, but was never uploaded
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(secret)
    config = httpx.get(f"{url}/config", timeout=10).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
    message = {"text": "read this", "files": [{"path": str(secret), "meta": {"_type": "gradio.FileData"}}]}
    joined = httpx.post(f"{url}/gradio_api/queue/join", timeout=10, json={
        "data": [message, [], *SETTINGS], "fn_index": fn_index, "session_hash": "traversal01"})
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": "traversal01"},
                      timeout=10) as events:
        completed = next(line for line in events.iter_lines() if "process_completed" in line)
    assert '"success":false' in completed and "secret" not in completed
    assert not any("secret" in source for source in fake.media_seen)


# ---- 3. upload cap -------------------------------------------------------------------------------------------
def test_upload_cap(app):
    url = app[0]
    small = httpx.post(f"{url}/gradio_api/upload", files={"files": ("a.png", b"x" * 1000, "image/png")}, timeout=10)
    assert small.status_code == 200
    big = httpx.post(f"{url}/gradio_api/upload", files={"files": ("b.png", b"x" * 400_000, "image/png")}, timeout=10)
    assert big.status_code == 413


# ---- 5. bounded queue, one generation at a time --------------------------------------------------------------
def test_queue_overflow_is_refused_fast(app, fake):
    fake.tokens, fake.delay_s = 15, 0.1
    client = client_for(app[0])
    running = client.submit({"text": "one", "files": []}, *SETTINGS, api_name="/chat")
    assert wait_for(lambda: fake.running == 1)
    waiting = client.submit({"text": "two", "files": []}, *SETTINGS, api_name="/chat")
    time.sleep(0.5)
    start = time.monotonic()
    overflow = client.submit({"text": "three", "files": []}, *SETTINGS, api_name="/chat")
    with pytest.raises(Exception, match="(?i)queue is full"):
        overflow.result(timeout=10)
    assert time.monotonic() - start < 3
    running.result(timeout=30), waiting.result(timeout=30)
    assert fake.max_running == 1


# ---- 6 / 10. short errors, OOM survival ---------------------------------------------------------------------
@pytest.mark.parametrize("error, needle", [
    (torch.OutOfMemoryError("CUDA out of memory at /opt/secret/x"), "out of memory"),
    (RuntimeError("boom in /opt/secret/model.py with sk-SECRET"), "internal error"),
])
def test_errors_are_short_and_the_app_keeps_serving(app, fake, error, needle):
    from gradio_client.exceptions import AppError

    def fail():
        fake.fail = None
        raise error

    fake.fail = fail
    client = client_for(app[0])
    with pytest.raises(AppError) as raised:
        client.predict({"text": "hi", "files": []}, *SETTINGS, api_name="/chat")
    assert needle in str(raised.value) and "secret" not in str(raised.value).lower()
    assert client.predict({"text": "hi", "files": []}, *SETTINGS, api_name="/chat")


def test_unsupported_upload_is_a_short_error(app, fake, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    started = fake.started
    with pytest.raises(AppError, match="(?i)file type"):  # Gradio's file_types check, or ours
        client_for(app[0]).predict({"text": "hi", "files": [handle_file(str(notes))]}, *SETTINGS, api_name="/chat")
    assert fake.started == started


# ---- 7. deadline; 9. cancel ----------------------------------------------------------------------------------
def test_deadline_fails_a_slow_generation_and_the_next_one_succeeds(app, fake):
    from gradio_client.exceptions import AppError

    fake.tokens, fake.delay_s = 100, 0.1
    client = client_for(app[0])
    start = time.monotonic()
    with pytest.raises(AppError, match="deadline"):
        client.predict({"text": "slow", "files": []}, *SETTINGS, api_name="/chat")
    assert time.monotonic() - start < 5
    stopped = fake.stopped_early
    fake.tokens, fake.delay_s = 3, 0.0
    assert wait_for(lambda: fake.running == 0)
    assert client.predict({"text": "fast", "files": []}, *SETTINGS, api_name="/chat")
    assert stopped >= 1


def test_cancelling_a_job_stops_its_generation(app, fake):
    fake.tokens, fake.delay_s = 100, 0.05
    before = fake.stopped_early
    job = client_for(app[0]).submit({"text": "long", "files": []}, *SETTINGS, api_name="/chat")
    assert wait_for(lambda: fake.running == 1)
    job.cancel()
    assert wait_for(lambda: fake.stopped_early > before and fake.running == 0, 5), fake


# ---- the real tiny model: media out, bad media in (item 21) --------------------------------------------------
@pytest.fixture(scope="module")
def tiny_app(tmp_path_factory, tiny_pipe):
    output_dir = tmp_path_factory.mktemp("tiny-outputs")
    demo = build_demo(tiny_pipe, output_dir=output_dir, limits=ServeLimits(deadline_s=60))
    url = launch_demo(demo, output_dir=output_dir, port=free_port(), block=False)
    yield url.rstrip("/"), output_dir
    demo.close()


@pytest.mark.slow
def test_forced_image_is_generated_listed_for_download_and_served(tiny_app):
    url, output_dir = tiny_app
    settings = (0, 2, 0, 8, 0, ["image"], [])
    messages, files = client_for(url).predict({"text": "draw a cat", "files": []}, *settings, api_name="/chat")
    assert len(files) == 1 and Path(files[0]).parent == output_dir and files[0].endswith(".png")
    assert any(isinstance(m, dict) and "image" in str(m.get("content", "")) for m in messages[1:]), messages
    assert httpx.get(f"{url}/gradio_api/file={files[0]}", timeout=10).status_code == 200


@pytest.mark.slow
def test_garbage_image_upload_is_a_clear_error_without_paths(tiny_app, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    garbage = tmp_path / "photo.png"
    garbage.write_bytes(b"\x00not an image" * 40)
    with pytest.raises(AppError) as raised:
        client_for(tiny_app[0]).predict({"text": "what is this?", "files": [handle_file(str(garbage))]},
                                        *SETTINGS, api_name="/chat")
    message = str(raised.value)
    assert "not a recognisable image" in message and "/tmp" not in message


def wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_app_command_defaults_are_safe(monkeypatch):
    from nextgpt.cli import build_parser

    monkeypatch.delenv("NEXTGPT_APP_AUTH", raising=False)
    args = build_parser().parse_args(["app"])
    assert (args.host, args.share, args.auth) == ("127.0.0.1", False, None)


def test_examples_and_controls_are_offered(app):
    config = httpx.get(f"{app[0]}/config", timeout=10).json()
    labels = {c.get("props", {}).get("label") for c in config["components"]}
    for control in ("seed", "diffusion steps (0: decoder default)", "guidance scale (0: decoder default)",
                    "max new tokens", "temperature (0: greedy)", "force an output modality",
                    "forbid an output modality", "generated files"):
        assert control in labels, control
    examples = [c for c in config["components"] if c.get("type") == "dataset"]
    assert examples and "Draw a red circle." in json.dumps(examples[0]["props"])


def test_gradio_history_becomes_messages_with_user_files_reattached():
    from nextgpt.apps.gradio_app import _history

    def file_part(path, mime):
        return {"type": "file", "file": {"path": path, "mime_type": mime, "meta": {"_type": "gradio.FileData"}}}

    history = [  # the shape Gradio 6 hands to the chat function (captured from a browser session)
        {"role": "user", "metadata": None, "content": [file_part("/tmp/gradio/x/a.png", "image/png"),
                                                       {"type": "text", "text": "first turn"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "an answer"}]},
        {"role": "assistant", "content": {"path": "/out/image-0.png", "mime_type": "image/png"}},
        {"role": "user", "content": "second turn"},
    ]
    messages = _history(history, ["image", "audio", "video"])
    assert [(m.role, m.text, [x.source for x in m.media]) for m in messages] == [
        ("user", "first turn", ["/tmp/gradio/x/a.png"]), ("assistant", "an answer", []), ("user", "second turn", [])]
