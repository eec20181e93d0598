"""Typed, bounded tool arguments (pydantic), built from ``AgentLimits`` and the model's modalities.

A value outside a bound fails validation; LangGraph's ToolNode turns that into an error ``ToolMessage`` that names
the field and the bound, so the model can correct itself (reliability.md item 16).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from .limits import AgentLimits

MAX_SEED = 2**31 - 1
DESCRIBE_QUESTION = "Describe it in one sentence."  # the describe tools' default question
PATH_FIELD = Field(..., min_length=1, max_length=255,
                   description="file path relative to the working folder, e.g. inputs/cat.png or outputs/image-0.png")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unexpected argument is an error the model should see


@dataclass(frozen=True)
class ToolSchemas:
    describe: type[BaseModel]
    generate: type[BaseModel]
    regenerate: type[BaseModel]
    convert: type[BaseModel]


def build_schemas(limits: AgentLimits, output_modalities: list[str]) -> ToolSchemas:
    """Argument models for the media tools, bounded by ``limits``; ``convert``'s target is an enum of outputs."""
    seed = (Optional[int], Field(None, ge=0, le=MAX_SEED, description="fixes the result; omit for seed 0"))
    steps = (Optional[int], Field(None, ge=1, le=limits.max_inference_steps,
                                  description="diffusion steps; more is slower and finer (omit for the default)"))
    describe = create_model(
        "DescribeArgs", __base__=_Args,
        path=(str, PATH_FIELD),
        question=(str, Field(DESCRIBE_QUESTION, min_length=1, max_length=limits.max_question_chars,
                             description="what to ask about the file")),
    )
    generate = create_model(
        "GenerateArgs", __base__=_Args,
        description=(str, Field(..., min_length=1, max_length=limits.max_description_chars,
                                description="what the result should show or sound like")),
        seed=seed, steps=steps,
    )
    regenerate = create_model(
        "RegenerateArgs", __base__=_Args,
        path=(str, Field(..., min_length=1, max_length=255, description="a file an earlier generate call returned")),
        seed=seed, steps=steps,
    )
    target = Literal[tuple(output_modalities)] if output_modalities else str
    convert = create_model(
        "ConvertArgs", __base__=_Args,
        path=(str, PATH_FIELD),
        to=(target, Field(..., description=f"the modality to make: one of {output_modalities}")),
        instruction=(str, Field("", max_length=limits.max_description_chars,
                                description="optional extra wishes, e.g. 'calm piano music'")),
        seed=seed, steps=steps,
    )
    return ToolSchemas(describe, generate, regenerate, convert)
