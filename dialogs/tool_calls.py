"""The tool-call text format the LLM reads and writes (used by the agent and by stage-3 dialogue data).

An assistant turn calls tools with one block per call::

    <tool_call>{"name": "generate_image", "arguments": {"description": "a red circle"}}</tool_call>

and the result comes back in a ``tool`` turn, rendered as::

    <tool_result name="generate_image">image written to media/image-1.png</tool_result>

Parsing is forgiving about whitespace, a Markdown code fence inside the block and ``"parameters"`` written for
``"arguments"``, and reports — never raises on — malformed blocks. Text that is data (tool results, media
descriptions, user files) goes through ``neutralize_tool_markup`` so it can never contain a tool call.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_FENCE_RE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_MARKUP_RE = re.compile(r"<(/?)(tool_call|tool_result)", re.IGNORECASE)
_CALL_RE = re.compile(re.escape(CALL_OPEN) + r"(.*?)(?:" + re.escape(CALL_CLOSE) + r"|$)", re.DOTALL)


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedCalls:
    text: str  # the assistant text with the call blocks removed
    calls: list[ToolCall]
    errors: list[str]  # one message per malformed block (to be reported back to the model)


def render_tool_call(name: str, arguments: dict[str, Any]) -> str:
    return CALL_OPEN + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + CALL_CLOSE


def neutralize_tool_markup(text: str) -> str:
    """Escape ``<tool_call>``/``<tool_result>`` tags (any case) in untrusted text so it reads as data."""
    return _MARKUP_RE.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}", text)


def render_tool_result(name: str, content: str) -> str:
    safe = neutralize_tool_markup(content)
    return f'<tool_result name="{name}">{safe}</tool_result>'


def render_tool_specs(tools: list[dict[str, Any]]) -> str:
    """System-prompt text that lists the tools, one compact line each (keeps the prompt short)::

        - generate_image(description: string, seed?: integer, steps?: integer): Generate a new image ...

    ``tools`` are ``{"name", "description", "parameters": JSON schema}`` (OpenAI function style); ``?`` marks an
    optional argument and enums are written as ``"a"|"b"``. Bounds are not listed: a call that breaks one gets an
    error naming the bound.
    """
    lines = ["You can call these tools. To call one, write "
             + CALL_OPEN + '{"name": NAME, "arguments": {...}}' + CALL_CLOSE + " and wait for the result."]
    for tool in tools:
        lines.append(f"- {tool['name']}({_signature(tool.get('parameters') or {})}): {tool.get('description', '')}")
    return "\n".join(lines)


def _signature(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    parts = []
    for name, prop in (schema.get("properties") or {}).items():
        options = prop.get("anyOf") or [prop]
        types = []
        for option in options:
            if "enum" in option:
                types.append("|".join(json.dumps(v) for v in option["enum"]))
            elif "const" in option:
                types.append(json.dumps(option["const"]))
            elif option.get("type") not in (None, "null"):
                types.append(str(option["type"]))
        parts.append(f"{name}{'' if name in required else '?'}: {'|'.join(types) or 'any'}")
    return ", ".join(parts)


def parse_tool_calls(text: str) -> ParsedCalls:
    """Find tool-call blocks in generated text (an unclosed last block is parsed to the end of the text)."""
    calls: list[ToolCall] = []
    errors: list[str] = []
    for number, match in enumerate(_CALL_RE.finditer(text), start=1):
        body = match.group(1).strip()
        fenced = _FENCE_RE.match(body)
        if fenced:
            body = fenced.group(1)
        try:
            data = json.loads(body)
        except json.JSONDecodeError as error:
            errors.append(
                f"tool call {number} is not valid JSON ({error.msg}); write "
                '{"name": ..., "arguments": {...}}'
            )
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            errors.append(f"tool call {number} needs a string 'name'")
            continue
        arguments = data.get("arguments", data.get("parameters", {}))
        if isinstance(arguments, str):  # some models emit the arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                errors.append(f"tool call {number}: 'arguments' is a string that is not JSON")
                continue
        if not isinstance(arguments, dict):
            errors.append(f"tool call {number}: 'arguments' must be an object")
            continue
        calls.append(ToolCall(data["name"], arguments))
    return ParsedCalls(_CALL_RE.sub("", text).strip(), calls, errors)
