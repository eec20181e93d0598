"""Events yielded by ``NextGPT.stream``: text as it is generated, decoder progress, finished media."""
from __future__ import annotations

from dataclasses import dataclass

from .types import MediaOutput, Response


@dataclass
class TextDelta:
    text: str


@dataclass
class MediaStarted:
    """The LLM began a signal sequence for ``modality``."""

    modality: str


@dataclass
class DecodeProgress:
    modality: str
    step: int
    total: int


@dataclass
class MediaReady:
    media: MediaOutput


@dataclass
class Finished:
    response: Response


Event = TextDelta | MediaStarted | DecodeProgress | MediaReady | Finished
