"""Agent middleware that holds the file names our planner writes to the files in the working folder.

A planner that is our own model (``NextGPTChatModel``) gets ``GenerationOptions.string_choices`` and
``name_choices`` on every call: once it writes ``"path": "`` in a call, the value is decoded as one of the working
folder's files, and once its answer's text starts a name with one of their folders (``inputs/``), the name is too
(``nextgpt/constrained.py``). So a misspelt name (``inputs/qmt_7.png`` for ``inputs/qmvt_7.png``) can be neither
planned nor told to the user. Which file, and whether a name is written at all, is still the model's choice. Other
planners (a hosted chat model) are left as they are.
"""
from __future__ import annotations

from typing import Any, Callable

from langchain.agents.middleware import AgentMiddleware

from .chat_model import NextGPTChatModel
from .workspace import Workspace


class FileChoices(AgentMiddleware):
    """Before each model call: ``string_choices={"path": <every file in the workspace>}`` and ``name_choices=<the
    same files>`` for our own model.

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
        settings = {**request.model_settings, "string_choices": {self.key: tuple(files)}, "name_choices": tuple(files)}
        return handler(request.override(model_settings=settings))
