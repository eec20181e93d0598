"""Resumable training checkpoints: Accelerate state (model, optimizer, scheduler, RNG) plus our marker file.

A checkpoint is written into ``checkpoints/.step-N.tmp`` and renamed to ``checkpoints/step-N`` only when
complete, so a crash mid-save leaves the previous checkpoints intact. The marker ``nextgpt-checkpoint.json``
records the data position; its presence is what allows a folder to be resumed — Accelerate's state holds
pickles (optimizer, RNG), which are only read from folders this project wrote (reliability item 29).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MARKER = "nextgpt-checkpoint.json"
FORMAT = "nextgpt-train-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def save_checkpoint(accelerator: Any, output_dir: str | Path, step: int, position: dict[str, Any],
                    keep: int) -> Path:
    """Write the Accelerate state and the marker for ``step`` atomically; every process must call this.

    Returns:
        The final checkpoint folder.
    """
    root = checkpoint_root(output_dir)
    final = root / f"step-{step:08d}"
    temp = root / f".step-{step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_marker(temp, {"format": FORMAT, "version": VERSION, "step": step,
                            "num_processes": accelerator.num_processes, **position})
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
        _prune(root, keep)
        logger.info("checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def write_marker(folder: Path, data: dict[str, Any]) -> None:
    """The marker is written last: a folder without it is incomplete."""
    path = folder / MARKER
    temp = folder / f".{MARKER}.tmp"
    temp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(temp, path)


def read_marker(folder: str | Path) -> dict[str, Any]:
    """The marker of a checkpoint folder.

    Raises:
        ValueError: the folder was not written by ``nextgpt train`` (no or foreign marker) — it is refused
            because resuming unpickles optimizer and RNG state.
    """
    path = Path(folder) / MARKER
    if not path.is_file():
        raise ValueError(f"{folder} is not a nextgpt training checkpoint (no {MARKER}); resuming reads pickled "
                         "optimizer/RNG state, so only folders written by 'nextgpt train' are accepted")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"{path} is not a {FORMAT} v{VERSION} marker: {data.get('format')!r} "
                         f"v{data.get('version')!r}")
    return data


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step (incomplete temp folders are ignored)."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in root.iterdir()
                   if (m := _NAME.match(p.name)) and (p / MARKER).is_file())
    return found[-1][1] if found else None


def _prune(root: Path, keep: int) -> None:
    found = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)))
    for _, path in found[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
