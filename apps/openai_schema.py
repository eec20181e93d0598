"""The OpenAI-compatible request body (with the ``nextgpt`` extension) and the response/chunk shapes."""
from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nextgpt.options import GenerationOptions
from nextgpt.types import Response

from .errors import RequestError
from .limits import ServeLimits

DEFAULT_MAX_TOKENS = 128


class NextGPTExtension(BaseModel):
    """Extra request field ``nextgpt`` (send it with the openai client as ``extra_body={"nextgpt": {...}}``)."""

    model_config = ConfigDict(extra="forbid")

    force: list[str] = Field(default_factory=list, description="modalities that must be generated")
    forbid: list[str] = Field(default_factory=list, description="modalities that must not be generated")
    steps: int | None = Field(None, ge=1, le=200, description="diffusion steps (decoder default if unset)")
    guidance_scale: float | None = Field(None, ge=0, le=50, description="classifier-free guidance")
    media_format: Literal["data_url", "file"] = Field(
        "data_url", description="generated media as base64 data URLs or as /v1/files/{id}/content download URLs")


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``. Unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[dict[str, Any]]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    modalities: list[str] | None = Field(None, description="e.g. ['text', 'image']: listed media are generated, "
                                                           "unlisted ones are not")
    nextgpt: NextGPTExtension = Field(default_factory=NextGPTExtension)

    @property
    def new_tokens(self) -> int:
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS

    def options(self, limits: ServeLimits, outputs: list[str], output_dir: str) -> GenerationOptions:
        """GenerationOptions for this request.

        Raises:
            RequestError: n > 1, too many stop strings, max_tokens over the server cap, unknown modalities.
        """
        if self.n != 1:
            raise RequestError(f"n={self.n}: this server returns one choice per request (n must be 1)")
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > limits.max_stop_sequences:
            raise RequestError(
                f"{len(stops)} stop sequences; the limit is {limits.max_stop_sequences} (max_stop_sequences)")
        if self.new_tokens > limits.max_new_tokens:
            raise RequestError(f"max_tokens={self.new_tokens} is over this server's limit of {limits.max_new_tokens} "
                               "(max_new_tokens)")
        force, forbid = set(self.nextgpt.force), set(self.nextgpt.forbid)
        if self.modalities is not None:
            unknown = sorted(set(self.modalities) - {"text", *outputs})
            if unknown:
                raise RequestError(f"modalities {unknown} cannot be generated; this model generates text and {outputs}")
            force |= set(self.modalities) - {"text"}
            forbid |= set(outputs) - set(self.modalities)
        options = GenerationOptions(
            max_new_tokens=self.new_tokens, temperature=self.temperature or 0.0, top_p=self.top_p or 1.0,
            seed=self.seed if self.seed is not None else 0, force=force, forbid=forbid,
            num_inference_steps=self.nextgpt.steps, guidance_scale=self.nextgpt.guidance_scale,
            output_dir=output_dir, stop=tuple(stops),
        )
        options.check_modalities(outputs)
        return options


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(response: Response) -> dict[str, int]:
    return {"prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens,
            "total_tokens": response.prompt_tokens + response.completion_tokens}


def completion(cid: str, model: str, response: Response, media: list[dict]) -> dict[str, Any]:
    """A ``chat.completion`` object: ``message.content`` is the text, ``message.media`` the generated parts."""
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": response.finish_reason,
                     "message": {"role": "assistant", "content": response.text, "media": media}}],
        "usage": usage(response),
    }


def chunk(cid: str, model: str, delta: dict[str, Any], finish_reason: str | None = None,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``chat.completion.chunk`` object."""
    return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **(extra or {})}


def error_body(message: str, kind: str, code: str | int | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}
