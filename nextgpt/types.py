"""Typed messages in and responses out of the Python API."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np

Role = Literal["system", "user", "assistant"]


@dataclass
class Media:
    """One media item attached to a message.

    Attributes:
        modality: "image", "audio", "video", ... (a modality of the model).
        source: a file path, a PIL image, or an array (image [H,W,3] uint8, audio [samples], video [F,H,W,3]).
        rate: sample rate for audio arrays / fps for video arrays.
    """

    modality: str
    source: Any
    rate: int | None = None

    @property
    def encoder_input(self) -> Any:
        """What the encoders read: an in-memory array with its rate as a ``(array, rate)`` pair (audio: sample
        rate, video: fps), anything else (a path, bytes, a PIL image, a pair already) as it is."""
        if self.rate is not None and not isinstance(self.source, (str, bytes, tuple)) and hasattr(self.source, "shape"):
            return (self.source, self.rate)
        return self.source


@dataclass
class Message:
    """A chat message: text with ``<modality>`` placeholders, attached media, and (assistant) signal text."""

    role: Role
    text: str = ""
    media: list[Media] = field(default_factory=list)

    @classmethod
    def user(cls, text: str = "", *, image: Any = None, audio: Any = None, video: Any = None,
             media: list[Media] | None = None) -> "Message":
        """Convenience constructor: ``Message.user("what is this?", image="cat.png")``."""
        items = list(media or [])
        for modality, value in (("image", image), ("audio", audio), ("video", video)):
            if value is None:
                continue
            for source in value if isinstance(value, (list, tuple)) else [value]:
                items.append(Media(modality, source))
        return cls("user", text, items)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Message":
        """Accept ``{"role", "content": str | [parts]}`` with parts ``{"type": "text", "text"}`` or
        ``{"type": MODALITY, MODALITY|"path": source}``.

        Raises:
            ValueError: for a missing role or an unknown part shape.
        """
        role = data.get("role")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"message role must be system/user/assistant, got {role!r}")
        content = data.get("content", "")
        if isinstance(content, str):
            return cls(role, content, [Media(**m) if isinstance(m, Mapping) else m for m in data.get("media", [])])
        texts: list[str] = []
        media: list[Media] = []
        for index, part in enumerate(content):
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind:
                source = part.get(kind, part.get("path"))
                if source is None:
                    raise ValueError(f"content part {index} of type {kind!r} has no {kind!r} or 'path' field")
                media.append(Media(kind, source, part.get("rate")))
            else:
                raise ValueError(f"content part {index} has no 'type'; expected text or a modality name")
        return cls(role, "\n".join(texts), media)


@dataclass
class MediaOutput:
    """One generated media item."""

    modality: str
    data: np.ndarray
    rate: int | None = None
    path: Path | None = None
    seed: int | None = None

    def as_input(self) -> Media:
        """Feed this output back in as an input of a later turn."""
        return Media(self.modality, self.path if self.path is not None else self.data, self.rate)


@dataclass
class Response:
    """What one chat/generate call returns.

    Attributes:
        text: the answer without signal tokens.
        media: generated items in the order their signal sequences appeared.
        raw_text: the answer including signal tokens (what a history turn stores).
        finish_reason: "stop" (EOS/stop string), "length" (token budget).
        timings: seconds per phase (encode, llm, project, decode, save, total).
        warnings: problems that were handled (e.g. a garbled signal sequence dropped).
    """

    text: str
    media: list[MediaOutput] = field(default_factory=list)
    raw_text: str = ""
    finish_reason: str = "stop"
    timings: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    warnings: list[str] = field(default_factory=list)

    def media_of(self, modality: str) -> list[MediaOutput]:
        return [m for m in self.media if m.modality == modality]
