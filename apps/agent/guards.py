"""Agent middleware that enforces the safety model (reliability.md items 15, 16, 19, 20).

``ToolGuard``: the tool allow-list (on every model call and every tool call), tool failures and refusals turned
into error ``ToolMessage``s the model can read, tool output truncation, and a retry prompt when the model wrote a
tool call that could not be parsed. ``RunLimits``: a step limit and a wall-clock limit per run that end the run
with a message saying which limit stopped it and how to raise it.
"""
from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Callable

from langchain.agents.middleware import AgentMiddleware, AgentState, hook_config
from langchain.agents.middleware.types import PrivateStateAttr
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.channels.untracked_value import UntrackedValue
from typing_extensions import NotRequired

from nextgpt.dialogs.tool_calls import CALL_CLOSE, CALL_OPEN
from nextgpt.pipeline import ContextOverflow

from .operations import DEADLINE, DeadlineExceeded
from .specs import tool_failure

logger = logging.getLogger(__name__)

# Failures a tool reports to the model (bad paths, bad media, limits); anything else is a bug and propagates.
REPORTED_ERRORS = (ValueError, TimeoutError, RuntimeError, FileNotFoundError)


class ToolGuard(AgentMiddleware):
    """Allow-list, error reporting and output truncation around every tool call.

    Args:
        allowed: tool names the model may see and call; nothing a message says can add to it.
        max_output_chars: tool results are cut to this many characters (with a note saying so).
    """

    def __init__(self, allowed: set[str] | list[str], max_output_chars: int) -> None:
        super().__init__()
        self.allowed = frozenset(allowed)
        self.max_output_chars = max_output_chars

    def wrap_model_call(self, request: Any, handler: Callable) -> Any:
        tools = [t for t in request.tools if _tool_name(t) in self.allowed]
        dropped = sorted({_tool_name(t) for t in request.tools} - self.allowed)
        if dropped:
            logger.warning("tools %s are not on the allow-list; the model does not see them", dropped)
        return handler(request.override(tools=tools))

    def wrap_tool_call(self, request: Any, handler: Callable) -> ToolMessage | Any:
        call = request.tool_call
        if call["name"] not in self.allowed or request.tool is None:
            return _error(call, f"unknown tool {call['name']!r}: it is not available. "
                                f"Use one of {sorted(self.allowed)}.")
        try:
            result = handler(request)
        except REPORTED_ERRORS as error:
            logger.info("tool %s failed: %s", call["name"], error)
            return ToolMessage(content=tool_failure(call["name"], str(error)), name=call["name"],
                               tool_call_id=call["id"], status="error")
        if isinstance(result, ToolMessage):
            result.content = self._truncate(result.content)
        return result

    @hook_config(can_jump_to=["model"])
    def after_model(self, state: AgentState, runtime: Any) -> dict[str, Any] | None:
        last = state["messages"][-1] if state["messages"] else None
        if not isinstance(last, AIMessage) or last.tool_calls or not last.invalid_tool_calls:
            return None
        problems = "; ".join(str(c.get("error") or "unreadable") for c in last.invalid_tool_calls)
        hint = (f"Your tool call could not be read ({problems}). Write exactly "
                f'{CALL_OPEN}{{"name": "TOOL", "arguments": {{...}}}}{CALL_CLOSE}, or answer without a tool.')
        return {"messages": [HumanMessage(hint)], "jump_to": "model"}

    def _truncate(self, content: Any) -> Any:
        if isinstance(content, str) and len(content) > self.max_output_chars:
            cut = len(content) - self.max_output_chars
            return content[: self.max_output_chars] + f"\n[... {cut} more characters cut: tool output limit]"
        return content


class RunLimitsState(AgentState):
    run_steps: NotRequired[Annotated[int, UntrackedValue, PrivateStateAttr]]
    run_deadline: NotRequired[Annotated[float, UntrackedValue, PrivateStateAttr]]


class RunLimits(AgentMiddleware):
    """At most ``max_steps`` model calls and ``timeout_s`` seconds per run, and no more conversation than the
    planner's context holds.

    The deadline is checked before each model call and each tool call, and handed to tools (``DEADLINE``) so a
    running generation is cancelled between tokens. A conversation grown past the planner's context (a model
    retrying failed calls) ends the run with a message saying so, the steps before it kept.
    """

    state_schema = RunLimitsState

    def __init__(self, max_steps: int, timeout_s: float) -> None:
        super().__init__()
        self.max_steps = max_steps
        self.timeout_s = timeout_s

    def before_agent(self, state: RunLimitsState, runtime: Any) -> dict[str, Any]:
        return {"run_steps": 0, "run_deadline": time.monotonic() + self.timeout_s}

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: RunLimitsState, runtime: Any) -> dict[str, Any] | None:
        steps = state.get("run_steps", 0)
        if steps >= self.max_steps:
            return _stop(f"Stopped: the step limit of {self.max_steps} model calls was reached before a final "
                         "answer (the plan may be looping). Raise max_steps (--max-steps) or simplify the request.")
        if time.monotonic() > state.get("run_deadline", float("inf")):
            return _stop(f"Stopped: the wall-clock limit of {self.timeout_s:g} s was reached before a final answer. "
                         "Raise timeout_s (--timeout) or ask for less.")
        # Counted here, not after the model: other middleware may jump back to the model and skip after-hooks.
        return {"run_steps": steps + 1}

    def wrap_model_call(self, request: Any, handler: Callable) -> Any:
        try:
            return handler(request)
        except ContextOverflow as error:
            message = (f"Stopped: the conversation no longer fits the planner's context ({error}). Start a new "
                       "request, or ask for less in one.")
            logger.warning(message)
            return AIMessage(message, response_metadata={"stopped_by_limit": True})

    def wrap_tool_call(self, request: Any, handler: Callable) -> Any:
        deadline = request.state.get("run_deadline") if isinstance(request.state, dict) else None
        if deadline is not None and time.monotonic() > deadline:
            return _error(request.tool_call, f"not run: the wall-clock limit of {self.timeout_s:g} s was reached")
        token = DEADLINE.set(deadline)
        try:
            return handler(request)
        except DeadlineExceeded as error:
            return _error(request.tool_call, str(error))
        finally:
            DEADLINE.reset(token)


def _stop(message: str) -> dict[str, Any]:
    logger.warning(message)
    return {"jump_to": "end", "messages": [AIMessage(message, response_metadata={"stopped_by_limit": True})]}


def _error(call: dict, message: str) -> ToolMessage:
    return ToolMessage(content=f"Error: {message}", name=call["name"], tool_call_id=call["id"], status="error")


def _tool_name(tool: Any) -> str:
    return tool.get("name", "") if isinstance(tool, dict) else getattr(tool, "name", "")
