"""ASGI middleware of the HTTP API: optional API key (item 11) and a request-body cap (item 8), both applied
before a route reads anything."""
from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

from starlette.exceptions import HTTPException

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

OPEN_PATHS = frozenset({"/health"})


async def _send_json(send: Callable, status: int, message: str, kind: str,
                     headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class APIKeyMiddleware:
    """Every route but /health needs ``Authorization: Bearer KEY`` when a key is set (compared in constant time)."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _send_json(send, 401, "missing or wrong API key; send 'Authorization: Bearer <key>'",
                                 "authentication_error", {"www-authenticate": "Bearer"})
                return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the cap; the app's HTTPException handler answers 413."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413: by Content-Length up front, else while reading.

    Add it with ``app.add_middleware`` so that the ``BodyTooLarge`` raised while a route reads reaches the
    app's exception handlers."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"the request body is over the limit of {self.max_bytes / 1e6:.1f} MB (max_body_bytes)"

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, self._message(), "invalid_request_error")
            return
        received = 0

        async def counting_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self._message())
            return message

        await self.app(scope, counting_receive, send)
