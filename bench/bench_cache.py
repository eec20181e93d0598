"""Steps per second of stage 1 and stage 2 with the feature cache ÷ without it (live encoding).

Usage::

    python bench/bench_cache.py [--steps 30] [--image-size 256] [--preset tiny]

Builds synthetic data, caches its features with ``build_cache``, then runs the tiny stage recipes for
``--steps`` optimizer steps each way and prints steps/s and the ratio (target ≥ 5×). Time is measured over the
optimizer steps after the first one (model building, lazy decoder loading and saving excluded). With the tiny
preset the frozen parts are small — above all the decoders' text encoders, which stage 2 saves — so the ratio
understates what the cache saves with ImageBind-huge and the real decoders' text encoders.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch
from accelerate import Accelerator

from nextgpt.training import Trainer, load_train_config, synthetic
from nextgpt.training.cache_build import build_cache
from nextgpt.training.data import read_dialogues
from nextgpt.training.trainer import load_pipeline


def steps_per_second(stage: int, data: Path, out: Path, steps: int, cache_dir: Path | None, preset: str,
                     batch_size: int) -> float:
    sets = [f"model={{preset: {preset}}}", f"data.train=[{data}]", f"output_dir={out}", f"max_steps={steps}",
            "progress_bar=false", "log_with=[]", f"data.batch_size={batch_size}",
            f"data.cache_dir={cache_dir if cache_dir else 'null'}"]
    trainer = Trainer(load_train_config(f"configs/tiny/stage{stage}.yaml", sets))
    trainer.train()
    times = trainer.step_times  # from the end of step 1: one-time costs (lazy pipeline builds) excluded
    return (len(times) - 1) / (times[-1] - times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=256, help="side of the synthetic PNGs")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthetic.write_images(root / "media", size=args.image_size)
        files = {1: synthetic.caption_pairs(root, repeat=4), 2: synthetic.generation_pairs(root, repeat=4)}
        # caption_pairs rewrites the images at the default size: write the benchmark size again
        synthetic.write_images(root / "media", size=args.image_size)
        config = load_train_config("configs/tiny/stage1.yaml", [f"model={{preset: {args.preset}}}",
                                                                 f"data.train=[{files[1]}]"])
        pipe = load_pipeline(config, "cpu")
        dialogues = read_dialogues(list(files.values()), [m.name for m in pipe.config.modalities])
        build_cache(pipe, dialogues, root / "cache", Accelerator(cpu=True))
        print(f"preset {args.preset}, {args.steps} steps, batch {args.batch_size}, images "
              f"{args.image_size}px, {args.threads} thread(s)")
        for stage in (1, 2):
            live = steps_per_second(stage, files[stage], root / f"live{stage}", args.steps, None, args.preset,
                                    args.batch_size)
            cached = steps_per_second(stage, files[stage], root / f"cached{stage}", args.steps, root / "cache",
                                      args.preset, args.batch_size)
            print(f"stage {stage}: live {live:.2f} steps/s, cached {cached:.2f} steps/s, "
                  f"cache speed-up {cached / live:.1f}x")


if __name__ == "__main__":
    main()
