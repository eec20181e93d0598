"""The one internal dialogue schema every dataset format is read into.

A ``Dialogue`` is a list of ``Turn``s. A user turn may attach input media (its text holds ``<modality>``
placeholders, one per item, or they are prepended); an assistant turn may request output media, each with the
caption that describes it — the caption is what stage 2/3 align the signal features to (through the decoder's
text encoder). In the assistant text, the place where an output appears is written as the literal marker
``<output:MODALITY>`` (or appended at the end if absent); tokenisation turns each marker into that modality's
signal tokens. Tool calls use dialogs/tool_calls.py's format inside assistant text, and tool results are turns
with role ``tool``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TurnRole = Literal["system", "user", "assistant", "tool"]
OUTPUT_MARKER = "<output:{modality}>"


@dataclass
class MediaRef:
    """An input media item: a file path (resolved against the dataset root) for a modality."""

    modality: str
    path: str


@dataclass
class OutputRequest:
    """A media item the assistant produces, with the caption that describes it (the alignment target)."""

    modality: str
    caption: str
    path: str | None = None  # the ground-truth file, if the dataset has one (for denoising losses / eval)
    embedding: str | None = None  # a precomputed decoder-condition file named by the dataset (``X.jpg.npy``)


@dataclass
class Turn:
    role: TurnRole
    text: str
    inputs: list[MediaRef] = field(default_factory=list)
    outputs: list[OutputRequest] = field(default_factory=list)
    tool_name: str | None = None  # for role == "tool": which tool produced this result
    # assistant turns only: False keeps the turn as context without a loss on it — e.g. a failed tool call whose
    # error the next assistant turn recovers from: the model learns the recovery, not the mistake
    train: bool = True


@dataclass
class Dialogue:
    """One training example. ``source`` is ``file:line`` for error messages."""

    turns: list[Turn]
    id: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for turn in data["turns"]:
            if turn["train"]:  # the default is not written: files of fully trained dialogues stay as they were
                del turn["train"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Dialogue":
        turns = [
            Turn(
                role=t["role"],
                text=t.get("text", ""),
                inputs=[MediaRef(**m) for m in t.get("inputs", [])],
                outputs=[OutputRequest(**o) for o in t.get("outputs", [])],
                tool_name=t.get("tool_name"),
                train=t.get("train", True),
            )
            for t in data["turns"]
        ]
        return cls(turns=turns, id=data.get("id", ""), source=data.get("source", ""))
