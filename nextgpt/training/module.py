"""``TrainingModule``: one ``forward`` from a batch's tensors to its losses, so that Accelerate (DDP, FSDP,
DeepSpeed) wraps a single module whose forward touches every trainable parameter it uses.

The frozen features (encoder embeddings, caption targets) are given to it; it projects media, runs the LLM
with the LM loss, reads hidden states and input embeddings at the signal positions, applies the output
projectors, and measures the distance to the targets — one loop over modalities.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nextgpt.dialogs.tokenize import IGNORE_INDEX

from .losses import signal_distance

TOKEN_LOSSES = ("route", "after_output", "answer_start")
"""The single-token losses ``forward`` returns; each is weighted into the total by ``loss.<name>_weight``."""


class TrainingModule(nn.Module):
    """Wraps a ``NextGPTModel`` for training.

    Args:
        model: the ``NextGPTModel``.
        signal_scale: per-modality scale of the distance loss (default 1.0).
    """

    def __init__(self, model: nn.Module, signal_scale: dict[str, float] | None = None) -> None:
        super().__init__()
        self.model = model
        self.signal_scale = dict(signal_scale or {})

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        media_embeddings: torch.Tensor | None,
        media_modalities: list[str],
        signal_rows: torch.Tensor,
        signal_starts: torch.Tensor,
        signal_modalities: list[str],
        targets: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Compute the losses of one micro-batch.

        Args:
            input_ids / attention_mask / labels: ``[B, L]``.
            media_embeddings: ``[M, E]`` encoder embeddings of the input items in media-token order.
            media_modalities: the modality of each of the ``M`` items.
            signal_rows / signal_starts: ``[S]`` row and first position of each signal sequence.
            signal_modalities: the modality of each of the ``S`` sequences.
            targets: modality → ``[S_m, Q, D]`` caption targets in the order of that modality's sequences.

        Returns:
            ``{"lm": scalar, "route": scalar, "after_output": scalar, "answer_start": scalar,
            "signal/<modality>": scalar, ...}``
            (unweighted) and ``"conditions"``, a dict modality → ``[S_m, Q, D]`` for further losses. ``route`` is
            the next-token loss of the first signal token of each trained output (which modality the model chose);
            ``after_output`` that of the token right after its last signal token (what the answer does once the
            output is placed: end, or go on in words); ``answer_start`` that of the first token of each trained
            answer (which kind of answer it starts); each present when the batch has one.
        """
        model = self.model
        media_tokens = self._project(media_embeddings, media_modalities)
        out = model(input_ids, attention_mask=attention_mask, media_tokens=media_tokens, labels=labels)
        losses: dict[str, Any] = {"lm": out.loss}
        route = _token_loss(out.logits, input_ids, labels, signal_rows, signal_starts)
        if route is not None:
            losses["route"] = route
        counts = torch.tensor([len(model.signal_token_ids[m]) for m in signal_modalities], dtype=torch.long,
                              device=signal_starts.device)
        after = _token_loss(out.logits, input_ids, labels, signal_rows, signal_starts + counts)
        if after is not None:
            losses["after_output"] = after
        answer_rows, answer_starts = answer_start_positions(labels)
        answer = _token_loss(out.logits, input_ids, labels, answer_rows, answer_starts)
        if answer is not None:
            losses["answer_start"] = answer
        conditions: dict[str, torch.Tensor] = {}
        if signal_modalities:
            hidden = out.hidden_states[-1]
            embed = model.llm.get_input_embeddings()
            for modality in sorted(set(signal_modalities)):
                pick = torch.tensor([i for i, m in enumerate(signal_modalities) if m == modality],
                                    device=signal_rows.device)
                count = len(model.signal_token_ids[modality])
                rows = signal_rows[pick].unsqueeze(1)  # [S_m, 1]
                positions = signal_starts[pick].unsqueeze(1) + torch.arange(count, device=rows.device)  # [S_m, N]
                conditions[modality] = model.signal_conditions(modality, hidden[rows, positions],
                                                               embed(input_ids[rows, positions]))
                losses[f"signal/{modality}"] = signal_distance(conditions[modality], targets[modality])
        losses["conditions"] = conditions
        return losses

    def _project(self, embeddings: torch.Tensor | None, modalities: list[str]) -> torch.Tensor | None:
        """Project each modality's items, then put their tokens back in media order: ``[M × T, H]``."""
        if embeddings is None or not modalities:
            return None
        pieces: list[torch.Tensor | None] = [None] * len(modalities)
        for modality in sorted(set(modalities)):
            index = [i for i, m in enumerate(modalities) if m == modality]
            projected = self.model.project_media(modality, embeddings[index])  # [n, T, H]
            for i, tokens in zip(index, projected):
                pieces[i] = tokens
        return torch.cat(pieces, dim=0)


def answer_start_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and positions of the first token of every trained span of ``labels`` (``[B, L]``): where a label is set
    and the one before it is not — the first token of each trained answer."""
    trained = labels != IGNORE_INDEX
    before = torch.nn.functional.pad(trained[:, :-1], (1, 0), value=False)
    return (trained & ~before).nonzero(as_tuple=True)


def _token_loss(logits: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor,
                positions: torch.Tensor) -> torch.Tensor | None:
    """Cross-entropy of the trained tokens at ``(rows, positions)``, each predicted from the position before it
    (positions at the start or past the end of a row, or with an untrained label, are left out); ``None`` when no
    position is left."""
    if rows.numel() == 0:
        return None
    inside = (positions > 0) & (positions < labels.shape[1])
    rows, positions = rows[inside], positions[inside]
    keep = labels[rows, positions] != -100
    if not bool(keep.any()):
        return None
    rows, positions = rows[keep], positions[keep]
    return torch.nn.functional.cross_entropy(logits[rows, positions - 1].float(), input_ids[rows, positions])
