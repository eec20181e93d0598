"""Which parameters train: glob patterns over ``NextGPTModel.named_parameters()``, plus (optionally) the rows of
the added tokens in the embedding tables — every other row of those tables keeps a zero gradient."""
from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class TrainableReport:
    names: list[str]
    count: int  # trainable scalars (for the embedding tables: only the added rows)
    total: int


def name_prefixes(names: Iterable[str], limit: int = 12) -> list[str]:
    """The distinct first two dotted parts of parameter names (for error messages about glob patterns)."""
    return sorted({".".join(name.split(".")[:2]) for name in names})[:limit]


def select_trainable(model: nn.Module, patterns: list[str], train_token_rows: bool = False) -> TrainableReport:
    """Freeze everything, then unfreeze the parameters matching ``patterns`` (and the added-token rows).

    Raises:
        ValueError: a pattern matches nothing (listing some parameter names), or matches the frozen encoder.
    """
    named = dict(model.named_parameters())
    for parameter in named.values():
        parameter.requires_grad_(False)
    chosen: list[str] = []
    for pattern in patterns:
        matches = [name for name in named if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            raise ValueError(f"trainable pattern {pattern!r} matches no parameter; parameter names start with "
                             f"{name_prefixes(named)} (e.g. 'input_projectors.*', 'output_projectors.*', '*lora_*')")
        frozen = [name for name in matches if name.startswith("encoder.")]
        if frozen:
            raise ValueError(f"trainable pattern {pattern!r} matches the frozen encoder ({frozen[0]}, ...); the "
                             "encoder is never trained (its features may come from the feature cache)")
        chosen.extend(m for m in matches if m not in chosen)
    for name in chosen:
        named[name].requires_grad_(True)
    count = sum(named[name].numel() for name in chosen)
    if train_token_rows:
        count += _train_token_rows(model, set(chosen))
    total = sum(p.numel() for p in named.values())
    return TrainableReport(chosen, count, total)


def _train_token_rows(model: nn.Module, already: set[str]) -> int:
    """Make the embedding tables trainable with a gradient mask that keeps every non-added row at zero."""
    ids = torch.tensor(sorted(model.added_token_ids.values()))
    tables = [model.llm.get_input_embeddings().weight]
    output = model.llm.get_output_embeddings()
    if output is not None and output.weight is not tables[0]:
        tables.append(output.weight)
    count = 0
    for weight in tables:
        if weight.requires_grad:  # a pattern already trains the whole table
            continue
        mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
        mask[ids] = 1
        weight.requires_grad_(True)
        weight.register_hook(lambda grad, mask=mask: grad * mask.to(grad.device, grad.dtype))
        weight._nextgpt_row_mask = True  # no weight decay on masked tables (see optim.param_groups)
        count += len(ids) * weight.shape[1]
    return count
