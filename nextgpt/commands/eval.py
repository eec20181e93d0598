"""``nextgpt eval metrics|toyworld``: text metrics on any references/outputs files; a checkpoint on the toy world."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from nextgpt.cli import add_model_options, command, load_pipeline


@command("eval", "evaluate: text metrics of files (metrics) or a checkpoint on the toy world (toyworld)")
def _eval(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    actions = parser.add_subparsers(dest="eval_action", required=True, metavar="ACTION")
    metrics = actions.add_parser("metrics", help="BLEU-4 and CIDEr-D of outputs against references")
    metrics.add_argument("--references", required=True,
                         help=".txt (refs of one item per line, split by ' ||| '), .jsonl or .json (COCO too)")
    metrics.add_argument("--outputs", required=True, help=".txt (one per line), .jsonl or .json")
    metrics.add_argument("--smoothing", default="none", choices=["none", "add1", "epsilon"], help="BLEU smoothing")
    metrics.add_argument("--json", action="store_true", help="print the scores as JSON")
    world = actions.add_parser("toyworld", help="run a checkpoint on the held-out toy-world set (or a validation "
                                                   "set); print and save a report")
    world.add_argument("--data", required=True, help="folder written by `nextgpt toyworld data` (held-out set) or "
                                                     "`nextgpt toyworld validation`")
    world.add_argument("--classifiers", required=True, help="folder written by `nextgpt toyworld classifiers`")
    world.add_argument("--limit", type=int, default=None, help="at most N dialogues per eval file")
    world.add_argument("--routing-only", action="store_true",
                       help="plan the outputs without running the decoders: routing, captioning and tool calls in a "
                       "fraction of the time; generation, conversion and multi-turn accuracy are not measured")
    world.add_argument("--free-paths", action="store_true",
                       help="plan tool calls with file paths left to the model's own copying (default: held to the "
                       "files the request attached, as the agent holds them)")
    world.add_argument("--out", default=None, help="report JSON (default: next to the checkpoint, or in --data)")
    add_model_options(world)

    def run(args: argparse.Namespace) -> int:
        return _metrics(args) if args.eval_action == "metrics" else _toyworld(args)

    return run


def _metrics(args: argparse.Namespace) -> int:
    from nextgpt.eval.metrics import cider_d, corpus_bleu
    from nextgpt.eval.text_files import read_pairs

    candidates, references = read_pairs(args.references, args.outputs)
    scores = {"items": len(candidates), "bleu4": corpus_bleu(candidates, references, smoothing=args.smoothing),
              "cider_d": cider_d(candidates, references) if len(candidates) > 1 else None}
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        print(f"items: {scores['items']}")
        print(f"BLEU-4: {scores['bleu4']:.4f}")
        print("CIDEr-D: " + (f"{scores['cider_d']:.4f}" if scores["cider_d"] is not None else "- (needs 2+ items)"))
    return 0


def _toyworld(args: argparse.Namespace) -> int:
    from nextgpt.eval.toyworld_eval import eval_part, evaluate_checkpoint, format_report, report_name
    from nextgpt.toyworld.classifiers import AttributeClassifiers

    classifiers = AttributeClassifiers.load(args.classifiers)
    pipe = load_pipeline(args)
    part = eval_part(args.data)
    name = report_name(part, args.routing_only)
    out = Path(args.out) if args.out else Path(args.model or args.data) / (
        name if args.model else name.replace("eval_toyworld", f"eval_toyworld-{args.preset or 'tiny'}", 1))
    report = evaluate_checkpoint(pipe, args.data, classifiers, limit=args.limit, out_path=out,
                                 routing_only=args.routing_only, free_paths=args.free_paths)
    print(format_report(report))
    print(f"wrote {out}")
    return 0
