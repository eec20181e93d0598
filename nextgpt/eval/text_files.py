"""Read references and outputs for the text metrics from files of real benchmarks.

References (one item per line/element, several references per item):
- ``.txt``: one item per line, references separated by `` ||| ``;
- ``.jsonl``: per line a list of strings, a string, or an object with ``references``/``captions`` (list) or
  ``caption``/``reference`` (string), optionally with an ``id`` (or ``image_id``);
- ``.json``: a list of such elements, or COCO annotations ``{"annotations": [{"image_id", "caption"}, ...]}``
  (captions grouped by image).
Outputs: ``.txt`` one per line, or ``.jsonl``/``.json`` strings or objects with ``caption``/``output``/``text``
(+ ``id``/``image_id``), e.g. a COCO results file. When both sides carry ids, items are matched by id.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_ID_KEYS = ("id", "image_id")
_REFERENCE_LISTS = ("references", "captions", "refs")
_TEXT_KEYS = ("caption", "reference", "output", "text", "prediction")


def _elements(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        return [line for line in text.splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from error
        return rows
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict) and "annotations" in data:
            return data["annotations"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list or COCO annotations, got {type(data).__name__}")
        return data
    raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .txt, .jsonl or .json")


def _id(element: Any) -> str | None:
    if isinstance(element, dict):
        for key in _ID_KEYS:
            if key in element:
                return str(element[key])
    return None


def _texts(element: Any, where: str, allow_list: bool) -> list[str]:
    if isinstance(element, str):
        return [part.strip() for part in element.split(" ||| ")] if allow_list else [element]
    if isinstance(element, list) and allow_list and all(isinstance(x, str) for x in element):
        return element
    if isinstance(element, dict):
        for key in (_REFERENCE_LISTS if allow_list else ()) + _TEXT_KEYS:
            value = element.get(key)
            if isinstance(value, str):
                return [value]
            if isinstance(value, list) and allow_list and all(isinstance(x, str) for x in value):
                return value
    keys = (_REFERENCE_LISTS if allow_list else ()) + _TEXT_KEYS
    raise ValueError(f"{where}: cannot find the text; expected a string{', a list of strings' if allow_list else ''} "
                     f"or an object with one of {list(keys)}")


def _read(path: str | Path, allow_list: bool) -> tuple[list[str | None], list[list[str]]]:
    path = Path(path)
    ids, texts = [], []
    for index, element in enumerate(_elements(path)):
        ids.append(_id(element))
        texts.append(_texts(element, f"{path}: item {index}", allow_list))
    return ids, texts


def read_pairs(references: str | Path, outputs: str | Path) -> tuple[list[str], list[list[str]]]:
    """``(candidates, references)`` aligned item by item (by id when both files have ids, else by order).

    Raises:
        ValueError: for unreadable files, counts that differ, or ids missing on one side.
    """
    ref_ids, refs = _read(references, allow_list=True)
    out_ids, outs = _read(outputs, allow_list=False)
    candidates = [o[0] for o in outs]
    if all(i is not None for i in ref_ids) and all(i is not None for i in out_ids):
        grouped: dict[str, list[str]] = {}
        for i, texts in zip(ref_ids, refs):
            grouped.setdefault(i, []).extend(texts)  # COCO: one annotation per caption
        missing = [i for i in out_ids if i not in grouped]
        if missing:
            raise ValueError(f"outputs {missing[:5]} have no references in {references}")
        return candidates, [grouped[i] for i in out_ids]
    if len(candidates) != len(refs):
        raise ValueError(f"{outputs} has {len(candidates)} output(s) but {references} has {len(refs)} item(s); "
                         "give one line per item in both (or ids on both sides)")
    return candidates, refs
