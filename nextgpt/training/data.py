"""Training data: dialogue files → validated, tokenised examples → padded batches for the trainer.

Files are read by ``nextgpt.dialogs.loaders`` (our dialogue schema or the NExT-GPT formats); relative media paths
resolve against ``root`` or each file's folder. Every bad record of every file is reported before step 0, as
``file:line:field: problem``, all at once (``nextgpt.dialogs.validate`` with the model's token layout).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from nextgpt.dialogs.layout import TokenLayout
from nextgpt.dialogs.loaders import DatasetError, iter_loaded
from nextgpt.dialogs.records import Problem
from nextgpt.dialogs.schema import Dialogue, MediaRef, OutputRequest
from nextgpt.dialogs.tokenize import IGNORE_INDEX, EncodedExample, encode_dialogue
from nextgpt.dialogs.validate import check_loaded

__all__ = ["Batch", "Collator", "DatasetError", "DialogueDataset", "EpochSampler", "load_examples",
           "read_dialogues"]

logger = logging.getLogger(__name__)


def load_examples(paths: Sequence[str | Path], layout: TokenLayout, max_length: int, *, root: str | None = None,
                  format: str | None = None, task: str = "comprehension") -> list[EncodedExample]:
    """Read (any format of ``nextgpt.dialogs.loaders``), validate and tokenise every dialogue of ``paths``.

    Args:
        layout: the model's token layout (its modalities decide what may be an input or an output).
        root / format / task: as in ``nextgpt.dialogs.loaders.iter_loaded``.

    Raises:
        DatasetError: listing every bad record of every file (unreadable records, missing media files, empty
            captions, dialogues that cannot be rendered for this model or cannot fit ``max_length``).
    """
    modalities = tuple(dict.fromkeys([*layout.input_modalities, *layout.output_modalities]))
    problems: list[Problem] = []
    dialogues = []
    for item in iter_loaded(paths, root, format, task, modalities):
        if isinstance(item, Problem):
            problems.append(item)
            continue
        found = check_loaded(item, modalities, layout.output_modalities, True, layout, max_length)
        problems.extend(found)
        if not found:
            dialogues.append(item.dialogue)
    if problems:
        raise DatasetError(problems)
    if not dialogues:
        raise DatasetError([Problem(", ".join(map(str, paths)), "file", "no dialogues found")])
    return [encode_dialogue(d, layout, max_length=max_length) for d in dialogues]


def read_dialogues(paths: Sequence[str | Path], modalities: Sequence[str], *, root: str | None = None,
                   format: str | None = None, task: str = "comprehension") -> list[Dialogue]:
    """Dialogues with media paths resolved (for the feature cache), checked like ``load_examples``.

    Raises:
        DatasetError: listing every problem.
    """
    problems: list[Problem] = []
    dialogues = []
    for item in iter_loaded(paths, root, format, task, tuple(modalities)):
        if isinstance(item, Problem):
            problems.append(item)
            continue
        found = check_loaded(item, tuple(modalities))
        problems.extend(found)
        if not found:
            dialogues.append(item.dialogue)
    if problems:
        raise DatasetError(problems)
    return dialogues


class DialogueDataset(Dataset):
    """Tokenised examples (already validated)."""

    def __init__(self, examples: list[EncodedExample]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> EncodedExample:
        return self.examples[index]


@dataclass
class Batch:
    """Padded token tensors plus the frozen-feature requests, in the order the model consumes them.

    Attributes:
        input_ids / attention_mask / labels: ``[B, L]`` (right padding; labels ``IGNORE_INDEX`` on padding).
        inputs: input media of all rows, row by row in prompt order (the order of the media tokens).
        outputs: output requests of all rows, row by row in signal order.
        signal_rows / signal_starts: row and first position of each output's signal sequence.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    inputs: list[MediaRef] = field(default_factory=list)
    outputs: list[OutputRequest] = field(default_factory=list)
    signal_rows: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    signal_starts: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))


class Collator:
    """Pads a list of ``EncodedExample`` to a ``Batch``."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[EncodedExample]) -> Batch:
        length = max(len(e) for e in examples)
        ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(examples), length), dtype=torch.long)
        inputs, outputs, rows, starts = [], [], [], []
        for row, example in enumerate(examples):
            n = len(example)
            ids[row, :n] = torch.tensor(example.input_ids)
            labels[row, :n] = torch.tensor(example.labels)
            mask[row, :n] = 1
            inputs.extend(example.inputs)
            outputs.extend(example.outputs)
            rows.extend([row] * len(example.signal_spans))
            starts.extend(span.start for span in example.signal_spans)
        return Batch(ids, mask, labels, inputs, outputs, torch.tensor(rows, dtype=torch.long),
                     torch.tensor(starts, dtype=torch.long))


class EpochSampler(Sampler[int]):
    """A reproducible order: a permutation seeded by ``seed + epoch`` (or the identity without shuffling).

    With ``lengths`` (and ``batch_size``), examples of similar length are batched together: the permutation is cut
    into windows of ``GROUP_WINDOW`` batches, each window is sorted by length and cut into batches, and the batches
    are shuffled — still a random order each epoch, with much less padding when lengths vary a lot."""

    GROUP_WINDOW = 50

    def __init__(self, size: int, seed: int, shuffle: bool = True, lengths: list[int] | None = None,
                 batch_size: int = 1) -> None:
        if lengths is not None and len(lengths) != size:
            raise ValueError(f"EpochSampler: {len(lengths)} lengths for {size} examples")
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0
        self.lengths, self.batch_size = lengths, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Any:
        if not self.shuffle:
            return iter(range(self.size))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.lengths is None or self.batch_size <= 1:
            return iter(order)
        window = self.batch_size * self.GROUP_WINDOW
        batches = []
        for start in range(0, self.size, window):
            chunk = sorted(order[start:start + window], key=lambda i: self.lengths[i])
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        # full batches in random order; a short one (the end of a window) goes last, as without grouping
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        return iter([i for batch in shuffled + short for i in batch])
