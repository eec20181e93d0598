"""The agent's tools: one factory over the pipeline's modalities, no copy per modality.

Tools made (with the tiny/7B presets): ``describe_image``, ``describe_audio``, ``describe_video`` (one per input
modality), ``generate_image``, ``generate_audio``, ``generate_video`` (one per output modality), ``convert_media``
(e.g. an image into music, conditioned on the file itself) and ``regenerate_media`` (another seed or step count).
All return ``(text for the model, artifact)`` (``response_format="content_and_artifact"``); media artifacts are
``{"path", "relative_path", "mime_type", "modality", "seed"}`` inside the workspace. There is deliberately no
shell, code, file-listing-outside-the-folder or network tool (reliability.md item 18).
"""
from __future__ import annotations

from typing import Any, Callable

from langchain_core.tools import BaseTool, StructuredTool

from .limits import AgentLimits
from .operations import MediaOperations
from .specs import media_tools
from .workspace import Workspace

# Words that must never appear in the name of a default tool (checked by tests; item 18).
FORBIDDEN_TOOL_WORDS = ("shell", "bash", "exec", "python", "code", "http", "url", "fetch", "download", "browse")


def build_tools(pipe: Any, workspace: Workspace, limits: AgentLimits | None = None) -> list[BaseTool]:
    """Make the media tools for ``pipe``'s modalities, jailed in ``workspace``.

    Returns:
        StructuredTools with pydantic argument schemas and ``content_and_artifact`` results.
    """
    limits = limits or AgentLimits()
    ops = MediaOperations(pipe, workspace, limits)
    tools = []
    for tool in media_tools(ops.inputs, ops.outputs, limits):
        operation = getattr(ops, tool.operation)
        func = _bind(operation, tool.modality) if tool.modality is not None else operation
        tools.append(_tool(tool.name, func, tool.schema, tool.description))
    return tools


def _tool(name: str, func: Callable[..., Any], schema: type, description: str) -> BaseTool:
    return StructuredTool.from_function(func=func, name=name, description=description, args_schema=schema,
                                        response_format="content_and_artifact")



def _bind(operation: Callable[..., tuple[str, dict]], modality: str) -> Callable[..., tuple[str, dict]]:
    """``operation`` with its modality fixed (a plain function: LangGraph inspects tool functions' type hints)."""

    def run(**arguments: Any) -> tuple[str, dict]:
        return operation(modality, **arguments)

    return run
