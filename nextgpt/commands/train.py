"""``nextgpt train`` (the three NExT-GPT stages) and ``nextgpt data cache`` (the feature cache).

Both read a training config (configs/*.yaml) with ``--set key=value`` overrides, and both run under
``accelerate launch`` for several processes/machines (``accelerate launch -m nextgpt.cli train ...``).
"""
from __future__ import annotations

import argparse
from typing import Callable

from nextgpt.cli import command
from nextgpt.commands.data import data_action


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config YAML (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a config value, e.g. --set optim.lr=1e-4 --set data.batch_size=8")


@command("train", "train a stage (1: encoding alignment, 2: decoding alignment, 3: instruction tuning)")
def _train(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    _add_config_options(parser)
    parser.add_argument("--resume", default=None, metavar="auto|FOLDER",
                        help="resume from the latest checkpoint in output_dir ('auto') or from FOLDER")

    def run(args: argparse.Namespace) -> int:
        import logging

        from nextgpt.training import Trainer, load_train_config

        logging.getLogger("nextgpt.training").setLevel(logging.INFO)
        config = load_train_config(args.config, args.overrides)
        trainer = Trainer(config)
        final = trainer.train(resume=args.resume)
        if trainer.accelerator.is_main_process:
            print(f"trainable parameters: {trainer.trainable_count:,}")
            last = trainer.history[-1] if trainer.history else {}
            print(f"steps: {trainer.step}, last loss: {last.get('train/total', float('nan')):.4f}")
            print(f"saved {final} (load it with NextGPT.from_pretrained)")
        return 0

    return run


@data_action("cache", "precompute encoder embeddings and caption targets of a training config's data")
def _cache(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    _add_config_options(parser)
    parser.add_argument("--cache-dir", default=None, help="where to write (default: the config's data.cache_dir)")
    parser.add_argument("--batch-size", type=int, default=16, help="items per encoder call")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a cache built by other frozen components instead of refusing")

    def run(args: argparse.Namespace) -> int:
        from accelerate import Accelerator

        from nextgpt.training.cache_build import build_cache
        from nextgpt.training.config import load_train_config
        from nextgpt.training.data import read_dialogues
        from nextgpt.training.trainer import load_pipeline

        config = load_train_config(args.config, args.overrides)
        folder = args.cache_dir or config.data.cache_dir
        if folder is None:
            raise ValueError(f"{args.config} has no data.cache_dir; pass --cache-dir or set data.cache_dir")
        accelerator = Accelerator()
        pipe = load_pipeline(config, str(accelerator.device))
        modalities = [spec.name for spec in pipe.config.modalities]
        data = config.data
        dialogues = read_dialogues([*data.train, *data.eval], modalities, root=data.root, format=data.format,
                                   task=data.task)
        manifest = build_cache(pipe, dialogues, folder, accelerator, batch_size=args.batch_size,
                               overwrite=args.overwrite)
        if accelerator.is_main_process:
            print(f"feature cache {folder}: {len(manifest['shards'])} shard(s) for {len(dialogues)} dialogues")
        return 0

    return run
