"""Load dataset files (JSON arrays or JSONL, any supported format) into ``Dialogue``s.

The format of each file is detected from the keys of its first record (or given explicitly); relative media
paths are resolved against ``root`` (default: the folder of the data file); every dialogue carries
``source="file:line"``. Problems are collected for the whole input, never raised one at a time:
``load_dialogues`` raises one ``DatasetError`` listing all of them, ``iter_loaded`` yields them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .formats import CAPTION_PROMPT, READERS, Loaded, ReadContext, detect_format
from .records import Problem, Record, read_records
from .schema import Dialogue

logger = logging.getLogger(__name__)

DEFAULT_MODALITIES: tuple[str, ...] = ("image", "video", "audio")
TASKS = ("comprehension", "generation")
FORMATS = tuple(READERS)


class DatasetError(ValueError):
    """Raised with every problem of a dataset (``problems``), one ``file:line:field: problem`` per line."""

    def __init__(self, problems: list[Problem], limit: int = 50) -> None:
        lines = [str(p) for p in problems[:limit]]
        if len(problems) > limit:
            lines.append(f"... and {len(problems) - limit} more (run `nextgpt data validate` for the full list)")
        super().__init__(f"{len(problems)} problem(s) in the dataset:\n" + "\n".join(lines))
        self.problems = problems


def iter_loaded(
    paths: Iterable[str | Path],
    root: str | Path | None = None,
    format: str | None = None,
    task: str = "comprehension",
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    caption_prompt: str = CAPTION_PROMPT,
) -> Iterator[Loaded | Problem]:
    """Yield a ``Loaded`` (dialogue + field map) per dialogue read, and a ``Problem`` per problem, file by file.

    Args:
        paths: ``.json`` (array) or ``.jsonl`` files.
        root: folder that relative media paths are resolved against (None: each data file's folder).
        format: one of ``FORMATS``; None detects it per file from the first record's keys.
        task: for X-caption pairs: ``comprehension`` (stage 1) or ``generation`` (stage 2).
        modalities: the modality names fields are looked up with (``input_{m}``, ``{m}_name``, ...).
        caption_prompt: the user instruction of comprehension dialogues built from pairs.

    Raises:
        ValueError: for an unknown ``format`` or ``task`` (before reading anything).
    """
    if format is not None and format not in READERS:
        raise ValueError(f"unknown data format {format!r}; supported: {list(READERS)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use 'comprehension' (stage 1) or 'generation' (stage 2)")
    modalities = tuple(modalities)
    for path in paths:
        detected = format
        base = Path(root) if root is not None else Path(path).parent
        for record in read_records(path):
            if isinstance(record, Problem):
                yield record
                continue
            if not isinstance(record.data, dict):
                yield Problem(record.source, "record", f"expected a JSON object, got {type(record.data).__name__}")
                continue
            if detected is None:
                detected = detect_format(record.data, modalities)
                if detected is None:
                    yield Problem(record.source, "record", f"unknown format (keys {sorted(record.data)[:8]}); "
                                                           f"pass --format, one of {list(READERS)}")
                    break
                logger.info("%s: detected format %r", path, detected)
            elif format is None and detect_format(record.data, modalities) not in (None, detected):
                yield Problem(record.source, "record", f"looks like {detect_format(record.data, modalities)!r} "
                                                       f"data but the file is read as {detected!r} (detected from "
                                                       "its first record); split the file or pass --format")
                continue
            yield from _read(record, detected, base, task, modalities, caption_prompt)


def _read(record: Record, fmt: str, root: Path, task: str, modalities: tuple[str, ...],
          caption_prompt: str) -> Iterator[Loaded | Problem]:
    ctx = ReadContext(record.source, root, modalities, task, caption_prompt)
    loaded = READERS[fmt](record.data, ctx)
    yield from ctx.problems
    if not ctx.problems:
        yield from loaded


def load_dialogues(
    paths: Iterable[str | Path],
    root: str | Path | None = None,
    format: str | None = None,
    task: str = "comprehension",
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    caption_prompt: str = CAPTION_PROMPT,
) -> list[Dialogue]:
    """Read every file into dialogues (arguments as in ``iter_loaded``).

    Raises:
        DatasetError: listing every problem of every file, when there is any (the dialogues are not returned
            half-read). Structural problems only; ``nextgpt.dialogs.validate.validate`` also checks media files,
            captions, placeholders and roles.
    """
    dialogues, problems = [], []
    for item in iter_loaded(paths, root, format, task, modalities, caption_prompt):
        if isinstance(item, Problem):
            problems.append(item)
        else:
            dialogues.append(item.dialogue)
    if problems:
        raise DatasetError(problems)
    return dialogues
