"""Displayable agent steps: what the CLI prints and the Gradio app shows, one object per event of a run."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

StepKind = Literal["tool_call", "tool_result", "notice", "answer", "stopped"]


@dataclass
class AgentStep:
    """One thing that happened in a run.

    Attributes:
        kind: ``tool_call`` (the planner asked for a tool), ``tool_result`` (what the tool returned, or its error),
            ``notice`` (the run told the planner something, e.g. an unreadable tool call), ``answer`` (the final
            answer), ``stopped`` (a step or time limit ended the run).
        text: the planner's text, the tool's result text, or the answer.
        tool / args / call_id: for tool calls and results.
        is_error: the tool refused or failed (the message was returned to the planner).
        files: media files of this step: ``{"path", "relative_path", "mime_type", "modality", "seed"}``.
    """

    kind: StepKind
    text: str = ""
    tool: str | None = None
    args: dict[str, Any] | None = None
    call_id: str | None = None
    is_error: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def steps_from_messages(messages: list[BaseMessage], tool_names: dict[str, str]) -> Iterator[AgentStep]:
    """Turn the new messages of one graph update into steps.

    Args:
        tool_names: call id → tool name, filled from tool calls and read for tool results (shared across updates).
    """
    for message in messages:
        if isinstance(message, ToolMessage):
            artifact = message.artifact if isinstance(message.artifact, dict) else {}
            name = message.name or tool_names.get(message.tool_call_id)
            yield AgentStep("tool_result", _text(message), tool=name, call_id=message.tool_call_id,
                            is_error=message.status == "error", files=list(artifact.get("media", [])))
        elif isinstance(message, AIMessage):
            for call in message.tool_calls:
                tool_names[call.get("id") or ""] = call["name"]
                yield AgentStep("tool_call", _text(message), tool=call["name"], args=dict(call["args"]),
                                call_id=call.get("id"))
            if message.invalid_tool_calls and not message.tool_calls:
                errors = "; ".join(str(c.get("error")) for c in message.invalid_tool_calls)
                yield AgentStep("tool_call", f"{_text(message)}\n(unreadable tool call: {errors})".strip(),
                                is_error=True)
            elif not message.tool_calls:
                kind = "stopped" if message.response_metadata.get("stopped_by_limit") else "answer"
                yield AgentStep(kind, _text(message), files=list(message.response_metadata.get("media", [])))
        elif isinstance(message, HumanMessage):
            yield AgentStep("notice", _text(message))


def _text(message: BaseMessage) -> str:
    return message.text
