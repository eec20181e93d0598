"""The HTTP API's limits and failure handling (reliability.md items 1, 3–11) against a live server on 127.0.0.1.

A scriptable ``FakePipeline`` stands in for the model where a test needs a slow, hung, crashing or
out-of-memory generation; ``started`` proves that a refused request never reached the model.
"""
from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import threading
import time

import httpx
import pytest
import torch

from nextgpt.apps.exposure import check_exposure
from nextgpt.apps.limits import ServeLimits
from nextgpt.apps.runner import Runner
from nextgpt.apps.server import create_app
from nextgpt.apps.testing import FakePipeline, LiveServer

pytestmark = pytest.mark.timeout(60)

CHAT = "/v1/chat/completions"
HELLO = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
PNG_1PX = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")).decode()


@contextlib.contextmanager
def serve(pipeline=None, *, api_key=None, runner=None, tmp_path, **limits):
    limits = ServeLimits(**limits)
    runner = runner or Runner(pipeline, max_queue=limits.max_queue, deadline_s=limits.deadline_s)
    app = create_app(runner, output_dir=tmp_path / "out", limits=limits, api_key=api_key)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        client.work_dir = app.state.work_dir
        yield client


def wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def image_parts(count, data=PNG_1PX):
    return [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}} for _ in range(count)]


# ---- 1. loopback by default -------------------------------------------------------------------------------
@pytest.mark.parametrize("host, share", [("0.0.0.0", False), ("192.168.1.5", False), ("127.0.0.1", True)])
def test_exposure_beyond_loopback_needs_authentication(host, share):
    with pytest.raises(ValueError, match="--api-key"):
        check_exposure(host, share=share, authenticated=False, how_to_authenticate="--api-key")
    check_exposure(host, share=share, authenticated=True, how_to_authenticate="--api-key")
    check_exposure("127.0.0.1", authenticated=False, how_to_authenticate="--api-key")


@pytest.mark.parametrize("argv", [["serve", "--host", "0.0.0.0"], ["app", "--share"], ["app", "--host", "::"]])
def test_cli_refuses_exposed_servers_without_auth_before_loading(argv, monkeypatch, capsys):
    from nextgpt import cli

    monkeypatch.delenv("NEXTGPT_API_KEY", raising=False)
    monkeypatch.delenv("NEXTGPT_APP_AUTH", raising=False)
    monkeypatch.setattr(cli, "load_pipeline", lambda args: pytest.fail("the model was loaded"))
    assert cli.main(argv) == 2
    assert "exposes the model beyond this machine" in capsys.readouterr().err


def test_serve_binds_loopback_by_default():
    from nextgpt.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.api_key is None


# ---- 3 / 8. body, media and prompt limits, all before model work --------------------------------------
def test_oversize_body_is_413_by_header_and_by_stream(tmp_path):
    fake = FakePipeline()
    with serve(fake, tmp_path=tmp_path, max_body_bytes=10_000) as client:
        big = {**HELLO, "messages": [{"role": "user", "content": "x" * 20_000}]}
        response = client.post(CHAT, json=big)
        assert response.status_code == 413 and "max_body_bytes" in response.json()["error"]["message"]

        def chunks():  # no Content-Length: the cap is enforced while reading
            yield b'{"messages": [{"role": "user", "content": "'
            for _ in range(30):
                yield b"y" * 1000
            yield b'"}]}'

        response = client.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert client.post(CHAT, json=HELLO).status_code == 200
    assert fake.started == 1


@pytest.mark.parametrize("body, status, needle", [
    ({"messages": [{"role": "user", "content": image_parts(3)}]}, 400, "max_media_items"),
    ({"messages": [{"role": "user", "content": image_parts(1, "A" * 4000)}]}, 413, "max_media_bytes"),
    ({**HELLO, "max_tokens": 10_000}, 400, "max_new_tokens"),
    ({**HELLO, "max_tokens": 253}, 400, "context of 256 tokens"),
    ({"messages": [{"role": "user", "content": "word " * 300}]}, 400, "context_length"),
    ({**HELLO, "n": 3}, 400, "n must be 1"),
    ({**HELLO, "stop": ["a", "b", "c"]}, 400, "max_stop_sequences"),
    ({**HELLO, "modalities": ["text", "smell"]}, 400, "cannot be generated"),
    ({**HELLO, "nextgpt": {"force": ["image"], "forbid": ["image"]}}, 400, "forced and forbidden"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}]},
     400, "remote URLs are not fetched"),
    ({"messages": []}, 400, "empty"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
    ({"messages": [{"role": "user", "content": "hi"}] * 70}, 400, "max_messages"),
    ({"messages": "hello"}, 400, "invalid request"),
    ({**HELLO, "temperature": 5}, 400, "temperature"),
])
def test_request_limits_are_checked_before_any_model_work(tmp_path, body, status, needle):
    fake = FakePipeline()
    with serve(fake, tmp_path=tmp_path, max_media_items=2, max_media_bytes=2000, max_new_tokens=300,
               max_stop_sequences=2) as client:
        response = client.post(CHAT, json=body)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]
    assert fake.started == 0


def test_non_utf8_body_is_a_clear_400(tmp_path):
    with serve(FakePipeline(), tmp_path=tmp_path) as client:
        response = client.post(CHAT, content=b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
                               headers={"content-type": "application/json"})
    assert response.status_code == 400 and "body" in response.json()["error"]["message"]


# ---- 4. files only by id --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/files/..%2F..%2F..%2Fetc%2Fpasswd/content", "/v1/files/file-0/content",
                                  "/v1/files/%2Fetc%2Fpasswd/content", "/v1/files/../../etc/passwd"])
def test_downloads_only_serve_registered_ids(tmp_path, path):
    with serve(FakePipeline(), tmp_path=tmp_path) as client:
        response = client.get(path)
    assert response.status_code == 404 and "root:" not in response.text


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": "/etc/passwd"}},
    {"type": "file", "file": {"file_id": "../../etc/passwd"}},
    {"type": "video_url", "video_url": {"url": "file:///etc/passwd"}},
])
def test_request_strings_never_become_file_paths(tmp_path, part):
    fake = FakePipeline()
    with serve(fake, tmp_path=tmp_path) as client:
        response = client.post(CHAT, json={"messages": [{"role": "user", "content": [part]}]})
    assert response.status_code == 400 and "root:" not in response.text
    assert fake.started == 0


def test_uploaded_file_is_usable_by_id_and_capped(tmp_path):
    fake = FakePipeline()
    with serve(fake, tmp_path=tmp_path, max_media_bytes=2000) as client:
        uploaded = client.post("/v1/files", files={"file": ("dot.png", base64.b64decode(PNG_1PX), "image/png")},
                               data={"purpose": "user_data"})
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]
        part = {"type": "file", "file": {"file_id": file_id}}
        assert client.post(CHAT, json={"messages": [{"role": "user", "content": [part]}]}).status_code == 200
        too_big = client.post("/v1/files", files={"file": ("big.png", b"x" * 5000, "image/png")})
        assert too_big.status_code == 413
        assert client.get(f"/v1/files/{file_id}/content").status_code == 404  # uploads are not served back


# ---- 5. bounded queue ------------------------------------------------------------------------------------
def test_queue_overflow_is_a_fast_429(tmp_path):
    fake = FakePipeline(tokens=20, delay_s=0.05)
    with serve(fake, tmp_path=tmp_path, max_queue=1) as client:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            def timed_post(_):
                start = time.monotonic()
                response = client.post(CHAT, json=HELLO)
                return response.status_code, time.monotonic() - start
            first = pool.submit(timed_post, 0)
            assert wait_for(lambda: fake.running == 1)
            second = pool.submit(timed_post, 1)
            time.sleep(0.2)  # the second waits in the queue
            overflow = [pool.submit(timed_post, i) for i in range(2)]
            results = [f.result() for f in overflow]
            assert [status for status, _ in results] == [429, 429]
            assert all(seconds < 0.5 for _, seconds in results), results
            assert first.result()[0] == 200 and second.result()[0] == 200
    assert fake.max_running == 1


# ---- 6. internal errors stay internal; 10. OOM survival ---------------------------------------------------
@pytest.mark.parametrize("error, status, needle", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB (/opt/secret/w)"), 503, "out of memory"),
    (MemoryError("cannot allocate /opt/secret/buffer"), 503, "out of memory"),
    (RuntimeError("shape mismatch in /opt/secret/model.py token sk-SECRET"), 500, "internal error (reference"),
])
def test_a_crash_in_one_request_is_an_error_response_and_the_server_keeps_serving(tmp_path, error, status, needle):
    fake = FakePipeline()

    def fail():
        fake.fail = None  # only the first request fails
        raise error

    fake.fail = fail
    with serve(fake, tmp_path=tmp_path) as client:
        response = client.post(CHAT, json=HELLO)
        assert response.status_code == status
        assert needle in response.json()["error"]["message"]
        assert "secret" not in response.text.lower() and "Traceback" not in response.text
        assert client.get("/health").status_code == 200
        assert client.post(CHAT, json=HELLO).status_code == 200
        streamed = client.post(CHAT, json={**HELLO, "stream": True})
        assert streamed.status_code == 200 and "[DONE]" in streamed.text


# ---- 7. deadline -----------------------------------------------------------------------------------------
def test_a_slow_generation_fails_at_the_deadline_and_the_next_request_succeeds(tmp_path):
    fake = FakePipeline(tokens=200, delay_s=0.1)
    with serve(fake, tmp_path=tmp_path, deadline_s=1.0) as client:
        start = time.monotonic()
        response = client.post(CHAT, json=HELLO)
        assert response.status_code == 504 and "deadline" in response.json()["error"]["message"]
        assert time.monotonic() - start < 2.0
        assert wait_for(lambda: fake.stopped_early == 1, 2)  # the generation itself was stopped
        fake.delay_s = 0.0
        assert client.post(CHAT, json=HELLO).status_code == 200


def test_a_hung_generation_fails_at_the_deadline_and_the_next_request_succeeds(tmp_path):
    fake = FakePipeline()
    fake.fail = lambda: (time.sleep(2.0), setattr(fake, "fail", None))  # no events at all for 2 s
    with serve(fake, tmp_path=tmp_path, deadline_s=1.5) as client:
        start = time.monotonic()
        assert client.post(CHAT, json=HELLO).status_code == 504
        assert time.monotonic() - start < 2.0
        assert client.post(CHAT, json=HELLO).status_code == 200  # waits for the hung one to return, then runs


# ---- 9. disconnect cancels -------------------------------------------------------------------------------
def test_streaming_client_disconnect_stops_generation_and_frees_the_slot(tmp_path):
    fake = FakePipeline(tokens=300, delay_s=0.05)
    with serve(fake, tmp_path=tmp_path) as client:
        with client.stream("POST", CHAT, json={**HELLO, "stream": True}) as response:
            lines = response.iter_lines()
            assert [next(lines) for _ in range(3)]
        assert wait_for(lambda: fake.stopped_early == 1 and fake.running == 0, 3), fake
        fake.tokens, fake.delay_s = 3, 0.0
        assert client.post(CHAT, json=HELLO).status_code == 200
        assert wait_for(lambda: not list(client.work_dir.glob("request-*")))  # per-request files removed


def test_non_streaming_client_disconnect_stops_generation(tmp_path):
    fake = FakePipeline(tokens=300, delay_s=0.05)
    with serve(fake, tmp_path=tmp_path) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(CHAT, json=HELLO, timeout=0.5)
        assert wait_for(lambda: fake.stopped_early == 1 and fake.running == 0, 3), fake


# ---- 10. health ------------------------------------------------------------------------------------------
def test_health_is_503_while_loading_and_after_a_failed_load(tmp_path):
    release = threading.Event()
    runner = Runner()
    runner.load_in_background(lambda: (release.wait(10), FakePipeline())[1])
    with serve(runner=runner, tmp_path=tmp_path) as client:
        assert client.get("/health").status_code == 503
        assert client.get("/health").json()["status"] == "loading"
        response = client.post(CHAT, json=HELLO)
        assert response.status_code == 503 and "loading" in response.json()["error"]["message"]
        release.set()
        assert wait_for(lambda: client.get("/health").status_code == 200)
        assert client.post(CHAT, json=HELLO).status_code == 200

    broken = Runner()
    broken.load_in_background(lambda: (_ for _ in ()).throw(FileNotFoundError("/secret/config.json missing")))
    with serve(runner=broken, tmp_path=tmp_path) as client:
        assert wait_for(lambda: client.get("/health").json()["status"] == "failed")
        assert client.get("/health").status_code == 503
        response = client.post(CHAT, json=HELLO)
        assert response.status_code == 503 and "secret" not in response.text


# ---- 11. API key -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path", [("GET", "/v1/models"), ("POST", CHAT), ("POST", "/v1/files"),
                                          ("GET", "/v1/files/file-x/content"), ("GET", "/nowhere")])
def test_api_key_is_required_on_every_route_but_health(tmp_path, method, path):
    fake = FakePipeline()
    with serve(fake, api_key="sk-test", tmp_path=tmp_path) as client:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "sk-test"}):
            response = client.request(method, path, json=HELLO, headers=headers)
            assert response.status_code == 401, (headers, response.text)
        assert client.get("/health").status_code == 200
        ok = {"authorization": "Bearer sk-test"}
        assert client.get("/v1/models", headers=ok).status_code == 200
        assert client.post(CHAT, json=HELLO, headers=ok).status_code == 200
    assert fake.started == 1
