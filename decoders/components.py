"""Build a decoder's pipeline components (UNet, VAE, text encoder, vocoder, scheduler, tokenizer) from configs.

An ``architecture`` maps a pipeline component name to ``{"class": NAME, "config": {...}}`` (models and schedulers)
or to a tokenizer spec ``{"class": NAME, "tokenizer": {...}}`` (see :mod:`nextgpt.decoders.tokenizers`). Class names
are looked up in ``diffusers`` (models, schedulers) and ``transformers`` (pretrained models) only, so a config file
cannot make us import anything else. All dicts are JSON-safe: they are saved in ``config.json``.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch

from .tokenizers import build_tokenizer


def _resolve_class(name: str) -> tuple[str, type]:
    """Return ``("diffusers" | "scheduler" | "transformers", cls)`` for a component class name."""
    import diffusers
    import transformers
    from diffusers import ModelMixin, SchedulerMixin
    from transformers import PreTrainedModel

    candidate = getattr(diffusers, name, None)
    if isinstance(candidate, type) and issubclass(candidate, SchedulerMixin):
        return "scheduler", candidate
    if isinstance(candidate, type) and issubclass(candidate, ModelMixin):
        return "diffusers", candidate
    candidate = getattr(transformers, name, None)
    if isinstance(candidate, type) and issubclass(candidate, PreTrainedModel):
        return "transformers", candidate
    raise ValueError(
        f"unknown component class {name!r}: expected a diffusers model or scheduler, or a transformers model class "
        "name (e.g. 'UNet2DConditionModel', 'DDIMScheduler', 'CLIPTextModel')"
    )


def build_component(spec: dict[str, Any], *, tokenizers: bool = True) -> Any:
    """Build one component from ``{"class", "config"}`` or a tokenizer ``{"class", "tokenizer"}`` spec.

    Models are created in eval mode with random weights on the current default device (``with torch.device("meta")``
    allocates nothing).

    Raises:
        ValueError: for a malformed spec or an unknown class.
    """
    if not isinstance(spec, dict) or "class" not in spec:
        raise ValueError(f"a component spec needs a 'class' key, got {spec!r}")
    if "tokenizer" in spec:
        return build_tokenizer(spec["tokenizer"]) if tokenizers else None
    kind, cls = _resolve_class(spec["class"])
    config = copy.deepcopy(spec.get("config", {}))
    if kind == "scheduler":
        return cls.from_config(config)
    model = cls.from_config(config) if kind == "diffusers" else cls(cls.config_class(**config))
    return model.eval()  # like from_pretrained: dropout off (CLAP's text encoder has dropout 0.1)


def build_components(
    architecture: dict[str, Any], device: str | torch.device | None = None, *, tokenizers: bool = True
) -> dict[str, Any]:
    """Build every component of an ``architecture`` (random weights).

    Args:
        architecture: component name → spec, e.g. ``real_config().architecture``.
        device: where parameters are created; ``"meta"`` allocates nothing (for counting parameters).
        tokenizers: ``False`` leaves tokenizers as ``None`` (e.g. on meta, or when a tokenizer needs the hub).

    Returns:
        component name → object, ready for ``PipelineClass(**components)``.
    """
    context = torch.device(device) if device is not None else contextlib.nullcontext()
    with context:
        return {name: build_component(spec, tokenizers=tokenizers) for name, spec in architecture.items()}


def count_parameters(components: dict[str, Any]) -> dict[str, int]:
    """Number of parameters of every ``torch.nn.Module`` among ``components`` (works on meta tensors)."""
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in components.items()
        if isinstance(module, torch.nn.Module)
    }
