"""OpenAI-compatible HTTP API: ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``, files, ``/health``.

Built with ``create_app(runner, ...)`` so tests can drive it with any pipeline-like object. Every request is
checked (body size, media count and size, prompt tokens + max_tokens against the context) before any model
work; generations go through the ``Runner`` (bounded queue, deadline, cancellation). A client that
disconnects cancels its generation; an error in one request (including out-of-memory) becomes an error
response and the server keeps serving. See docs/api.md.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import anyio
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from nextgpt.events import Finished, MediaReady, TextDelta

from . import openai_schema as schema
from .content import ContentParser, media_part
from .errors import PublicError, RequestError, public_error
from .files import FileStore
from .limits import ServeLimits
from .middleware import APIKeyMiddleware, BodyLimitMiddleware
from .runner import NotReady, Runner

logger = logging.getLogger(__name__)

_END = object()
_DISCONNECT_POLL_S = 0.2


def create_app(runner: Runner, *, output_dir: str | Path, limits: ServeLimits = ServeLimits(),
               api_key: str | None = None, model_name: str = "nextgpt") -> FastAPI:
    """The FastAPI application.

    Args:
        runner: owns the pipeline (possibly still loading) and the queue.
        output_dir: where generated media are written (served only by file id).
        limits: request and queue limits.
        api_key: when set, every route but /health needs ``Authorization: Bearer <api_key>``.
        model_name: the id listed by /v1/models.
    """
    output_dir = Path(output_dir).resolve()
    work_dir = Path(tempfile.mkdtemp(prefix="nextgpt-serve-"))
    files = FileStore(work_dir / "uploads", limits.max_stored_files)
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        shutil.rmtree(work_dir, ignore_errors=True)  # uploads and per-request media

    app = FastAPI(title="nextgpt", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    if api_key:
        app.add_middleware(APIKeyMiddleware, api_key=api_key)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        return JSONResponse(schema.error_body(str(error.detail), kind, error.status_code), error.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in error.errors())
        return JSONResponse(schema.error_body(f"invalid request: {problems}"[:500], "invalid_request_error", 400), 400)

    def fail(error: BaseException) -> JSONResponse:
        public = public_error(error)
        return JSONResponse(schema.error_body(public.message, public.kind, public.status), public.status,
                            headers={"retry-after": "1"} if public.status in (429, 503) else None)

    @app.get("/health")
    async def health() -> JSONResponse:
        status = runner.status
        return JSONResponse({"status": status, **runner.load}, 200 if status == "ready" else 503)

    @app.get("/v1/models")
    async def models() -> dict:
        entry: dict[str, Any] = {"id": model_name, "object": "model", "created": 0, "owned_by": "nextgpt"}
        if runner.pipeline is not None:
            config = runner.pipeline.config
            entry["input_modalities"] = ["text", *(m.name for m in config.input_modalities)]
            entry["output_modalities"] = ["text", *(m.name for m in config.output_modalities)]
        return {"object": "list", "data": [entry]}

    @app.post("/v1/files")
    async def upload(file: UploadFile = File(...), purpose: str = Form("user_data")) -> dict:
        data = await file.read(limits.max_media_bytes + 1)
        if len(data) > limits.max_media_bytes:
            raise HTTPException(413, f"the file is over the limit of {limits.max_media_bytes / 1e6:.1f} MB "
                                     "(max_media_bytes)")
        return files.add_upload(data, file.filename or "upload").as_openai()

    @app.get("/v1/files/{file_id}")
    async def file_info(file_id: str) -> dict:
        return _known(files, file_id).as_openai()

    @app.get("/v1/files/{file_id}/content")
    async def file_content(file_id: str) -> FileResponse:
        record = _known(files, file_id)
        if record.purpose != "output":
            raise HTTPException(404, "only generated files can be downloaded")
        return FileResponse(record.path, media_type=record.mime_type, filename=record.filename)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: schema.ChatRequest, request: Request) -> Any:
        pipeline = runner.pipeline
        if pipeline is None:
            return fail(NotReady(runner.load_error or "loading"))
        folder = Path(tempfile.mkdtemp(prefix="request-", dir=work_dir))
        try:
            messages, options = await anyio.to_thread.run_sync(_prepare, pipeline, body, folder, files, limits,
                                                               str(output_dir))
        except Exception as error:  # noqa: BLE001 - every refusal becomes a JSON error
            shutil.rmtree(folder, ignore_errors=True)
            return fail(error)
        cid, model = schema.completion_id(), body.model or model_name
        as_file = body.nextgpt.media_format == "file"
        cancel = threading.Event()
        events = _events(runner, messages, options, cancel)

        async def cleanup() -> None:  # idempotent; runs however the request ends
            cancel.set()
            with anyio.CancelScope(shield=True), contextlib.suppress(RuntimeError):
                await events.aclose()
            shutil.rmtree(folder, ignore_errors=True)

        if not body.stream:
            try:
                return await _complete(events, request, cancel, cid, model, files, as_file)
            except Exception as error:  # noqa: BLE001
                return fail(error)
            finally:
                await cleanup()
        try:  # wait for the first event, so that refusals (busy, bad media) are still HTTP errors
            first = await _until_disconnect(anext(events, _END), request, cancel)
        except Exception as error:  # noqa: BLE001
            await cleanup()
            return fail(error)
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        sse = _sse(first, events, request, cancel, cid, model, files, as_file, include_usage)
        return _ClosingStreamingResponse(sse, cleanup, media_type="text/event-stream",
                                         headers={"cache-control": "no-cache"})

    app.state.runner = runner
    app.state.files = files
    app.state.work_dir = work_dir
    return app


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its body iterator and runs ``cleanup`` however the response ends: starlette leaves the iterator
    suspended when a write fails because the client left, and then the generation would run on to the end."""

    def __init__(self, content: AsyncIterator[bytes], cleanup: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.cleanup = cleanup

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
                await self.cleanup()


def _known(files: FileStore, file_id: str) -> Any:
    record = files.get(file_id)
    if record is None or not record.path.is_file():
        raise HTTPException(404, "no such file id")
    return record


def _prepare(pipeline: Any, body: schema.ChatRequest, folder: Path, files: FileStore, limits: ServeLimits,
             output_dir: str) -> tuple[list, Any]:
    """All checks before model work (runs in a worker thread: it decodes base64 and writes files)."""
    config = pipeline.config
    outputs = [m.name for m in config.output_modalities]
    options = body.options(limits, outputs, output_dir)
    parser = ContentParser(limits, files, [m.name for m in config.input_modalities])
    parsed = parser.parse(body.messages, folder)
    context = pipeline.context_length
    if context is not None:
        prompt_tokens = pipeline.count_prompt_tokens(parsed.messages)
        if prompt_tokens + options.max_new_tokens > context:
            raise RequestError(f"prompt tokens ({prompt_tokens}) + max_tokens ({options.max_new_tokens}) = "
                               f"{prompt_tokens + options.max_new_tokens}, over the model's context of {context} "
                               "tokens (context_length); shorten the conversation or lower max_tokens")
    return parsed.messages, options


async def _events(runner: Runner, messages: list, options: Any, cancel: threading.Event) -> AsyncIterator[Any]:
    """The runner's blocking event stream, one ``next`` per worker-thread hop."""
    iterator: Iterator = runner.stream(messages, options, cancelled=cancel.is_set)
    try:
        while True:
            event = await anyio.to_thread.run_sync(next, iterator, _END, abandon_on_cancel=True)
            if event is _END:
                return
            yield event
    finally:
        cancel.set()
        try:
            iterator.close()  # a suspended runner stream stops its generation now
        except ValueError:
            pass  # still inside an abandoned next(): it sees ``cancel`` within the runner's poll interval


async def _until_disconnect(awaitable: Any, request: Request, cancel: threading.Event) -> Any:
    """Await ``awaitable``; if the client disconnects first, cancel it and raise."""
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                logger.info("client disconnected; cancelling its generation")
                cancel.set()
                task.cancel()
                raise ConnectionAbortedError("client disconnected")
    finally:
        if not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):  # let it finish, so its generator can be closed afterwards
                await asyncio.wait({task})


async def _complete(events: AsyncIterator, request: Request, cancel: threading.Event, cid: str, model: str,
                    files: FileStore, as_file: bool) -> JSONResponse:
    async def collect() -> Any:
        async for event in events:
            if isinstance(event, Finished):
                return event.response
        raise RuntimeError("the generation ended without a response")

    response = await _until_disconnect(collect(), request, cancel)
    media = [media_part(item, files, as_file) for item in response.media]
    return JSONResponse(schema.completion(cid, model, response, media))


async def _sse(first: Any, events: AsyncIterator, request: Request, cancel: threading.Event, cid: str,
               model: str, files: FileStore, as_file: bool, include_usage: bool) -> AsyncIterator[bytes]:
    """Server-sent events. A disconnect is noticed while waiting for the next event (not only on the next
    write), so a generation that is busy decoding is cancelled as well."""

    def line(data: dict) -> bytes:
        return f"data: {json.dumps(data)}\n\n".encode()

    try:
        yield line(schema.chunk(cid, model, {"role": "assistant", "content": ""}))
        event = first
        while event is not _END:
            if isinstance(event, TextDelta) and event.text:
                yield line(schema.chunk(cid, model, {"content": event.text}))
            elif isinstance(event, MediaReady):
                yield line(schema.chunk(cid, model, {"media": [media_part(event.media, files, as_file)]}))
            elif isinstance(event, Finished):
                extra = {"usage": schema.usage(event.response)} if include_usage else None
                yield line(schema.chunk(cid, model, {}, event.response.finish_reason, extra))
            event = await _until_disconnect(anext(events, _END), request, cancel)
        yield b"data: [DONE]\n\n"
    except ConnectionAbortedError:
        return
    except Exception as error:  # noqa: BLE001 - the status line is sent: report the error in the stream
        public: PublicError = public_error(error)
        yield line(schema.error_body(public.message, public.kind, public.status))
    finally:
        cancel.set()  # the response's cleanup closes the event stream and removes the request's files


__all__ = ["create_app"]
