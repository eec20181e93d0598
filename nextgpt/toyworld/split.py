"""The held-out split: attribute combinations and caption phrasings that never appear in training.

``HELD_OUT_FRACTION`` of each modality's combinations (rounded, at least one) are held out, chosen by a fixed
seed so every dataset built from any seed shares the same split; every single attribute value still appears in
training (the evaluation measures composition, not unseen words), and no two held-out combinations are one
attribute apart, so every combination one attribute away from a held-out one is in training.

Why the second rule: a plain random draw held out audio (low, square, beeping), (low, sawtooth, beeping),
(middle, square, steady) and (middle, sawtooth, steady). In training a harmonic-rich low tone was then always
steady and a middle one always beeping, so rhythm predicted pitch; the encoder and the audio decoder learnt that
shortcut, and held-out pitch was read and generated *below* chance (captioning 0.15–0.45, generation 0.00): the
split tested a confound no model can undo from its training data, not composition. The last caption phrasing of
each modality and the last instruction phrasing of each task are held out too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .language import TEMPLATES
from .world import MODALITIES, Meaning, all_meanings, attribute_space

HELD_OUT_FRACTION = 0.15  # the most the neighbour rule leaves room for: a random draw reaches 31–38 of 200 images
SPLIT_SEED = 6  # fixed: the split is part of the world, not of one dataset


@dataclass(frozen=True)
class Split:
    """Which meanings and phrasings are for training and which only for evaluation."""

    held_out: dict[str, frozenset[str]]  # modality → meaning keys
    fraction: float = HELD_OUT_FRACTION
    seed: int = SPLIT_SEED
    held_out_phrasings: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def is_held_out(self, meaning: Meaning) -> bool:
        return meaning.key in self.held_out[meaning.modality]

    def meanings(self, modality: str, part: str) -> list[Meaning]:
        """The meanings of ``part`` (``train`` or ``eval``) of a modality, in a fixed order."""
        if part not in ("train", "eval"):
            raise ValueError(f"split part must be 'train' or 'eval', got {part!r}")
        return [m for m in all_meanings(modality) if self.is_held_out(m) == (part == "eval")]

    def phrasings(self, modality: str, part: str) -> list[int]:
        """Caption template indices of ``part`` (``train``/``eval``); eval may use every phrasing."""
        held = self.held_out_phrasings[modality]
        every = range(len(TEMPLATES[modality]))
        return [p for p in every if p not in held] if part == "train" else list(every)

    def to_dict(self) -> dict:
        return {"fraction": self.fraction, "seed": self.seed,
                "held_out": {m: sorted(keys) for m, keys in self.held_out.items()},
                "held_out_phrasings": {m: list(p) for m, p in self.held_out_phrasings.items()}}


def one_attribute_apart(a: Meaning, b: Meaning) -> bool:
    """Whether two meanings of a modality differ in exactly one attribute."""
    return sum(a[name] != b[name] for name in attribute_space(a.modality)) == 1


def _held_out_keys(modality: str, fraction: float, rng: np.random.Generator) -> frozenset[str]:
    meanings = all_meanings(modality)
    count = max(1, round(fraction * len(meanings)))
    for _ in range(100):  # redraw until training still sees every value
        chosen: list[Meaning] = []
        for i in rng.permutation(len(meanings)):  # a random order, skipping neighbours of what is held out already
            if len(chosen) < count and not any(one_attribute_apart(meanings[i], c) for c in chosen):
                chosen.append(meanings[i])
        keys = {m.key for m in chosen}
        train = [m for m in meanings if m.key not in keys]
        if len(chosen) == count and all({m[name] for m in train} == set(values)
                                        for name, values in attribute_space(modality).items()):
            return frozenset(keys)
    raise ValueError(f"cannot hold out {count} {modality} combinations, none one attribute from another, and keep "
                     f"every value in training; use a smaller fraction than {fraction}")


def make_split(fraction: float = HELD_OUT_FRACTION, seed: int = SPLIT_SEED) -> Split:
    """The split; the defaults give the project's one documented split.

    Raises:
        ValueError: for a fraction outside (0, 0.5].
    """
    if not 0 < fraction <= 0.5:
        raise ValueError(f"held-out fraction must be in (0, 0.5], got {fraction}")
    rng = np.random.default_rng(seed)
    held = {modality: _held_out_keys(modality, fraction, rng) for modality in MODALITIES}
    phrasings = {modality: (len(TEMPLATES[modality]) - 1,) for modality in MODALITIES}
    return Split(held, fraction, seed, phrasings)
