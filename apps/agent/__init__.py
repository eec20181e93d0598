"""NExT-GPT inside LangChain (``NextGPTChatModel``) and LangChain tools around NExT-GPT (``NextGPTAgent``).

Needs the ``agent`` extra (langchain, langchain-core, langgraph). See docs/agent.md for the tool-call format and
the safety model. Names are imported on first use, so ``nextgpt.apps.agent.specs`` (the prompt and tool specs,
pydantic only) works without LangChain installed.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SYSTEM_PROMPT": "specs", "AgentResult": "agent", "NextGPTAgent": "agent", "iter_agent_steps": "agent",
    "NextGPTChatModel": "chat_model", "append_step": "display", "chat_messages": "display",
    "AgentLimits": "limits", "AgentStep": "steps", "build_tools": "tools", "Workspace": "workspace",
    "WorkspaceError": "workspace", "media_tool_specs": "specs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
