"""``nextgpt app``: the Gradio multimodal chat (apps/gradio_app.py) on 127.0.0.1."""
from __future__ import annotations

import argparse
import os
from typing import Callable

from nextgpt.cli import add_model_options, command, load_pipeline
from nextgpt.commands.serve import add_limit_options, limits_from


def _credentials(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth must look like USER:PASSWORD")
    return user, password


@command("app", "Gradio multimodal chat in the browser (binds 127.0.0.1; runs the tiny preset offline by default)")
def _app(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (anything but loopback needs --auth)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="public gradio.live link (needs --auth)")
    parser.add_argument("--auth", default=os.environ.get("NEXTGPT_APP_AUTH"),
                        help="USER:PASSWORD login (default: $NEXTGPT_APP_AUTH)")
    parser.add_argument("--output-dir", default="nextgpt-outputs", help="where generated media are written")
    parser.add_argument("--no-agent", action="store_true", help="leave out the agent tab")
    add_model_options(parser)
    add_limit_options(parser)

    def run(args: argparse.Namespace) -> int:
        from nextgpt.apps.exposure import check_exposure

        auth = _credentials(args.auth)
        check_exposure(args.host, share=args.share, authenticated=auth is not None,
                       how_to_authenticate="--auth USER:PASSWORD")  # before the slow model load
        from nextgpt.apps.gradio_app import build_demo, launch_demo

        limits = limits_from(args)
        demo = build_demo(load_pipeline(args), output_dir=args.output_dir, limits=limits, agent=not args.no_agent)
        print(f"open http://{args.host}:{args.port} (Ctrl+C stops)")
        launch_demo(demo, output_dir=args.output_dir, limits=limits, host=args.host, port=args.port,
                    share=args.share, auth=auth)
        return 0

    return run
