"""Test and benchmark helpers: a scriptable stand-in for ``NextGPT`` and a live uvicorn server on loopback.

``FakePipeline`` has the public methods the surfaces use (``config``, ``context_length``,
``count_prompt_tokens``, ``stream``, ``chat``) and can be slow, hang or fail on demand, which the real tiny
model cannot do on cue (queue overflow, deadlines, disconnects, out-of-memory).
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Iterator

from nextgpt.config import MediaLimits
from nextgpt.events import Event, Finished, TextDelta
from nextgpt.types import Message, Response


@dataclass
class FakePipeline:
    """Yields ``tokens`` text deltas, ``delay_s`` apart, then Finished.

    Args:
        tokens: number of text deltas per answer.
        delay_s: pause before each delta (a hang is a large value: it still notices cancellation per delta).
        fail: called at the start of each generation; raise from it to simulate a crash or an OOM.
        context: the context length reported to the server.
    """

    tokens: int = 5
    delay_s: float = 0.0
    fail: Callable[[], None] | None = None
    context: int = 256
    started: int = 0
    completed: int = 0
    stopped_early: int = 0
    running: int = 0
    max_running: int = 0
    media_seen: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def config(self) -> Any:
        modality = SimpleNamespace
        return SimpleNamespace(
            name="fake",
            modalities=[modality(name=n) for n in ("image", "audio", "video")],
            input_modalities=[modality(name=n) for n in ("image", "audio", "video")],
            output_modalities=[modality(name=n) for n in ("image", "audio", "video")],
            encoder=SimpleNamespace(limits=MediaLimits()),
        )

    @property
    def context_length(self) -> int:
        return self.context

    def count_prompt_tokens(self, messages: Any) -> int:
        text = messages if isinstance(messages, str) else " ".join(
            m.text if isinstance(m, Message) else str(m.get("content", "")) for m in messages)
        return len(text.split()) + 4

    def stream(self, messages: Any, options: Any = None, **kwargs: Any) -> Iterator[Event]:
        for message in [] if isinstance(messages, str) else messages:
            self.media_seen += [str(m.source) for m in getattr(message, "media", [])]
        with self._lock:
            self.started += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        finished = False
        try:
            if self.fail is not None:
                self.fail()
            for index in range(self.tokens):
                time.sleep(self.delay_s)
                yield TextDelta(f"w{index} ")
            finished = True
            yield Finished(Response(text=" ".join(f"w{i}" for i in range(self.tokens)), prompt_tokens=4,
                                    completion_tokens=self.tokens, finish_reason="length"))
        finally:
            with self._lock:
                self.running -= 1
                self.completed += finished
                self.stopped_early += not finished

    def chat(self, messages: Any, options: Any = None, **kwargs: Any) -> Response:
        for event in self.stream(messages, options, **kwargs):
            if isinstance(event, Finished):
                return event.response
        raise RuntimeError("no response")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """Run an ASGI app with uvicorn in a thread on 127.0.0.1 (``with LiveServer(app) as server: server.url``)."""

    def __init__(self, app: Any, port: int | None = None, startup_timeout_s: float = 20.0) -> None:
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.startup_timeout_s = startup_timeout_s
        self._thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the server on {self.url} did not start within {self.startup_timeout_s} s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
