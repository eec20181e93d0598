"""``nextgpt toyworld data|classifiers|build``: write the toy world's datasets, train its attribute classifiers, run
the whole recipe (parts, three stages, evaluation) into a checkpoint folder."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from nextgpt.cli import command

BUDGETS = ("full", "fast", "quick")
"""The recipes of ``nextgpt toyworld build --budget`` (``Recipe()``, ``Recipe.fast()``, ``Recipe.quick()``)."""


@command("toyworld", "the synthetic toy world: its datasets (data), judges (classifiers), or the whole recipe (build)")
def _toyworld(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    actions = parser.add_subparsers(dest="toyworld_action", required=True, metavar="ACTION")
    data = actions.add_parser("data", help="write media, training and held-out eval files (our dialogue schema)")
    data.add_argument("--out", required=True, help="folder to write")
    data.add_argument("--seed", type=int, default=0, help="seeds every draw and rendering")
    data.add_argument("--size", default="small", choices=["small", "full"], help="how many dialogues")
    validation = actions.add_parser(
        "validation", help="write a validation set: eval files of the training combinations and phrasings (fresh "
        "draws), to choose recipes without reading the held-out split; evaluate with `nextgpt eval toyworld`")
    validation.add_argument("--out", required=True, help="folder to write")
    validation.add_argument("--seed", type=int, default=None,
                            help="seeds every draw and rendering (default: a seed no training world uses)")
    validation.add_argument("--per-modality", type=int, default=100,
                            help="items per modality and file (conversions and dialogues: 3x; default 100)")
    judges = actions.add_parser("classifiers", help="train the attribute classifiers on ground-truth renderings")
    judges.add_argument("--out", required=True, help="folder for {modality}.safetensors + classifiers.json")
    judges.add_argument("--seed", type=int, default=0)
    judges.add_argument("--threads", type=int, default=1,
                        help="CPU threads: torch and BLAS (default 1: the nets are small; more wait on a busy CPU)")

    build = actions.add_parser("build", help="the whole recipe: data, judges, encoder, LLM, decoders, stages 1-3, "
                               "eval → OUT/model (a save_pretrained folder); finished steps are reused")
    build.add_argument("--out", required=True, help="work folder (each step writes one subfolder)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--budget", choices=BUDGETS, default=None,
                       help="full: the shipped model's recipe (≈ 2 h on 2 CPU cores); fast: smaller budgets for the "
                       "encoder and decoders (< 30 min on 2 cores, a weaker model, eval on 30 dialogues per file); "
                       "quick: a few steps of everything (seconds), checks the recipe runs and learns nothing useful "
                       "(default: full)")
    build.add_argument("--quick", action="store_true", help="the same as --budget quick")
    build.add_argument("--judges", default=None, help="reuse judges from this folder (default: OUT/judges)")
    build.add_argument("--parts-from", default=None, metavar="MODEL",
                       help="start from the frozen parts (encoder, LLM, decoders) and judges of a toy-world model "
                       "('shipped': the package's): only the data, stages 1-3 and the eval run")
    build.add_argument("--eval-limit", type=int, default=None,
                       help="eval dialogues per file (default: the whole held-out split; --budget fast: 30)")
    build.add_argument("--validation", type=int, default=None, metavar="N",
                       help="also route a validation set of the training combinations (N items per modality and "
                       "file; decoders not run) → OUT/model/eval_toyworld-validation-routing.json: compare recipes "
                       "without reading the held-out split (default: none; --quick: 1)")
    build.add_argument("--threads", type=int, default=1, help="CPU threads of each process: torch and BLAS (default 1)")
    build.add_argument("--decoder-device", default="cpu",
                       help="where the decoders train, e.g. cuda (default cpu; the video decoder is ≈ 80 min of one "
                       "CPU thread, ≈ 6 min on a GPU)")
    build.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                       help="processes that train the encoder, LLM and decoders side by side, each with --threads "
                       "(default: 2, or 1 on a 1-core machine)")

    ship = actions.add_parser("ship", help="copy a built OUT/model into the package as its default model "
                              "(developers: this is what nextgpt/assets/toyworld holds)")
    ship.add_argument("model", help="the model folder of a finished build (OUT/model)")

    def run(args: argparse.Namespace) -> int:
        if args.toyworld_action == "ship":
            from nextgpt.toyworld.build import ship

            folder = ship(args.model)
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            print(f"shipped {args.model} → {folder} ({size / 2**20:.1f} MiB)")
            return 0
        if args.toyworld_action == "build":
            import logging

            from nextgpt.toyworld.build import Recipe, ToyWorldBuild

            logging.getLogger("nextgpt.training").setLevel(logging.INFO)  # the stages' losses, as `nextgpt train`
            if args.quick and args.budget not in (None, "quick"):
                print(f"error: --quick is --budget quick; it cannot go with --budget {args.budget}", file=sys.stderr)
                return 2
            budget = "quick" if args.quick else args.budget or "full"
            recipe = {"full": Recipe, "fast": Recipe.fast, "quick": Recipe.quick}[budget](seed=args.seed)
            if args.eval_limit is not None:
                recipe.eval_limit = args.eval_limit
            if args.validation is not None:
                if args.validation < 0:
                    print(f"error: --validation must be 0 (none) or more items per modality, got {args.validation}",
                          file=sys.stderr)
                    return 2
                recipe.validation_per_modality = args.validation
            recipe.threads = args.threads
            if args.jobs < 1:
                print(f"error: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
                return 2
            recipe.jobs = args.jobs
            from nextgpt.toyworld.train_decoders import check_device

            try:
                check_device(args.decoder_device)
            except ValueError as error:
                print(f"error: --decoder-device: {error}", file=sys.stderr)
                return 2
            recipe.decoder_device = args.decoder_device
            if args.parts_from is not None:
                from nextgpt.toyworld.parts import extract_parts

                source = None if args.parts_from == "shipped" else args.parts_from
                try:
                    record = extract_parts(source, args.out)
                except (FileNotFoundError, FileExistsError) as error:
                    print(f"error: {error}", file=sys.stderr)
                    return 2
                print(f"parts from {record['from']}: {', '.join(record['parts'])} and the judges")
            folder = ToyWorldBuild(args.out, recipe, judges=args.judges, log=print).run()
            print(f"model: {folder} (chat with it: nextgpt chat --model {folder}; report: {folder}/eval_toyworld.json)")
            return 0
        if args.toyworld_action == "data":
            from nextgpt.toyworld.dataset import build_dataset

            manifest = build_dataset(args.out, seed=args.seed, sizes=args.size)
            for name, count in manifest["files"].items():
                print(f"{name}: {count} dialogue(s)")
            print("media: " + ", ".join(f"{m}={n}" for m, n in manifest["media"].items()))
            print(f"wrote {args.out}/manifest.json (check with: nextgpt data validate {args.out}/train_*.jsonl "
                  f"{args.out}/eval_*.jsonl)")
            return 0
        if args.toyworld_action == "validation":
            from nextgpt.toyworld.dataset import VALIDATION_SEED, build_validation

            try:
                manifest = build_validation(args.out, seed=VALIDATION_SEED if args.seed is None else args.seed,
                                            per_modality=args.per_modality)
            except ValueError as error:
                print(f"error: --per-modality: {error}", file=sys.stderr)
                return 2
            for name, count in manifest["files"].items():
                print(f"{name}: {count} dialogue(s)")
            print(f"wrote {args.out} (evaluate with: nextgpt eval toyworld --model MODEL --data {args.out} "
                  f"--classifiers JUDGES; the report is MODEL/eval_toyworld-validation.json)")
            return 0
        from nextgpt.threads import limit_cpu_threads
        from nextgpt.toyworld.classifiers import AttributeClassifiers

        limit_cpu_threads(args.threads)
        classifiers = AttributeClassifiers.train(seed=args.seed)
        out = classifiers.save(args.out)
        for modality, report in classifiers.reports.items():
            print(f"{modality}: accuracy {report['accuracy']:.4f} on fresh renderings ({report['seconds']:.1f} s)")
        print(f"wrote {out}")
        return 0

    return run
