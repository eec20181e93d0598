"""Optimizer (Adam/AdamW with the NExT-GPT defaults) and the warmup-then-decay learning-rate schedule."""
from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable

import torch
from torch import nn

from .config import OptimConfig
from .trainables import name_prefixes


def param_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float,
                 lr: float, lr_scale: dict[str, float] | None = None) -> list[dict]:
    """The trainable parameters in optimizer groups: one per (lr multiplier, weight decay). Embedding tables
    trained by row mask get no weight decay (so frozen rows stay exactly unchanged); ``lr_scale`` maps glob
    patterns over the names to a multiplier of ``lr`` (the first matching pattern wins, default 1).

    Raises:
        ValueError: an ``lr_scale`` pattern matches no trainable parameter (a typo would silently train at the
            base lr), naming the pattern and the trained names it could have meant.
    """
    lr_scale = lr_scale or {}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    matched: set[str] = set()
    trained: list[str] = []
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        trained.append(name)
        pattern = next((p for p in lr_scale if fnmatch.fnmatchcase(name, p)), None)
        if pattern is not None:
            matched.add(pattern)
        scale = lr_scale[pattern] if pattern is not None else 1.0
        decayed = not getattr(parameter, "_nextgpt_row_mask", False)
        groups.setdefault((scale, decayed), []).append(parameter)
    unmatched = [p for p in lr_scale if p not in matched]
    if unmatched and trained:
        raise ValueError(f"optim.lr_scale pattern(s) {unmatched} match no trained parameter; the trained "
                         f"parameters' names start with {name_prefixes(trained)} (patterns are matched like "
                         "'trainable', e.g. 'input_projectors.*')")
    order = sorted(groups, key=lambda key: not key[1])  # decayed groups first, as checkpoints before lr_scale
    return [{"params": groups[key], "weight_decay": weight_decay if key[1] else 0.0, "lr": lr * key[0]}
            for key in order]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """Adam/AdamW over ``model``'s trainable parameters (names as ``model.named_parameters()`` gives them)."""
    groups = param_groups(model.named_parameters(), config.weight_decay, config.lr, config.lr_scale)
    if not groups:
        raise ValueError("no trainable parameters: check the 'trainable' patterns of the training config")
    cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)


def lr_factor(step: int, total: int, config: OptimConfig) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warmup, then decay."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(1, total - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if config.schedule == "cosine" else 1 - progress
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * decay


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, config))
