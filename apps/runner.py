"""Admission, deadline and cancellation around ``NextGPT.stream`` for the app and the HTTP API.

One ``Runner`` owns the pipeline for a server. It admits at most ``max_concurrency`` generations at once and
lets at most ``max_queue`` more wait; anyone beyond that gets :class:`Busy` at once (reliability.md item 5).
Each request has a wall-clock deadline, waiting included (item 7); a consumer that goes away or passes its
deadline stops the generation at the next event (item 9).

The generation itself runs in a worker thread, so a consumer is never stuck behind a generation that stopped
producing events: it raises at its deadline, while the worker keeps the slot until the pipeline has actually
returned. That keeps the pipeline's one-generation-at-a-time contract even when a generation hangs. The worker
checks the deadline and the consumer's ``cancelled`` itself at every event, so a generation also stops when
its consumer is suspended and never asks for the next event again.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator

from nextgpt.events import Event, Finished

logger = logging.getLogger(__name__)

_POLL_S = 0.05
_DONE = object()


class Busy(RuntimeError):
    """Every slot is taken and the waiting line is full."""


class DeadlineExceeded(TimeoutError):
    """The request ran past its deadline; its generation was cancelled."""


class NotReady(RuntimeError):
    """The model is still loading, or failed to load."""


class Cancelled(RuntimeError):
    """The consumer went away; the generation was stopped."""


class Runner:
    """Runs generations for many callers, one (``max_concurrency``) at a time.

    Args:
        pipeline: a loaded ``NextGPT`` (or anything with its ``stream``), or None while ``load`` runs.
        max_concurrency / max_queue / deadline_s: see ``apps.limits.ServeLimits``.
    """

    def __init__(self, pipeline: Any = None, *, max_concurrency: int = 1, max_queue: int = 8,
                 deadline_s: float = 300.0) -> None:
        self.pipeline = pipeline
        self.max_queue = max_queue
        self.deadline_s = deadline_s
        self.load_error: str | None = None
        self._slots = threading.Semaphore(max_concurrency)
        self._lock = threading.Lock()
        self._waiting = 0
        self._running = 0

    # ---- loading -------------------------------------------------------------------------------------
    def load_in_background(self, loader: Callable[[], Any]) -> threading.Thread:
        """Call ``loader()`` in a thread; until it returns, ``status`` is "loading" and requests get NotReady."""

        def work() -> None:
            try:
                self.pipeline = loader()
                logger.info("model loaded")
            except BaseException as error:  # noqa: BLE001 - reported by /health, never raised into the server
                logger.exception("loading the model failed")
                self.load_error = f"{type(error).__name__}: {error}"

        thread = threading.Thread(target=work, name="nextgpt-load", daemon=True)
        thread.start()
        return thread

    @property
    def status(self) -> str:
        """"ready", "loading" or "failed"."""
        if self.pipeline is not None:
            return "ready"
        return "failed" if self.load_error else "loading"

    @property
    def load(self) -> dict[str, int]:
        with self._lock:
            return {"running": self._running, "waiting": self._waiting}

    # ---- running -------------------------------------------------------------------------------------
    def stream(self, messages: Any, options: Any, *, cancelled: Callable[[], bool] | None = None) -> Iterator[Event]:
        """Yield the pipeline's events for one request.

        Raises:
            NotReady: the model is not loaded. Busy: the waiting line is full.
            DeadlineExceeded: waiting plus generating took longer than ``deadline_s``.
            Cancelled: ``cancelled()`` became true (the client left).
            Whatever the pipeline raises (ValueError for bad input, MemoryError, ...).
        """
        pipeline = self.pipeline
        if pipeline is None:
            raise NotReady(self.load_error or "loading")
        cancelled = cancelled or (lambda: False)
        deadline = time.monotonic() + self.deadline_s
        self._admit(deadline, cancelled)
        events: queue.Queue = queue.Queue()
        stop = threading.Event()

        def should_stop() -> bool:  # the worker asks too: a consumer may be suspended and never look again
            return stop.is_set() or cancelled() or time.monotonic() > deadline

        threading.Thread(target=self._work, args=(pipeline, messages, options, events, should_stop),
                         name="nextgpt-request", daemon=True).start()
        finished = False
        try:
            while True:
                self._check(deadline, cancelled)
                try:
                    item = events.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is _DONE:
                    if not finished:
                        self._check(deadline, cancelled)  # a worker that stopped early: say why
                    return
                if isinstance(item, BaseException):
                    raise item
                finished = isinstance(item, Finished)
                yield item
        finally:
            stop.set()

    def _admit(self, deadline: float, cancelled: Callable[[], bool]) -> None:
        with self._lock:
            if self._waiting >= self.max_queue:
                raise Busy(f"the server is busy ({self._waiting} requests waiting, the limit is {self.max_queue}); "
                           "retry in a moment")
            self._waiting += 1
        try:
            while not self._slots.acquire(timeout=_POLL_S):
                self._check(deadline, cancelled)
        finally:
            with self._lock:
                self._waiting -= 1
        with self._lock:
            self._running += 1

    def _check(self, deadline: float, cancelled: Callable[[], bool]) -> None:
        if cancelled():
            raise Cancelled("the client went away")
        if time.monotonic() > deadline:
            raise DeadlineExceeded(f"the request took longer than its {self.deadline_s:g} s deadline and was stopped")

    def _work(self, pipeline: Any, messages: Any, options: Any, events: queue.Queue,
              should_stop: Callable[[], bool]) -> None:
        """Worker thread: forward events until done or told to stop; the slot is freed only when the pipeline
        has really returned."""
        try:
            stream = pipeline.stream(messages, options)
            try:
                for event in stream:
                    if should_stop():
                        logger.info("generation stopped: its request ended")
                        break
                    events.put(event)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()  # NextGPT.stream stops generating at the next token
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which decides what the user sees
            events.put(error)
        finally:
            events.put(_DONE)
            with self._lock:
                self._running -= 1
            self._slots.release()
