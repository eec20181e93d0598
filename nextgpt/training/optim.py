"""Optimizer (Adam/AdamW with the NExT-GPT defaults) and the warmup-then-decay learning-rate schedule."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimConfig


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters; embedding tables trained by row mask get no weight decay (so frozen rows stay
    exactly unchanged)."""
    decayed, plain = [], []
    for parameter in module.parameters():
        if parameter.requires_grad:
            (plain if getattr(parameter, "_nextgpt_row_mask", False) else decayed).append(parameter)
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0})
    return groups


def build_optimizer(module: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(module, config.weight_decay)
    if not any(group["params"] for group in groups):
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
