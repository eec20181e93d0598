"""The ``nextgpt`` command line: demo, generate, chat, info, convert-official.

Each subcommand is a function with typed arguments; ``main`` only parses and dispatches. Only the CLI
configures logging handlers and prints.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Callable, Sequence

logger = logging.getLogger("nextgpt")

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
PARSER_BUILDERS: list[Callable[[Any], None]] = []


def command(name: str, help: str) -> Callable:
    """Register a subcommand: the decorated function receives the parsed namespace, returns the exit code."""

    def decorator(build: Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]) -> Callable:
        def add(subparsers: Any) -> None:
            parser = subparsers.add_parser(name, help=help, description=help)
            COMMANDS[name] = build(parser)

        PARSER_BUILDERS.append(add)
        return build

    return decorator


# ---- shared options ------------------------------------------------------------------------------------
def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--preset", default=None,
                       help="preset name, e.g. tiny (random weights); default: the shipped toy-world model")
    group.add_argument("--model", default=None, help="checkpoint folder written by save_pretrained")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    group.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    group.add_argument("--offload-decoders", action="store_true", help="move idle decoders to CPU")
    group.add_argument("--load-in-8bit", action="store_true", help="bitsandbytes 8-bit LLM (GPU)")
    group.add_argument("--load-in-4bit", action="store_true", help="bitsandbytes 4-bit LLM (GPU)")


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generation")
    group.add_argument("--force", action="append", default=[], metavar="MODALITY", help="must produce it")
    group.add_argument("--forbid", action="append", default=[], metavar="MODALITY", help="must not produce it")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--max-new-tokens", type=int, default=128)
    group.add_argument("--temperature", type=float, default=0.0)
    group.add_argument("--top-p", type=float, default=1.0)
    group.add_argument("--steps", type=int, default=None, help="diffusion steps (decoder default if unset)")
    group.add_argument("--guidance", type=float, default=None, help="guidance scale (decoder default if unset)")
    group.add_argument("--output-dir", default="nextgpt-outputs", help="where media files are written")


def load_pipeline(args: argparse.Namespace) -> Any:
    from .options import RuntimeOptions
    from .pipeline import NextGPT

    runtime = RuntimeOptions(device=args.device, dtype=args.dtype, offload_idle_decoders=args.offload_decoders,
                             load_in_8bit=args.load_in_8bit, load_in_4bit=args.load_in_4bit)
    if args.model and args.preset:
        raise SystemExit("error: give either --model or --preset, not both")
    if args.model:
        return NextGPT.from_pretrained(args.model, runtime=runtime)
    if args.preset:
        return NextGPT.from_preset(args.preset, runtime=runtime)
    return default_pipeline(runtime)


def default_pipeline(runtime: Any = None) -> Any:
    """The model used when none is configured: the toy-world checkpoint shipped with the package (trained on CPU,
    see docs/toyworld.md), or the random ``tiny`` preset when this installation has none."""
    from .pipeline import NextGPT
    from .toyworld.build import shipped_model

    folder = shipped_model()
    if folder is not None:
        return NextGPT.from_pretrained(folder, runtime=runtime)
    logger.warning("no shipped toy-world model in this installation; using the random 'tiny' preset")
    return NextGPT.from_preset("tiny", runtime=runtime)


def generation_options(args: argparse.Namespace) -> Any:
    from .options import GenerationOptions

    return GenerationOptions(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
        force=set(args.force), forbid=set(args.forbid), num_inference_steps=args.steps,
        guidance_scale=args.guidance, output_dir=args.output_dir,
    )


def describe(response: Any) -> list[str]:
    lines = []
    for item in response.media:
        lines.append(f"{item.modality}: {item.path if item.path else '(not saved)'}")
    return lines


# ---- commands ------------------------------------------------------------------------------------------
@command("demo", "run the built-in offline demo: text → image → sound → video → text with the shipped toy-world model")
def _demo(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--output-dir", default="nextgpt-outputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default=None, help="run the demo on a preset instead (e.g. tiny: random weights)")
    parser.add_argument("--model", default=None,
                        help="run the toy-world demo on another toy-world model folder (e.g. OUT/model of "
                             "`nextgpt toyworld build`; its judges/ read the media when it has them)")

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from .options import GenerationOptions
        from .pipeline import NextGPT
        from .toyworld.build import JUDGES_SUBDIR, shipped_model

        if args.model and args.preset:
            raise SystemExit("error: give either --model or --preset, not both")
        folder = Path(args.model) if args.model else (shipped_model() if args.preset is None else None)
        if folder is not None:
            from .toyworld.classifiers import AttributeClassifiers
            from .toyworld.demo import run_demo

            if not (folder / "config.json").is_file():
                raise SystemExit(f"error: --model {folder}: no config.json there; give a toy-world model folder "
                                 "(OUT/model of `nextgpt toyworld build`)")
            pipe = NextGPT.from_pretrained(folder)
            if pipe.config.name != "toyworld":
                raise SystemExit(f"error: --model {folder} is a {pipe.config.name!r} model; the demo speaks the toy "
                                 "world's language: give a toy-world model, or use `nextgpt generate --model`")
            judges_dir = folder / JUDGES_SUBDIR
            judges = AttributeClassifiers.load(judges_dir) if (judges_dir / "classifiers.json").is_file() else None
            which = "the shipped toy-world model" if args.model is None else "the toy-world model"
            print(f"model: {which} ({folder}); its world: docs/toyworld.md")
            started = time.perf_counter()
            run_demo(pipe, output_dir=args.output_dir, seed=args.seed, judges=judges, log=print)
            print(f"time: {time.perf_counter() - started:.2f} s; media in {args.output_dir}/")
            return 0
        name = args.preset or "tiny"
        pipe = NextGPT.from_preset(name)
        prompt = "Show me a red circle, play a low beep, and make a short video of it moving left."
        print(f"preset: {name}" + (" (random weights: the text and media show the data path, not learned behaviour)"
                                   if name == "tiny" else ""))
        print(f"prompt: {prompt}")
        outputs = [spec.name for spec in pipe.config.output_modalities]
        response = pipe.chat(prompt, GenerationOptions(force=set(outputs), seed=args.seed, max_new_tokens=24,
                                                       output_dir=args.output_dir))
        print(f"answer: {response.text!r}")
        for line in describe(response):
            print(line)
        print(f"time: {response.timings['total']:.2f} s")
        return 0

    return run


@command("generate", "one prompt (with optional media files) → text and media files")
def _generate(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("prompt")
    parser.add_argument("--image", action="append", default=[], help="attach an image file")
    parser.add_argument("--audio", action="append", default=[], help="attach an audio file")
    parser.add_argument("--video", action="append", default=[], help="attach a video file")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    add_model_options(parser)
    add_generation_options(parser)

    def run(args: argparse.Namespace) -> int:
        from .types import Message

        pipe = load_pipeline(args)
        message = Message.user(args.prompt, image=args.image or None, audio=args.audio or None,
                               video=args.video or None)
        response = pipe.chat([message], generation_options(args))
        if args.json:
            print(json.dumps({
                "text": response.text, "finish_reason": response.finish_reason,
                "media": [{"modality": m.modality, "path": str(m.path) if m.path else None, "seed": m.seed}
                          for m in response.media],
                "timings": response.timings, "warnings": response.warnings,
            }, indent=2))
        else:
            print(response.text)
            for line in describe(response):
                print(line)
        return 0

    return run


@command("chat", "multi-turn chat in the terminal (/image PATH, /audio PATH, /video PATH, /undo, /reset, /quit)")
def _chat(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    add_model_options(parser)
    add_generation_options(parser)

    def run(args: argparse.Namespace) -> int:
        from .chat_cli import run_chat

        return run_chat(load_pipeline(args), generation_options(args))

    return run


@command("info", "build a preset on the meta device and print its parameter table")
def _info(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--no-decoders", action="store_true", help="leave the decoders out of the table")

    def run(args: argparse.Namespace) -> int:
        from .info import format_table, parameter_table
        from .presets import get_preset

        config = get_preset(args.preset)
        print(f"preset {args.preset!r}")
        print(format_table(parameter_table(config, include_decoders=not args.no_decoders)))
        return 0

    return run


@command("convert-official", "convert the released NExT-GPT pytorch_model.pt to a safetensors checkpoint folder")
def _convert(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("checkpoint", help="the official pytorch_model.pt (read with weights_only=True)")
    parser.add_argument("out_dir")
    parser.add_argument("--llm-path", default=None, help="merged Vicuna-7B v0 folder, recorded in config.json")
    parser.add_argument("--imagebind-path", default=None, help="imagebind_huge weights, recorded in config.json")

    def run(args: argparse.Namespace) -> int:
        from .convert import convert_official
        from .presets import get_preset

        config = get_preset("nextgpt-7b", llm_path=args.llm_path, imagebind_path=args.imagebind_path)
        out = convert_official(args.checkpoint, args.out_dir, config)
        print(f"wrote {out}")
        return 0

    return run


def _import_command_modules() -> None:
    import importlib
    import pkgutil

    from . import commands

    for module in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{module.name}")


def build_parser() -> argparse.ArgumentParser:
    _import_command_modules()
    parser = argparse.ArgumentParser(prog="nextgpt", description="any-to-any multimodal chat")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in PARSER_BUILDERS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as error:
        if args.verbose:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # `python -m nextgpt.cli`: this file runs as __main__, but the command modules register with the imported
    # `nextgpt.cli`; run that one, or only the commands defined in this file would exist.
    from nextgpt.cli import main as _main

    sys.exit(_main())
