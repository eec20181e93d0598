"""``nextgpt agent "..."``: run the tool-using agent once and print each step (see docs/agent.md)."""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from nextgpt.cli import add_model_options, command, load_pipeline

PLANNERS = ("nextgpt", "langchain")


def load_planner(args: argparse.Namespace) -> Any:
    """None (NExT-GPT plans) or a LangChain chat model from ``--planner-model PROVIDER:MODEL``.

    Raises:
        ValueError: ``--planner langchain`` without ``--planner-model``, or a provider package that is missing.
    """
    if args.planner == "nextgpt":
        return None
    if not args.planner_model:
        raise ValueError("--planner langchain needs --planner-model PROVIDER:MODEL, e.g. ollama:qwen2.5 or "
                         "openai:gpt-4o-mini (the provider's langchain package must be installed)")
    from langchain.chat_models import init_chat_model

    kwargs = {"base_url": args.planner_base_url} if args.planner_base_url else {}
    try:
        return init_chat_model(args.planner_model, **kwargs)
    except ImportError as error:
        raise ValueError(f"cannot load planner {args.planner_model!r}: {error}") from None


def format_step(step: Any) -> str:
    if step.kind == "tool_call":
        return f"→ {step.tool}({json.dumps(step.args, ensure_ascii=False)})" if step.tool else f"→ {step.text}"
    if step.kind == "tool_result":
        files = "".join(f"\n    {f['mime_type']}: {f['path']}" for f in step.files)
        return f"{'✗' if step.is_error else '←'} {step.tool}: {step.text}{files}"
    if step.kind == "notice":
        return f"· {step.text}"
    files = "".join(f"\n    {f['mime_type']}: {f['path']}" for f in step.files)
    return f"{'stopped' if step.kind == 'stopped' else 'answer'}: {step.text}{files}"


@command("agent", "run a tool-using agent: NExT-GPT (or another chat model) plans, NExT-GPT's tools make media")
def _agent(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("request", help="what you want, e.g. 'describe this picture and make music for it'")
    parser.add_argument("--image", "--audio", "--video", "--attach", dest="attach", action="append", default=[],
                        metavar="FILE", help="a file to work on (copied into the working folder)")
    parser.add_argument("--workdir", default="nextgpt-agent", help="working folder; tools cannot leave it")
    parser.add_argument("--planner", choices=PLANNERS, default="nextgpt",
                        help="who plans the tool calls: NExT-GPT itself, or a LangChain chat model")
    parser.add_argument("--planner-model", default=None, metavar="PROVIDER:MODEL",
                        help="for --planner langchain: an init_chat_model id, e.g. ollama:qwen2.5")
    parser.add_argument("--planner-base-url", default=None, help="for --planner langchain: a local server URL")
    parser.add_argument("--max-steps", type=int, default=None, help="model calls per run (default 8)")
    parser.add_argument("--timeout", type=float, default=None, help="wall-clock seconds per run (default 300)")
    parser.add_argument("--json", action="store_true", help="print the steps as JSON lines")
    add_model_options(parser)

    def run(args: argparse.Namespace) -> int:
        from nextgpt.apps.agent import AgentLimits, NextGPTAgent

        given = {"max_steps": args.max_steps, "timeout_s": args.timeout}
        limits = AgentLimits(**{k: v for k, v in given.items() if v is not None})
        agent = NextGPTAgent(load_pipeline(args), args.workdir, planner=load_planner(args), limits=limits)
        stopped = False
        try:
            for step in agent.iter_steps(args.request, args.attach):
                print(json.dumps(step.to_dict(), ensure_ascii=False) if args.json else format_step(step), flush=True)
                stopped = stopped or step.kind == "stopped"
        except ValueError as error:
            if "context" not in str(error) or args.planner != "nextgpt":
                raise
            raise ValueError(f"{error}. The agent's instructions and tool list alone take most of that: plan with "
                             "a model that has a longer context (--model), or another planner (--planner "
                             "langchain --planner-model PROVIDER:MODEL)") from None
        return 3 if stopped else 0

    return run
