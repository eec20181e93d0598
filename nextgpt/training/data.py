"""Training data: dialogue files → validated, tokenised examples → padded batches for the trainer.

Files are JSON Lines in the ``nextgpt.dialogs.schema`` layout (one ``Dialogue.to_dict()`` per line); relative
media paths resolve against the file's folder. Every bad record of every file is reported before step 0, as
``file:line:field: problem``, all at once.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from nextgpt.dialogs.layout import TokenLayout
from nextgpt.dialogs.render import DialogueError
from nextgpt.dialogs.schema import Dialogue, MediaRef, OutputRequest
from nextgpt.dialogs.tokenize import IGNORE_INDEX, DialogueTooLong, EncodedExample, encode_dialogue

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset with bad records; ``problems`` lists every one as ``file:line:field: problem``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n  ".join(problems[:200])
        more = f"\n  ... and {len(problems) - 200} more" if len(problems) > 200 else ""
        super().__init__(f"{len(problems)} bad record(s); fix them or remove them from the data files:\n  "
                         f"{shown}{more}")


def read_dialogues(paths: Sequence[str | Path]) -> tuple[list[Dialogue], list[str]]:
    """Parse dialogue files; returns ``(dialogues, problems)`` with media paths made absolute."""
    dialogues: list[Dialogue] = []
    problems: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            problems.append(f"{path}:0:file: not found")
            continue
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                    dialogue = Dialogue.from_dict(record)
                except json.JSONDecodeError as error:
                    problems.append(f"{where}:json: {error.msg} at column {error.colno}")
                    continue
                except (KeyError, TypeError, AttributeError) as error:
                    problems.append(f"{where}:turns: not a dialogue record ({type(error).__name__}: {error})")
                    continue
                dialogue.source = where
                dialogue.id = dialogue.id or where
                for index, turn in enumerate(dialogue.turns):
                    for item_index, ref in enumerate(turn.inputs):
                        resolved = ref.path if Path(ref.path).is_absolute() else str(path.parent / ref.path)
                        ref.path = resolved
                        if not Path(resolved).is_file():
                            problems.append(f"{where}:turns[{index}].inputs[{item_index}].path: file {resolved} "
                                            "not found")
                    for item_index, request in enumerate(turn.outputs):
                        if not request.caption.strip():
                            problems.append(f"{where}:turns[{index}].outputs[{item_index}].caption: empty caption "
                                            "(the caption is the alignment target)")
                dialogues.append(dialogue)
    return dialogues, problems


def load_examples(paths: Sequence[str | Path], layout: TokenLayout, max_length: int) -> list[EncodedExample]:
    """Read, validate and tokenise every dialogue of ``paths``.

    Raises:
        DatasetError: listing every bad record of every file (unreadable lines, missing media, dialogues that
            cannot be rendered for this model, examples that cannot fit ``max_length``).
    """
    dialogues, problems = read_dialogues(paths)
    examples: list[EncodedExample] = []
    for dialogue in dialogues:
        try:
            examples.append(encode_dialogue(dialogue, layout, max_length=max_length))
        except DialogueError as error:
            problems.append(f"{dialogue.source}:{error.field}: {error.message}")
        except DialogueTooLong as error:
            problems.append(f"{dialogue.source}:turns: {error}")
    if problems:
        raise DatasetError(problems)
    if not examples:
        raise DatasetError([f"{', '.join(map(str, paths))}:0:file: no dialogues found"])
    return examples


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
    """A reproducible order: a permutation seeded by ``seed + epoch`` (or the identity without shuffling)."""

    def __init__(self, size: int, seed: int, shuffle: bool = True) -> None:
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Any:
        if not self.shuffle:
            return iter(range(self.size))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())
