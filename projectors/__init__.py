"""Projectors between the encoder, the LLM and the decoders, built by registry name."""
from __future__ import annotations

from typing import Any

from torch import nn

from nextgpt.config import ProjectorConfig
from nextgpt.registry import PROJECTORS

from . import input as _input  # noqa: F401  (registers linear, mlp)
from . import output as _output  # noqa: F401  (registers transformer, linear-output, mlp-output)
from .input import LinearInputProjector, MLPInputProjector
from .output import LinearOutputProjector, MLPOutputProjector, TransformerOutputProjector

INPUT_KINDS = ("linear", "mlp")
OUTPUT_KINDS = ("transformer", "linear-output", "mlp-output")


def build_input_projector(config: ProjectorConfig, in_dim: int, out_dim: int) -> nn.Module:
    """Build an input projector ``[B, in_dim] → [B, T, out_dim]`` from its config."""
    if config.kind not in INPUT_KINDS:
        raise KeyError(f"unknown input projector {config.kind!r}; available: {list(INPUT_KINDS)}")
    return _build(config, in_dim=in_dim, out_dim=out_dim)


def build_output_projector(
    config: ProjectorConfig, in_dim: int, out_dim: int, num_queries: int, num_signal_tokens: int
) -> nn.Module:
    """Build an output projector ``[B, N, in_dim] → [B, Q, out_dim]`` from its config."""
    if config.kind not in OUTPUT_KINDS:
        raise KeyError(f"unknown output projector {config.kind!r}; available: {list(OUTPUT_KINDS)}")
    return _build(config, in_dim=in_dim, out_dim=out_dim, num_queries=num_queries, num_signal_tokens=num_signal_tokens)


def _build(config: ProjectorConfig, **sizes: Any) -> nn.Module:
    cls = PROJECTORS.get(config.kind)
    clash = sorted(set(sizes) & set(config.params))
    if clash:
        raise ValueError(f"projector params {clash} are derived from the connected components; remove them")
    try:
        return cls(**sizes, **config.params)
    except TypeError as error:
        raise ValueError(f"bad params for projector {config.kind!r}: {config.params} ({error})") from None


__all__ = [
    "LinearInputProjector",
    "MLPInputProjector",
    "TransformerOutputProjector",
    "LinearOutputProjector",
    "MLPOutputProjector",
    "build_input_projector",
    "build_output_projector",
]
