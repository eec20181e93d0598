"""Accuracy helpers of the toy-world evaluation, as pure functions over lists and arrays.

``caption_accuracy`` reads answers with the caption parser; ``attribute_accuracy`` compares classifier
predictions with the truth; ``routing_accuracy`` checks that a request for X produced X and only X;
``retrieval_at_1`` ranks target vectors by cosine similarity.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from nextgpt.toyworld.language import parse_caption

TEXT = "text"  # what a request that wants no media asks for


def _same_length(name: str, *lists: Sequence) -> None:
    lengths = [len(x) for x in lists]
    if len(set(lengths)) > 1:
        raise ValueError(f"{name}: the lists must have one entry per item, got lengths {lengths}")


def attributes_right(predicted: Mapping[str, str], expected: Mapping[str, str]) -> bool:
    """True when every expected attribute is predicted with its value (extra predicted attributes are ignored)."""
    return all(predicted.get(name) == value for name, value in expected.items())


def _mean(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if len(flags) else float("nan")


def caption_accuracy(texts: Sequence[str], modalities: Sequence[str],
                     expected: Sequence[Mapping[str, str]]) -> float:
    """Fraction of ``texts`` whose parsed ``modality`` attributes include every expected one (NaN for none)."""
    _same_length("caption_accuracy", texts, modalities, expected)
    return _mean([attributes_right(parse_caption(t, m), e) for t, m, e in zip(texts, modalities, expected)])


def attribute_accuracy(predicted: Sequence[Mapping[str, str] | None], expected: Sequence[Mapping[str, str]]
                       ) -> float:
    """Fraction of items whose predicted attributes (None: nothing was produced) include every expected one."""
    _same_length("attribute_accuracy", predicted, expected)
    return _mean([p is not None and attributes_right(p, e) for p, e in zip(predicted, expected)])


def routed_right(requested: str, produced: Sequence[str]) -> bool:
    """Asked for ``requested`` (a modality, or ``text`` for none) and produced that and nothing else."""
    return list(produced) == ([] if requested == TEXT else [requested])


def routing_accuracy(requested: Sequence[str], produced: Sequence[Sequence[str]]) -> float:
    """Fraction of requests answered with exactly the requested output (see ``routed_right``)."""
    _same_length("routing_accuracy", requested, produced)
    return _mean([routed_right(r, p) for r, p in zip(requested, produced)])


def retrieval_at_1(features: np.ndarray, targets: np.ndarray, labels: Sequence[str] | None = None) -> float:
    """Fraction of rows of ``features`` ``[N, D]`` whose most cosine-similar row of ``targets`` ``[N, D]`` is their
    own (or, with ``labels``, one with the same label — identical captions are equally right).

    Raises:
        ValueError: for shapes that differ or are not 2-D.
    """
    features, targets = np.asarray(features, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if features.ndim != 2 or features.shape != targets.shape:
        raise ValueError(f"retrieval needs features and targets of the same [N, D] shape, got {features.shape} "
                         f"and {targets.shape}")
    if features.shape[0] == 0:
        return float("nan")
    unit = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)
    unit_targets = targets / (np.linalg.norm(targets, axis=1, keepdims=True) + 1e-12)
    best = (unit @ unit_targets.T).argmax(axis=1)
    if labels is None:
        return float(np.mean(best == np.arange(len(best))))
    _same_length("retrieval_at_1", features, labels)
    return float(np.mean([labels[b] == labels[i] for i, b in enumerate(best)]))
