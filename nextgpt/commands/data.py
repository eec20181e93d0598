"""``nextgpt data ACTION``: dataset tools (validate, stats, convert here); other modules add actions.

To add an action from another module (e.g. ``nextgpt/commands/data_cache.py``)::

    from nextgpt.commands.data import data_action

    @data_action("cache", "precompute decoder conditions for a dataset")
    def _cache(parser):            # add arguments to the action's own parser
        parser.add_argument(...)
        def run(args) -> int: ...  # returns the exit code
        return run

Registration happens at import; the CLI imports every module of ``nextgpt.commands`` before it builds the
parser, so the action appears under ``nextgpt data``. ``add_data_options`` gives an action the shared
``FILES --root --format --task --modality`` options.
"""
from __future__ import annotations

import argparse
import statistics
from collections import Counter
from typing import Callable

from nextgpt.cli import command

Builder = Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]
DATA_ACTIONS: dict[str, tuple[str, Builder]] = {}


def data_action(name: str, help: str) -> Callable[[Builder], Builder]:
    """Register ``nextgpt data NAME`` (the decorated builder adds arguments and returns the run function)."""

    def decorator(build: Builder) -> Builder:
        if name in DATA_ACTIONS:
            raise ValueError(f"data action {name!r} is registered twice")
        DATA_ACTIONS[name] = (help, build)
        return build

    return decorator


def add_data_options(parser: argparse.ArgumentParser) -> None:
    from nextgpt.dialogs.loaders import DEFAULT_MODALITIES, FORMATS, TASKS

    parser.add_argument("files", nargs="+", help="dataset files (.json arrays or .jsonl)")
    parser.add_argument("--root", default=None, help="folder relative media paths are resolved against "
                                                     "(default: each file's folder)")
    parser.add_argument("--format", default=None, choices=FORMATS, help="data format (default: detected)")
    parser.add_argument("--task", default="comprehension", choices=TASKS,
                        help="what X-caption pairs become: comprehension (stage 1) or generation (stage 2)")
    parser.add_argument("--modality", action="append", default=None, metavar="NAME",
                        help=f"a modality the model knows (repeat; default: {' '.join(DEFAULT_MODALITIES)})")


def _modalities(args: argparse.Namespace) -> tuple[str, ...]:
    from nextgpt.dialogs.loaders import DEFAULT_MODALITIES

    return tuple(args.modality) if args.modality else DEFAULT_MODALITIES


@command("data", "dataset tools: validate, stats, convert (and actions other modules register)")
def _data(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    actions = parser.add_subparsers(dest="data_action", required=True, metavar="ACTION")
    runners = {}
    for name, (help, build) in sorted(DATA_ACTIONS.items()):
        runners[name] = build(actions.add_parser(name, help=help, description=help))

    def run(args: argparse.Namespace) -> int:
        return runners[args.data_action](args)

    return run


@data_action("validate", "check dataset files; print every problem as file:line:field: problem (exit 1 if any)")
def _validate(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    add_data_options(parser)
    parser.add_argument("--no-file-check", action="store_true", help="do not check that media files exist")
    model = parser.add_argument_group("tokenisation check (optional; loads only the tokenizer)")
    model.add_argument("--preset", default=None, help="also tokenise every dialogue for this preset")
    model.add_argument("--model", default=None, help="also tokenise for this checkpoint folder")
    model.add_argument("--max-length", type=int, default=None, help="report dialogues whose first exchange is longer")

    def run(args: argparse.Namespace) -> int:
        from nextgpt.dialogs.validate import validate

        layout = _layout(args)
        modalities = _modalities(args) if layout is None or args.modality else tuple(
            dict.fromkeys([*layout.input_modalities, *layout.output_modalities]))
        problems = validate(args.files, args.root, modalities, format=args.format, task=args.task,
                            check_files=not args.no_file_check, layout=layout, max_length=args.max_length,
                            output_modalities=layout.output_modalities if layout else None)
        for problem in problems:
            print(problem)
        if problems:
            print(f"{len(problems)} problem(s) in {len(args.files)} file(s)")
            return 1
        print(f"ok: {len(args.files)} file(s), no problems")
        return 0

    return run


def _layout(args: argparse.Namespace):
    if args.preset and args.model:
        raise ValueError("give either --preset or --model, not both")
    if args.max_length is not None and not (args.preset or args.model):
        raise ValueError("--max-length needs --preset or --model (the tokenizer decides the length)")
    if not (args.preset or args.model):
        return None
    from nextgpt.config import NextGPTConfig
    from nextgpt.dialogs.layout import TokenLayout
    from nextgpt.presets import get_preset

    if args.model:
        return TokenLayout.for_config(NextGPTConfig.load(args.model), base_dir=args.model)
    return TokenLayout.for_config(get_preset(args.preset))


@data_action("stats", "count dialogues per format, modality and turns; caption lengths; problems")
def _stats(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    add_data_options(parser)

    def run(args: argparse.Namespace) -> int:
        from nextgpt.dialogs.loaders import iter_loaded
        from nextgpt.dialogs.records import Problem
        from nextgpt.dialogs.validate import check_loaded

        modalities = _modalities(args)
        formats, inputs, outputs, turns = Counter(), Counter(), Counter(), Counter()
        caption_words, answer_words, problems = [], [], []
        for item in iter_loaded(args.files, args.root, args.format, args.task, modalities):
            if isinstance(item, Problem):
                problems.append(item)
                continue
            problems.extend(check_loaded(item, modalities))
            dialogue = item.dialogue
            formats[item.format] += 1
            turns[len(dialogue.turns)] += 1
            for turn in dialogue.turns:
                inputs.update(i.modality for i in turn.inputs)
                outputs.update(o.modality for o in turn.outputs)
                caption_words.extend(len(o.caption.split()) for o in turn.outputs)
                if turn.role == "assistant":
                    answer_words.append(len(turn.text.split()))
        print(f"dialogues: {sum(formats.values())}")
        print("formats: " + _counts(formats))
        print("input items: " + _counts(inputs))
        print("output items: " + _counts(outputs))
        print("turns per dialogue: " + _counts(Counter({str(k): v for k, v in sorted(turns.items())})))
        print("output caption words: " + _summary(caption_words))
        print("answer words: " + _summary(answer_words))
        print(f"problems: {len(problems)}")
        for problem in problems:
            print(f"  {problem}")
        return 0

    return run


@data_action("convert", "read any supported format and write our dialogue schema as JSONL (media paths resolved)")
def _convert(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    add_data_options(parser)
    parser.add_argument("--out", required=True, help="the .jsonl file to write")

    def run(args: argparse.Namespace) -> int:
        import json
        import os
        import tempfile
        from pathlib import Path

        from nextgpt.dialogs.loaders import iter_loaded
        from nextgpt.dialogs.records import Problem

        dialogues, problems = [], []
        for item in iter_loaded(args.files, args.root, args.format, args.task, _modalities(args)):
            (problems if isinstance(item, Problem) else dialogues).append(item)
        if problems:
            for problem in problems:
                print(problem)
            print(f"{len(problems)} problem(s); nothing written")
            return 1
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:  # written whole, then renamed
            for loaded in dialogues:
                stream.write(json.dumps(loaded.dialogue.to_dict(), ensure_ascii=False) + "\n")
        os.replace(temporary, out)
        print(f"wrote {len(dialogues)} dialogue(s) to {out}")
        return 0

    return run


def _counts(counter: Counter) -> str:
    return ", ".join(f"{key}={value}" for key, value in counter.items()) or "none"


def _summary(values: list[int]) -> str:
    if not values:
        return "none"
    return f"n={len(values)} min={min(values)} mean={statistics.fmean(values):.1f} max={max(values)}"
