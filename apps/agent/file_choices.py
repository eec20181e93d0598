"""Agent middleware that holds a planned call's ``"path"`` to the files in the working folder.

A planner that is our own model (``NextGPTChatModel``) gets ``GenerationOptions.string_choices`` on every call:
once it writes ``"path": "``, the value is decoded as one of the working folder's files (``nextgpt/constrained.py``),
so a misspelt name (``inputs/qmt_7.png`` for ``inputs/qmvt_7.png``) cannot be planned. Which file, and whether a
path is wanted at all, is still the model's choice. Other planners (a hosted chat model) are left as they are.
"""
from __future__ import annotations

from typing import Any, Callable

from langchain.agents.middleware import AgentMiddleware

from .chat_model import NextGPTChatModel
from .workspace import Workspace


class FileChoices(AgentMiddleware):
    """Before each model call: ``string_choices={"path": <every file in the workspace>}`` for our own model.

    Args:
        workspace: the agent's working folder (its files are listed at each call: outputs made by earlier steps
            count).
        key: the JSON argument that names a file.
    """

    def __init__(self, workspace: Workspace, key: str = "path") -> None:
        super().__init__()
        self.workspace = workspace
        self.key = key

    def wrap_model_call(self, request: Any, handler: Callable) -> Any:
        files = self.workspace.files()
        if not files or not isinstance(request.model, NextGPTChatModel):
            return handler(request)
        settings = {**request.model_settings, "string_choices": {self.key: tuple(files)}}
        return handler(request.override(model_settings=settings))
