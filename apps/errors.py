"""What a user is told when a request fails: an HTTP status and a short message without internals (item 6).

Errors the user can act on (bad input, limits, busy, deadline) keep their message, with absolute paths cut to
file names. Anything else is logged with its traceback under a reference id, and the user sees only the id.
"""
from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass

from .runner import Busy, Cancelled, DeadlineExceeded, NotReady

logger = logging.getLogger(__name__)

_ABSOLUTE_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/:]+)+[\\/]([^\s'\"\\/:]+)")
_MAX_MESSAGE_CHARS = 500


class RequestError(ValueError):
    """A request refused by a check of the surface itself (body size, media count, ...), with its HTTP status."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class PublicError:
    """How a failure is reported: ``status`` for HTTP, ``kind`` in OpenAI's ``error.type`` vocabulary."""

    status: int
    kind: str
    message: str


def scrub(text: str) -> str:
    """Cut absolute paths down to their file names and bound the length."""
    text = _ABSOLUTE_PATH.sub(lambda m: m.group(1), text)
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "…"


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(error, torch.OutOfMemoryError)


def _free_accelerator_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort after an OOM
        logger.debug("could not empty the CUDA cache", exc_info=True)


def public_error(error: BaseException) -> PublicError:
    """Map an exception raised while serving a request to what the client may see."""
    if isinstance(error, RequestError):
        return PublicError(error.status, error.kind, scrub(str(error)))
    if isinstance(error, Busy):
        return PublicError(429, "rate_limit_error", str(error))
    if isinstance(error, DeadlineExceeded):
        return PublicError(504, "timeout_error", str(error))
    if isinstance(error, NotReady):
        state = "failed to load; see the server log" if str(error) != "loading" else "is still loading; retry shortly"
        return PublicError(503, "server_error", f"the model {state}")
    if isinstance(error, (Cancelled, ConnectionAbortedError)):
        return PublicError(499, "cancelled", str(error))
    if _is_out_of_memory(error):
        _free_accelerator_memory()
        logger.error("out of memory while serving a request: %r", error)
        return PublicError(503, "server_error", "the server ran out of memory for this request; try fewer or "
                                                "smaller media, fewer diffusion steps or fewer max_tokens")
    if isinstance(error, (ValueError, KeyError, FileNotFoundError)):  # MediaError is a ValueError
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        return PublicError(400, "invalid_request_error", scrub(str(message)))
    reference = uuid.uuid4().hex[:12]
    logger.error("internal error %s", reference, exc_info=error)
    return PublicError(500, "server_error",
                       f"internal error (reference {reference}); the details are in the server log")
