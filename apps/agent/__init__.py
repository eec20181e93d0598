"""NExT-GPT inside LangChain (``NextGPTChatModel``) and LangChain tools around NExT-GPT (``NextGPTAgent``).

Needs the ``agent`` extra (langchain, langchain-core, langgraph). See docs/agent.md for the tool-call format and
the safety model.
"""
from .agent import SYSTEM_PROMPT, AgentResult, NextGPTAgent, iter_agent_steps
from .chat_model import NextGPTChatModel
from .display import append_step, chat_messages
from .limits import AgentLimits
from .steps import AgentStep
from .tools import build_tools
from .workspace import Workspace, WorkspaceError

__all__ = [
    "SYSTEM_PROMPT", "AgentLimits", "AgentResult", "AgentStep", "NextGPTAgent", "NextGPTChatModel", "Workspace",
    "WorkspaceError", "append_step", "build_tools", "chat_messages", "iter_agent_steps",
]
