"""LangChain messages ↔ NExT-GPT messages: content blocks in, content blocks out, tool turns as text.

In: ``SystemMessage`` → the system turn (with the bound tools' specs appended); ``HumanMessage`` text and media
blocks (``{"type": "image"|"audio"|"video"|"file", "path"|"url"|"base64", "mime_type"}``, legacy ``image_url``
and ``source_type`` blocks too) → a user turn with attached ``Media``; ``AIMessage`` → an assistant turn with its
tool calls rendered as ``<tool_call>`` blocks; each ``ToolMessage`` → a user-side turn holding one ``<tool_result>``
block (the chat templates have no tool role; dialogs/render.py renders ``tool`` turns the same way).

Out: a ``Response`` → an ``AIMessage`` whose content holds text plus one block per generated file (``url`` is a
``file://`` URI; ``extras`` has the path and seed), with the tool calls parsed from the text when tools are bound.
"""
from __future__ import annotations

import base64
import binascii
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from nextgpt.dialogs.tool_calls import (
    parse_tool_calls,
    render_tool_call,
    render_tool_result,
    render_tool_specs,
)
from nextgpt.types import Media, Message, Response

from .workspace import mime_type

_SUFFIX_BY_MIME = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
                   "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/flac": ".flac", "audio/mpeg": ".mp3",
                   "video/mp4": ".mp4", "video/webm": ".webm"}


def to_nextgpt_messages(messages: Sequence[BaseMessage], *, modalities: Iterable[str],
                        tool_specs: list[dict] | None = None, tool_instruction: str = "",
                        scratch_dir: str | Path = "nextgpt-outputs/inputs", max_bytes: int | None = None,
                        ) -> list[Message]:
    """Convert a LangChain conversation to ``Message``s for ``NextGPT.chat``.

    Raises:
        ValueError: for a content block this model cannot take (naming the block and what is accepted), a URL
            (no network), or a role that cannot be placed.
    """
    modalities = set(modalities)
    system_parts = [_text(m.content) for m in messages if isinstance(m, SystemMessage)]
    if tool_specs:
        system_parts.append(render_tool_specs(tool_specs) + (f"\n{tool_instruction}" if tool_instruction else ""))
    out: list[Message] = [Message("system", "\n\n".join(p for p in system_parts if p))] if system_parts else []
    tool_names = {c["id"]: c["name"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
    for message in messages:
        if isinstance(message, ToolMessage):  # one user-side turn per result, as dialogs/render.py writes them
            name = message.name or tool_names.get(message.tool_call_id) or "tool"
            out.append(Message("user", render_tool_result(name, _text(message.content))))
        elif isinstance(message, SystemMessage):
            continue
        elif isinstance(message, HumanMessage):
            text, media = _user_content(message.content, modalities, Path(scratch_dir), max_bytes)
            out.append(Message("user", text, media))
        elif isinstance(message, AIMessage):
            out.append(Message("assistant", _assistant_text(message)))
        else:
            raise ValueError(f"cannot place a {type(message).__name__} in a NExT-GPT conversation; use System, "
                             "Human, AI or Tool messages")
    return out


def to_ai_message(response: Response, *, parse_tools: bool, model_name: str) -> AIMessage:
    """Build the ``AIMessage`` for a ``Response`` (tool calls parsed only when tools are bound)."""
    text, tool_calls, invalid = response.text, [], []
    if parse_tools:
        parsed = parse_tool_calls(response.text)
        text = parsed.text
        tool_calls = [{"type": "tool_call", "name": c.name, "args": c.arguments, "id": _call_id()}
                      for c in parsed.calls]
        invalid = [{"type": "invalid_tool_call", "name": None, "args": None, "id": _call_id(), "error": e}
                   for e in parsed.errors]
    blocks = [media_block(m.modality, m.path, m.seed) for m in response.media if m.path is not None]
    content: str | list = [{"type": "text", "text": text}, *blocks] if blocks else text
    return AIMessage(
        content=content, tool_calls=tool_calls, invalid_tool_calls=invalid,
        response_metadata={
            "model_name": model_name, "finish_reason": response.finish_reason, "timings": response.timings,
            "warnings": response.warnings, "nextgpt_raw_text": response.raw_text,
            "media": [b["extras"] for b in blocks],
        },
        usage_metadata={"input_tokens": response.prompt_tokens, "output_tokens": response.completion_tokens,
                        "total_tokens": response.prompt_tokens + response.completion_tokens},
    )


def media_block(modality: str, path: Path, seed: int | None = None) -> dict[str, Any]:
    """A LangChain v1 content block for a generated file (``file`` for modalities without a standard block)."""
    path = Path(path).resolve()
    kind = modality if modality in ("image", "audio", "video") else "file"
    return {"type": kind, "url": path.as_uri(), "mime_type": mime_type(path),
            "extras": {"modality": modality, "path": str(path), "mime_type": mime_type(path), "seed": seed}}


def _assistant_text(message: AIMessage) -> str:
    raw = message.response_metadata.get("nextgpt_raw_text")
    if raw:  # our own earlier answer: keeps its signal tokens and tool-call blocks as generated
        return raw
    calls = "".join(render_tool_call(c["name"], c["args"]) for c in message.tool_calls)
    return _text(message.content) + calls


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "\n".join(parts)


def _user_content(content: Any, modalities: set[str], scratch: Path, max_bytes: int | None
                  ) -> tuple[str, list[Media]]:
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    media: list[Media] = []
    for index, block in enumerate(content):
        if isinstance(block, str):
            texts.append(block)
            continue
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "image_url":  # OpenAI-style legacy block
            url = block["image_url"]["url"] if isinstance(block.get("image_url"), dict) else block.get("image_url")
            media.append(Media("image", _source({"url": url}, "image", scratch, max_bytes, index)))
        elif kind in modalities or kind == "file":
            modality = kind if kind != "file" else str(block.get("mime_type", "")).split("/")[0]
            if modality not in modalities:
                raise ValueError(f"content block {index}: a file of type {block.get('mime_type')!r} is not an "
                                 f"input this model takes; inputs are {sorted(modalities)}")
            media.append(Media(modality, _source(block, modality, scratch, max_bytes, index)))
        else:
            raise ValueError(f"content block {index} has type {kind!r}; use 'text', one of {sorted(modalities)}, "
                             "'file' (with a mime_type) or 'image_url'")
    return "\n".join(texts), media


def _source(block: dict, modality: str, scratch: Path, max_bytes: int | None, index: int) -> str:
    """A local file path for a media block (base64 data is written to ``scratch``)."""
    data = block.get("base64") or (block.get("data") if block.get("source_type") == "base64" else None)
    url = block.get("url") or (block.get("data") if block.get("source_type") == "url" else None)
    path = block.get("path") or (block.get("extras") or {}).get("path")
    if url and str(url).startswith("data:"):
        header, _, data = str(url).partition(",")
        block = {**block, "mime_type": header[5:].split(";")[0]}
        url = None
    if data:
        if max_bytes is not None and len(data) * 3 // 4 > max_bytes:
            raise ValueError(f"content block {index}: the {modality} data is over the {max_bytes}-byte limit")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"content block {index}: 'base64' is not valid base64 data") from None
        scratch.mkdir(parents=True, exist_ok=True)
        suffix = _SUFFIX_BY_MIME.get(str(block.get("mime_type", "")).lower(), "")
        target = scratch / f"{modality}-{uuid.uuid4().hex[:8]}{suffix}"
        target.write_bytes(raw)
        return str(target)
    if url:
        url = str(url)
        if url.startswith("file://"):
            return url[len("file://"):]
        if "://" in url:
            raise ValueError(f"content block {index}: {url[:60]!r} is a remote URL; NExT-GPT reads local files "
                             "only (download it yourself and pass 'path' or 'base64')")
        return url
    if path:
        return str(path)
    raise ValueError(f"content block {index}: a {modality} block needs 'path', 'url' (file://) or 'base64'")


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:12]}"

