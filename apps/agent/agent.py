"""``NextGPTAgent``: a LangChain 1.x ``create_agent`` loop over the media tools, planned by NExT-GPT or any chat model.

The planner may be NExT-GPT itself (``NextGPTChatModel``, the default) or any LangChain chat model with tool
calling (a hosted or local LLM plans while NExT-GPT's decoders generate). Safety (docs/agent.md): the tools are an
allow-list, every path is jailed in the working folder, each run is bounded in steps and seconds, and tool output
is truncated and treated as data.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, RemoveMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphRecursionError

from nextgpt.options import GenerationOptions

from .chat_model import NextGPTChatModel
from .file_choices import FileChoices
from .guards import RunLimits, ToolGuard
from .limits import AgentLimits
from .specs import SYSTEM_PROMPT, attachment_note
from .steps import AgentStep, steps_from_messages
from .tools import build_tools
from .workspace import Workspace

logger = logging.getLogger(__name__)



@dataclass
class AgentResult:
    """The outcome of one run: the final answer, every step, and all media files made or read."""

    answer: str
    steps: list[AgentStep]
    files: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False  # a step or time limit ended the run


class NextGPTAgent:
    """Build once, run many requests.

    Args:
        pipe: a ``NextGPT`` pipeline (its decoders make the media; its modalities decide the tools).
        workdir: the working folder; tools can read and write only inside it.
        planner: any LangChain chat model with ``bind_tools``; None plans with NExT-GPT itself.
        limits: step / time / output bounds (``AgentLimits``).
        allowed_tools: names to keep of the built-in tools (None: all); unknown names raise.
        extra_tools: more tools, added to the allow-list by the caller's explicit choice.
        system_prompt: replaces ``SYSTEM_PROMPT``.

    Raises:
        ValueError: an ``allowed_tools`` name that does not exist, or two tools with one name.
    """

    def __init__(self, pipe: Any, workdir: str | Path, *, planner: BaseChatModel | None = None,
                 limits: AgentLimits | None = None, allowed_tools: Iterable[str] | None = None,
                 extra_tools: Sequence[BaseTool] = (), system_prompt: str | None = None) -> None:
        self.limits = limits or AgentLimits()
        self.workspace = Workspace(workdir)
        tools = build_tools(pipe, self.workspace, self.limits)
        if allowed_tools is not None:
            allowed = set(allowed_tools)
            unknown = sorted(allowed - {t.name for t in tools})
            if unknown:
                raise ValueError(f"allowed_tools names {unknown}, which do not exist; tools: {[t.name for t in tools]}")
            tools = [t for t in tools if t.name in allowed]
        tools += list(extra_tools)
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"two tools share a name: {sorted(n for n in set(names) if names.count(n) > 1)}")
        self.tools = tools
        self.planner = planner or NextGPTChatModel(
            pipeline=pipe, options=GenerationOptions(max_new_tokens=self.limits.max_new_tokens,
                                                     output_dir=self.workspace.outputs))
        self.graph = create_agent(
            self.planner, tools, system_prompt=system_prompt or SYSTEM_PROMPT, name="nextgpt-agent",
            middleware=[RunLimits(self.limits.max_steps, self.limits.timeout_s),
                        ToolGuard(names, self.limits.max_tool_output_chars), FileChoices(self.workspace)],
        )

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self.tools]

    def iter_steps(self, request: str, attachments: Iterable[str | Path] = ()) -> Iterator[AgentStep]:
        """Run one request and yield each step as it happens (closing the iterator abandons the run).

        Args:
            request: what the user wants.
            attachments: user files (trusted paths, e.g. uploads); they are copied into ``inputs/`` and named to
                the planner by their relative path.
        """
        files = [self.workspace.import_file(path) for path in attachments]
        text = request
        if files:
            text += attachment_note([(f.relative, f.mime_type) for f in files])
        for file in files:
            yield AgentStep("notice", f"attached {file.relative}", files=[file.as_artifact()])
        # The step limit is enforced by RunLimits; the recursion limit is only a backstop for graph loops.
        config = {"recursion_limit": 10 * self.limits.max_steps + 20}
        tool_names: dict[str, str] = {}
        shown: set[str] = set()  # the model node may re-send the history (it patches dangling tool calls)
        try:
            for update in self.graph.stream({"messages": [HumanMessage(text)]}, config, stream_mode="updates"):
                for node_update in update.values():
                    messages = node_update.get("messages", []) if isinstance(node_update, dict) else []
                    fresh = [m for m in messages if m.id not in shown and not isinstance(m, RemoveMessage)
                             and not (isinstance(m, HumanMessage) and m.text == text)]
                    shown.update(m.id for m in fresh if m.id)
                    yield from steps_from_messages(fresh, tool_names)
        except GraphRecursionError:
            yield AgentStep("stopped", f"Stopped: the run exceeded {config['recursion_limit']} graph steps.")

    def run(self, request: str, attachments: Iterable[str | Path] = ()) -> AgentResult:
        """Run one request to the end and collect the answer, steps and files."""
        steps = list(self.iter_steps(request, attachments))
        final = next((s for s in reversed(steps) if s.kind in ("answer", "stopped")), None)
        files = [f for s in steps if not s.is_error for f in s.files]
        return AgentResult(answer=final.text if final else "", steps=steps, files=files,
                           stopped=final is not None and final.kind == "stopped")


def iter_agent_steps(pipe: Any, request: str, *, workdir: str | Path, attachments: Iterable[str | Path] = (),
                     planner: BaseChatModel | None = None, limits: AgentLimits | None = None) -> Iterator[AgentStep]:
    """One-call helper for apps: build an agent and yield the steps of one request (see ``AgentStep``)."""
    agent = NextGPTAgent(pipe, workdir, planner=planner, limits=limits)
    yield from agent.iter_steps(request, attachments)
