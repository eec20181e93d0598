"""Bounds on one agent run and on tool arguments (reliability.md items 16 and 19), validated at construction."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AgentLimits(BaseModel):
    """Every agent run is bounded; defaults suit the tiny preset and a laptop.

    Attributes:
        max_steps: model calls per run (each plan/answer step is one); the run stops with a message when reached.
        timeout_s: wall-clock seconds per run; checked before every model and tool call, and between streamed
            tokens of a generation.
        max_tool_output_chars: tool results longer than this are cut (with a note) before the model reads them.
        max_description_chars / max_question_chars: bounds on tool text arguments.
        max_inference_steps: upper bound for the ``steps`` argument of the generate tools.
        max_new_tokens: token budget of the describe tools' answers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_steps: int = Field(8, ge=1, le=100)
    timeout_s: float = Field(300.0, gt=0, le=24 * 3600)
    max_tool_output_chars: int = Field(2000, ge=100, le=100_000)
    max_description_chars: int = Field(1000, ge=10, le=10_000)
    max_question_chars: int = Field(500, ge=10, le=10_000)
    max_inference_steps: int = Field(100, ge=1, le=1000)
    max_new_tokens: int = Field(96, ge=1, le=4096)
