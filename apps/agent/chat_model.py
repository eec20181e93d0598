"""``NextGPTChatModel``: a LangChain chat model over ``NextGPT.chat``/``NextGPT.stream``.

Multimodal content blocks in and out (see ``messages``), streaming, ``bind_tools`` with the text tool-call format
of ``nextgpt.dialogs.tool_calls`` (so the core can be instruction-tuned on it), and tolerant parsing of the calls.

Example:
    >>> model = NextGPTChatModel(pipeline=NextGPT.from_preset("tiny"))
    >>> model.bind(force=["image"]).invoke("draw a red circle").content_blocks
"""
from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from nextgpt.dialogs.tool_calls import CALL_OPEN, parse_tool_calls
from nextgpt.events import Finished, MediaReady, TextDelta
from nextgpt.options import GenerationOptions

from .messages import media_block, to_ai_message, to_nextgpt_messages

logger = logging.getLogger(__name__)

_OPTION_FIELDS = {f.name for f in dataclasses.fields(GenerationOptions)}


class NextGPTChatModel(BaseChatModel):
    """NExT-GPT as a LangChain ``BaseChatModel``.

    Attributes:
        pipeline: a ``NextGPT`` pipeline.
        options: default generation options (``output_dir`` is where generated media are written).
    Call-time keyword arguments (``model.bind(force=["image"], seed=3)``) override GenerationOptions fields.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: Any = Field(exclude=True)
    options: GenerationOptions = Field(default_factory=lambda: GenerationOptions(max_new_tokens=96))

    @property
    def _llm_type(self) -> str:
        return "nextgpt"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self._model_name}

    @property
    def _model_name(self) -> str:
        return f"nextgpt-{self.pipeline.config.name}"

    # ---- tools -------------------------------------------------------------------------------------------
    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None,
                   **kwargs: Any) -> Runnable:
        """Bind tools: their specs go into the system prompt and calls are parsed from the generated text.

        ``tool_choice`` cannot constrain decoding here; "any"/"required"/a tool name become an instruction.
        """
        specs = []
        for tool in tools:
            function = convert_to_openai_tool(tool)["function"]
            specs.append({"name": function["name"], "description": function.get("description", ""),
                          "parameters": function.get("parameters", {})})
        return self.bind(tools=specs, tool_choice=tool_choice, **kwargs)

    # ---- generation -----------------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        conversation, options, tools = self._prepare(messages, stop, kwargs)
        response = self.pipeline.chat(conversation, options)
        message = to_ai_message(response, parse_tools=bool(tools), model_name=self._model_name)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        conversation, options, tools = self._prepare(messages, stop, kwargs)
        splitter = _CallSplitter() if tools else None
        streamed = ""
        events = self.pipeline.stream(conversation, options)
        try:  # closing this generator (consumer left) closes the stream, which cancels the generation
            for event in events:
                if isinstance(event, TextDelta):
                    text = splitter.feed(event.text) if splitter else event.text
                    if text:
                        streamed += text
                        yield self._chunk(AIMessageChunk(content=text), run_manager)
                elif isinstance(event, MediaReady) and event.media.path is not None:
                    block = media_block(event.media.modality, event.media.path, event.media.seed)
                    yield self._chunk(AIMessageChunk(content=[block]), run_manager)
                elif isinstance(event, Finished):
                    yield self._chunk(self._final_chunk(event.response, streamed, bool(tools)), run_manager)
        finally:
            events.close()

    def _final_chunk(self, response: Any, streamed: str, tools: bool) -> AIMessageChunk:
        content, chunks = "", []
        if tools:
            parsed = parse_tool_calls(response.text)
            content = parsed.text[len(streamed):] if parsed.text.startswith(streamed) else ""
            chunks = [{"type": "tool_call_chunk", "name": c.name, "args": json.dumps(c.arguments),
                       "id": f"call_{uuid.uuid4().hex[:12]}", "index": i} for i, c in enumerate(parsed.calls)]
            chunks += [{"type": "tool_call_chunk", "name": None, "args": error, "id": f"call_{uuid.uuid4().hex[:12]}",
                        "index": len(parsed.calls) + i} for i, error in enumerate(parsed.errors)]
        return AIMessageChunk(
            content=content, tool_call_chunks=chunks, chunk_position="last",
            response_metadata={"model_name": self._model_name, "finish_reason": response.finish_reason,
                               "timings": response.timings, "warnings": response.warnings,
                               "nextgpt_raw_text": response.raw_text},
            usage_metadata={"input_tokens": response.prompt_tokens, "output_tokens": response.completion_tokens,
                            "total_tokens": response.prompt_tokens + response.completion_tokens},
        )

    @staticmethod
    def _chunk(message: AIMessageChunk, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
        chunk = ChatGenerationChunk(message=message)
        if run_manager and isinstance(message.content, str) and message.content:
            run_manager.on_llm_new_token(message.content, chunk=chunk)
        return chunk

    def _prepare(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
                 ) -> tuple[list, GenerationOptions, list[dict]]:
        tools = kwargs.pop("tools", None) or []
        tool_choice = kwargs.pop("tool_choice", None)
        unknown = sorted(set(kwargs) - _OPTION_FIELDS)
        if unknown:
            raise ValueError(f"unknown NextGPTChatModel arguments {unknown}; use GenerationOptions fields "
                             f"{sorted(_OPTION_FIELDS)}")
        fields = {**dataclasses.asdict(self.options), **kwargs}
        fields["stop"] = tuple(fields.get("stop") or ()) + tuple(stop or ())
        options = GenerationOptions(**fields)
        output_dir = Path(options.output_dir or "nextgpt-outputs")
        conversation = to_nextgpt_messages(
            messages, modalities=[s.name for s in self.pipeline.config.input_modalities], tool_specs=tools,
            tool_instruction=_choice_instruction(tool_choice), scratch_dir=output_dir / "inputs",
            max_bytes=self.pipeline.config.encoder.limits.max_file_bytes,
        )
        return conversation, options, tools


class _CallSplitter:
    """Streams text up to the first ``<tool_call>``, trimmed like ``parse_tool_calls`` trims the whole text.

    Holds back a tail that might be the start of a call and trailing whitespace (emitted once more text follows),
    so the streamed text equals the parsed text of the finished answer.
    """

    def __init__(self) -> None:
        self.buffer = ""
        self.sent = 0
        self.in_call = False

    def feed(self, delta: str) -> str:
        self.buffer += delta
        if self.in_call:
            return ""
        start = self.buffer.find(CALL_OPEN)
        if start >= 0:
            self.in_call = True
            safe_end = start
        else:
            safe_end = len(self.buffer)
            for keep in range(min(len(CALL_OPEN) - 1, len(self.buffer)), 0, -1):
                if CALL_OPEN.startswith(self.buffer[-keep:]):
                    safe_end = len(self.buffer) - keep
                    break
        safe_end = len(self.buffer[:safe_end].rstrip())
        if self.sent == 0:  # leading whitespace is never sent
            self.sent = len(self.buffer[:safe_end]) - len(self.buffer[:safe_end].lstrip())
        out = self.buffer[self.sent:safe_end]
        self.sent = max(self.sent, safe_end)
        return out


def _choice_instruction(tool_choice: Any) -> str:
    if tool_choice in (None, "auto", "none"):
        return "" if tool_choice != "none" else "Do not call a tool now; answer directly."
    if tool_choice in ("any", "required", True):
        return "You must call one of these tools now."
    name = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else str(tool_choice)
    return f"You must call the tool {name!r} now."
