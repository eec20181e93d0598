"""``nextgpt serve``: the OpenAI-compatible HTTP API (FastAPI + uvicorn), see docs/api.md."""
from __future__ import annotations

import argparse
import functools
import logging
import os
from typing import Callable

from nextgpt.cli import add_model_options, command, load_pipeline

logger = logging.getLogger(__name__)


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """Queue, deadline and upload limits shared by ``serve`` and ``app``."""
    from nextgpt.apps.limits import ServeLimits

    defaults = ServeLimits()
    group = parser.add_argument_group("limits")
    group.add_argument("--max-queue", type=int, default=defaults.max_queue, help="requests that may wait; more → busy")
    group.add_argument("--deadline", type=float, default=defaults.deadline_s,
                       help="seconds per request, waiting included")
    group.add_argument("--max-upload-mb", type=float, default=defaults.max_media_bytes / 1e6, help="largest media file")
    group.add_argument("--max-new-tokens-limit", type=int, default=defaults.max_new_tokens,
                       help="the most new tokens a request may ask for")


def limits_from(args: argparse.Namespace, **extra: object) -> object:
    from nextgpt.apps.limits import ServeLimits

    media_bytes = int(args.max_upload_mb * 1e6)
    return ServeLimits(max_queue=args.max_queue, deadline_s=args.deadline, max_media_bytes=media_bytes,
                       max_new_tokens=args.max_new_tokens_limit,
                       max_body_bytes=max(ServeLimits().max_body_bytes, 2 * media_bytes), **extra)


@command("serve", "OpenAI-compatible HTTP API: /v1/chat/completions (SSE streaming), /v1/models, /health")
def _serve(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (anything but loopback needs --api-key)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=os.environ.get("NEXTGPT_API_KEY"),
                        help="require 'Authorization: Bearer KEY' (default: $NEXTGPT_API_KEY)")
    parser.add_argument("--output-dir", default="nextgpt-outputs", help="where generated media are written")
    parser.add_argument("--model-name", default="nextgpt", help="the id listed by /v1/models")
    add_model_options(parser)
    add_limit_options(parser)

    def run(args: argparse.Namespace) -> int:
        import uvicorn

        from nextgpt.apps.exposure import check_exposure
        from nextgpt.apps.runner import Runner
        from nextgpt.apps.server import create_app

        check_exposure(args.host, authenticated=bool(args.api_key), how_to_authenticate="--api-key")
        limits = limits_from(args)
        runner = Runner(max_concurrency=limits.max_concurrency, max_queue=limits.max_queue,
                        deadline_s=limits.deadline_s)
        runner.load_in_background(functools.partial(load_pipeline, args))  # /health is 503 until loaded
        app = create_app(runner, output_dir=args.output_dir, limits=limits, api_key=args.api_key,
                         model_name=args.model_name)
        print(f"serving on http://{args.host}:{args.port}/v1 (health: /health); Ctrl+C stops")
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False,
                    limit_concurrency=64, timeout_graceful_shutdown=5)
        return 0

    return run
