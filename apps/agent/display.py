"""Agent steps as chat messages in Gradio's messages format (plain dicts: no gradio import needed here).

Tool calls and results become collapsible "thought" messages (``metadata.title``), nested under their call by
``id``/``parent_id``; every media file of a step becomes its own message ``{"path", "mime_type"}``, which
``gr.Chatbot`` renders as an image, audio player or video (the app must list the agent's working folder in
``allowed_paths``). ``append_step`` also marks the call a result answers as done (its spinner stops).
"""
from __future__ import annotations

import json
from typing import Any

from .steps import AgentStep


def chat_messages(step: AgentStep) -> list[dict[str, Any]]:
    """The messages to append to a ``gr.Chatbot`` history for one step."""
    if step.kind == "tool_call":
        args = json.dumps(step.args, ensure_ascii=False) if step.args is not None else ""
        title = f"🛠 {step.tool}" if step.tool else "🛠 unreadable tool call"
        metadata = {"title": title, "status": "pending", **({"id": step.call_id} if step.call_id else {})}
        messages = [{"role": "assistant", "content": args or step.text, "metadata": metadata}]
    elif step.kind == "tool_result":
        mark = "✗" if step.is_error else "✓"
        metadata = {"title": f"{mark} {step.tool}", "status": "done",
                    **({"parent_id": step.call_id} if step.call_id else {})}
        messages = [{"role": "assistant", "content": step.text, "metadata": metadata}]
    elif step.kind == "notice":
        messages = [{"role": "assistant", "content": step.text, "metadata": {"title": "ℹ note", "status": "done"}}]
    else:  # answer / stopped
        prefix = "⚠ " if step.kind == "stopped" else ""
        messages = [{"role": "assistant", "content": prefix + step.text}]
    messages += [{"role": "assistant", "content": {"path": f["path"], "mime_type": f["mime_type"]}}
                 for f in step.files if step.kind != "notice"]
    return messages


def append_step(history: list[dict[str, Any]], step: AgentStep) -> list[dict[str, Any]]:
    """Append a step's messages to ``history`` (in place) and stop the spinner of the call a result answers."""
    if step.kind == "tool_result" and step.call_id:
        for message in history:
            metadata = message.get("metadata") or {}
            if metadata.get("id") == step.call_id:
                metadata["status"] = "done"
    history.extend(chat_messages(step))
    return history
