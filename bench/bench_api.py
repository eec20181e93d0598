"""Benchmark of the HTTP API: throughput with N concurrent clients ÷ one client, and time to first streamed
token ÷ full answer time.

Starts ``nextgpt serve``'s app in-process on 127.0.0.1 with the tiny preset (or uses ``--url`` of a running
server) and sends identical text requests (``--modalities image`` etc. adds forced media).

    python bench/bench_api.py --clients 4 --requests 8 --max-tokens 32
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import statistics
import sys
import tempfile
import time
from typing import Iterator

import httpx


def body(args: argparse.Namespace, stream: bool) -> dict:
    return {"model": "nextgpt", "messages": [{"role": "user", "content": "Tell me about a red circle."}],
            "max_tokens": args.max_tokens, "stream": stream, "seed": 0,
            "modalities": ["text", *args.modalities] if args.modalities else None,
            "nextgpt": {"steps": 2, "media_format": "file"}}


def one_request(client: httpx.Client, args: argparse.Namespace) -> None:
    response = client.post("/v1/chat/completions", json=body(args, stream=False))
    response.raise_for_status()


def throughput(url: str, args: argparse.Namespace, clients: int) -> float:
    """Requests per second with ``clients`` concurrent clients sending ``args.requests`` requests in all."""
    with httpx.Client(base_url=url, timeout=600) as client:
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda _: one_request(client, args), range(args.requests)))
        return args.requests / (time.perf_counter() - start)


def first_token_ratio(url: str, args: argparse.Namespace) -> tuple[float, float, float]:
    """Median time to the first content delta, median total time, and the median of their ratios."""
    firsts, totals = [], []
    with httpx.Client(base_url=url, timeout=600) as client:
        for _ in range(args.stream_requests):
            start, first = time.perf_counter(), None
            with client.stream("POST", "/v1/chat/completions", json=body(args, stream=True)) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if first is None and line.startswith("data: {"):
                        delta = json.loads(line[6:])["choices"][0]["delta"]
                        if delta.get("content"):
                            first = time.perf_counter() - start
            totals.append(time.perf_counter() - start)
            firsts.append(first if first is not None else totals[-1])
    ratios = [f / t for f, t in zip(firsts, totals)]
    return statistics.median(firsts), statistics.median(totals), statistics.median(ratios)


@contextlib.contextmanager
def local_server(args: argparse.Namespace) -> Iterator[str]:
    from nextgpt.apps.limits import ServeLimits
    from nextgpt.apps.runner import Runner
    from nextgpt.apps.server import create_app
    from nextgpt.apps.testing import LiveServer
    from nextgpt.pipeline import NextGPT

    limits = ServeLimits(max_queue=max(8, args.clients * 2), deadline_s=600)
    runner = Runner(NextGPT.from_preset(args.preset), max_queue=limits.max_queue, deadline_s=limits.deadline_s)
    with tempfile.TemporaryDirectory() as out:
        app = create_app(runner, output_dir=out, limits=limits)
        with LiveServer(app) as server:
            yield server.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--clients", type=int, default=4, help="N concurrent clients")
    parser.add_argument("--requests", type=int, default=8, help="requests per throughput run")
    parser.add_argument("--stream-requests", type=int, default=5, help="streamed requests for the first-token ratio")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--modalities", nargs="*", default=[], help="media to force, e.g. image audio")
    args = parser.parse_args(argv)

    with contextlib.nullcontext(args.url) if args.url else local_server(args) as url:
        one_request(httpx.Client(base_url=url, timeout=600), args)  # warm-up
        single = throughput(url, args, 1)
        concurrent_rps = throughput(url, args, args.clients)
        first, total, ratio = first_token_ratio(url, args)
    media = ", forced " + "+".join(args.modalities) if args.modalities else ""
    print(f"workload: {args.requests} requests, max_tokens={args.max_tokens}{media}, preset={args.preset}")
    print(f"throughput, 1 client:        {single:.2f} req/s")
    print(f"throughput, {args.clients} clients:       {concurrent_rps:.2f} req/s")
    print(f"throughput ratio N/1 (N={args.clients}):  {concurrent_rps / single:.2f}  "
          "(the pipeline runs one generation at a time, so ≈1 is expected)")
    print(f"time to first token:         {first * 1000:.0f} ms (median of {args.stream_requests})")
    print(f"full streamed answer:        {total * 1000:.0f} ms (median)")
    print(f"first token / full answer:   {ratio:.3f} (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
