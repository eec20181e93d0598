"""Encoded examples → a padded batch of tensors, with media and signal positions moved to the padded layout."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from .schema import MediaRef, OutputRequest
from .tokenize import IGNORE_INDEX, EncodedExample, Span


@dataclass
class Batch:
    """A padded batch.

    Attributes:
        input_ids / labels / attention_mask: ``[B, L]`` long tensors (labels ``IGNORE_INDEX`` on padding).
        inputs / media_spans: per row, the input media in prompt order and their (padded) token positions.
        outputs / signal_spans: per row, the output requests and their (padded) signal-token positions.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    inputs: list[list[MediaRef]]
    media_spans: list[list[Span]]
    outputs: list[list[OutputRequest]]
    signal_spans: list[list[Span]]

    def media_items(self) -> list[MediaRef]:
        """All input items in the order their media tokens appear in the flattened batch (row-major) — the order
        ``NextGPTModel.embed`` expects the media token embeddings in."""
        return [item for row in self.inputs for item in row]

    def signal_index(self, modality: str) -> tuple[torch.Tensor, torch.Tensor, list[OutputRequest]]:
        """Where to gather the signal features of one modality.

        Returns:
            ``(rows [N], positions [N, n])`` so that ``hidden[rows[:, None], positions]`` is ``[N, n, H]``, and the
            N output requests (captions / targets) in the same order.
        """
        rows, positions, requests = [], [], []
        for row, (spans, outputs) in enumerate(zip(self.signal_spans, self.outputs)):
            for span, request in zip(spans, outputs):
                if span.modality == modality:
                    rows.append(row)
                    positions.append(span.positions())
                    requests.append(request)
        if not rows:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, 0, dtype=torch.long), []
        return torch.tensor(rows, dtype=torch.long), torch.tensor(positions, dtype=torch.long), requests


def collate(examples: Sequence[EncodedExample], pad_id: int,
            padding_side: Literal["right", "left"] = "right") -> Batch:
    """Pad examples to the longest one (training: right padding; batched generation: left).

    Raises:
        ValueError: for an empty batch or an unknown ``padding_side``.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    if pad_id is None:
        raise ValueError("pad_id is None: the tokenizer has no pad token; pass tokenizer.pad_token_id after "
                         "setting one (nextgpt.llm.load_tokenizer uses EOS)")
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    length = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    media_spans, signal_spans = [], []
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        offset = length - n if padding_side == "left" else 0
        input_ids[row, offset:offset + n] = torch.tensor(example.input_ids, dtype=torch.long)
        labels[row, offset:offset + n] = torch.tensor(example.labels, dtype=torch.long)
        mask[row, offset:offset + n] = 1
        media_spans.append([Span(s.modality, s.start + offset, s.end + offset) for s in example.media_spans])
        signal_spans.append([Span(s.modality, s.start + offset, s.end + offset) for s in example.signal_spans])
    return Batch(input_ids, labels, mask, [list(e.inputs) for e in examples], media_spans,
                 [list(e.outputs) for e in examples], signal_spans)
