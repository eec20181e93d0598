"""Time of the toy audio decoder's data and training with numpy's BLAS pool at its default (one thread per core)
÷ the same with the pool limited to one thread (what ``nextgpt.threads.limit_cpu_threads`` does), both on one torch
thread beside ``--busy`` other processes that keep a core each busy — the situation of a build's part workers.

Usage::

    python bench/bench_threads.py [--busy 1] [--batches 20] [--steps 20]

Prints, for each measurement, the seconds of both settings and their ratio (default ÷ limited): > 1 means the
limit makes it faster. Measured on a 2-core machine; on a machine with idle cores the ratio falls towards 1.
"""
from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time


def _busy(stop) -> None:
    import torch

    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def _frames_seconds(batches: int) -> float:
    import numpy as np

    from nextgpt.toyworld.split import make_split
    from nextgpt.toyworld.train_decoders import _pixels

    meanings = make_split().meanings("audio", "train")
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(batches):
        _pixels("audio", [meanings[i] for i in rng.integers(len(meanings), size=16)], rng)
    return time.perf_counter() - started


def _training_seconds(steps: int) -> float:
    from nextgpt.toyworld.train_decoders import train_toy_decoder

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        train_toy_decoder("audio", out, steps=steps, vae_steps=2, eval_count=0)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, default=1, help="other busy processes (default 1: the other worker)")
    parser.add_argument("--batches", type=int, default=20, help="batches of 16 clips' harmonic frames (default 20)")
    parser.add_argument("--steps", type=int, default=20, help="audio decoder UNet steps (default 20)")
    args = parser.parse_args()

    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    torch.set_num_threads(1)
    default = max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    workers = [context.Process(target=_busy, args=(stop,)) for _ in range(args.busy)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(2.0)
        _training_seconds(1)  # imports and first-call costs out of the measurements
        rows = []
        for name, run in (("harmonic frames, %d batches of 16 clips" % args.batches,
                           lambda: _frames_seconds(args.batches)),
                          ("audio decoder, %d UNet steps (setup included)" % args.steps,
                           lambda: _training_seconds(args.steps))):
            with threadpool_limits(limits=default, user_api="blas"):
                slow = run()
            with threadpool_limits(limits=1, user_api="blas"):
                fast = run()
            rows.append((name, slow, fast))
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    print(f"BLAS threads: default {default} vs 1; torch threads 1; {args.busy} busy process(es) beside")
    for name, slow, fast in rows:
        print(f"{name}: {slow:.2f} s vs {fast:.2f} s — ratio {slow / fast:.2f}")


if __name__ == "__main__":
    main()
