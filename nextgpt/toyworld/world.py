"""The toy world's meanings: attribute spaces per modality (as data), the cross-modal rule, seeded sampling.

A ``Meaning`` is one point of a modality's attribute space (``image: small red circle on the left``). The
cross-modal rule links attributes of different modalities (colour ↔ pitch, shape ↔ timbre, size ↔ rhythm,
position ↔ direction), so "make a sound for this picture" has exactly one right answer on the linked
attributes; target attributes the rule does not reach take the target modality's documented default.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

MODALITIES: tuple[str, ...] = ("image", "audio", "video")

ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "image": {
        "shape": ("circle", "square", "triangle", "cross"),
        "colour": ("red", "green", "blue", "yellow", "purple"),
        "size": ("small", "large"),
        "position": ("left", "right", "top", "bottom", "centre"),
    },
    "audio": {
        "pitch": ("low", "middle", "high"),
        "timbre": ("sine", "square", "sawtooth"),
        "rhythm": ("steady", "beeping"),
    },
    "video": {
        "shape": ("circle", "square", "triangle", "cross"),
        "colour": ("red", "green", "blue", "yellow", "purple"),
        "direction": ("left", "right", "up", "down"),
    },
}


@dataclass(frozen=True)
class Link:
    """One attribute of ``source`` that determines one attribute of ``target`` (``mapping``: value → value)."""

    source: str
    source_attribute: str
    target: str
    target_attribute: str
    mapping: tuple[tuple[str, str], ...]

    def inverse(self) -> "Link":
        return Link(self.target, self.target_attribute, self.source, self.source_attribute,
                    tuple((b, a) for a, b in self.mapping))


def _same(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple((v, v) for v in values)


COLOUR_PITCH = (("red", "low"), ("green", "middle"), ("blue", "high"))
SHAPE_TIMBRE = (("circle", "sine"), ("square", "square"), ("triangle", "sawtooth"))
_FORWARD_LINKS = (
    Link("image", "colour", "audio", "pitch", COLOUR_PITCH),
    Link("image", "shape", "audio", "timbre", SHAPE_TIMBRE),
    Link("image", "size", "audio", "rhythm", (("large", "steady"), ("small", "beeping"))),
    Link("video", "colour", "audio", "pitch", COLOUR_PITCH),
    Link("video", "shape", "audio", "timbre", SHAPE_TIMBRE),
    Link("image", "shape", "video", "shape", _same(ATTRIBUTES["image"]["shape"])),
    Link("image", "colour", "video", "colour", _same(ATTRIBUTES["image"]["colour"])),
    Link("image", "position", "video", "direction", (("left", "left"), ("right", "right"), ("top", "up"),
                                                     ("bottom", "down"))),
)
RULE: tuple[Link, ...] = _FORWARD_LINKS + tuple(link.inverse() for link in _FORWARD_LINKS)
"""The cross-modal rule, both directions."""

DEFAULTS: dict[str, dict[str, str]] = {
    "image": {"size": "large", "position": "centre"},
    "audio": {"rhythm": "steady"},
    "video": {"direction": "right"},
}
"""Values of target attributes that no link reaches (e.g. an image made from a video is large)."""


@dataclass(frozen=True)
class Meaning:
    """One point of a modality's attribute space; ``values`` follow ``ATTRIBUTES[modality]``'s order."""

    modality: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        space = attribute_space(self.modality)
        if len(self.values) != len(space):
            raise ValueError(f"a {self.modality} meaning has {len(space)} values ({list(space)}), "
                             f"got {list(self.values)}")
        for (name, allowed), value in zip(space.items(), self.values):
            if value not in allowed:
                raise ValueError(f"unknown {self.modality} {name} {value!r}; allowed: {list(allowed)}")

    @classmethod
    def of(cls, modality: str, attributes: Mapping[str, str]) -> "Meaning":
        """Build from ``{attribute: value}`` (every attribute of the modality is required)."""
        space = attribute_space(modality)
        missing = [name for name in space if name not in attributes]
        if missing:
            raise ValueError(f"a {modality} meaning needs {list(space)}; missing {missing}")
        return cls(modality, tuple(attributes[name] for name in space))

    @classmethod
    def from_key(cls, key: str) -> "Meaning":
        """Inverse of ``key``: ``"image:circle-red-small-left"``."""
        modality, _, values = key.partition(":")
        return cls(modality, tuple(values.split("-")))

    @property
    def attributes(self) -> dict[str, str]:
        return dict(zip(attribute_space(self.modality), self.values))

    @property
    def key(self) -> str:
        return f"{self.modality}:{'-'.join(self.values)}"

    def __getitem__(self, name: str) -> str:
        return self.attributes[name]


def attribute_space(modality: str) -> dict[str, tuple[str, ...]]:
    """``{attribute: values}`` of a modality.

    Raises:
        KeyError: for an unknown modality (listing the known ones).
    """
    if modality not in ATTRIBUTES:
        raise KeyError(f"unknown toy-world modality {modality!r}; available: {list(ATTRIBUTES)}")
    return ATTRIBUTES[modality]


def all_meanings(modality: str) -> list[Meaning]:
    """Every attribute combination of a modality, in a fixed order."""
    return [Meaning(modality, values) for values in itertools.product(*attribute_space(modality).values())]


def links(source: str, target: str) -> list[Link]:
    """The rule's links from ``source`` to ``target`` (empty for the same modality or unlinked pairs)."""
    return [link for link in RULE if link.source == source and link.target == target]


def linked_attributes(source: str, target: str) -> list[str]:
    """The target attributes a ``source → target`` conversion determines (what conversion accuracy judges)."""
    return [link.target_attribute for link in links(source, target)]


def convert(meaning: Meaning, target: str) -> Meaning | None:
    """Apply the cross-modal rule: the ``target`` meaning that matches ``meaning``, or None when a linked value is
    outside the rule (e.g. a yellow circle has no pitch) or the modalities are not linked."""
    found = links(meaning.modality, target)
    if not found:
        return None
    attributes = dict(DEFAULTS[target])
    for link in found:
        mapped = dict(link.mapping).get(meaning[link.source_attribute])
        if mapped is None:
            return None
        attributes[link.target_attribute] = mapped
    return Meaning.of(target, attributes)


def convertible(meanings: Sequence[Meaning], target: str) -> list[Meaning]:
    return [m for m in meanings if convert(m, target) is not None]


def conversion_pairs() -> Iterator[tuple[str, str]]:
    """Every ordered pair of distinct modalities the rule links."""
    for source, target in itertools.permutations(MODALITIES, 2):
        if links(source, target):
            yield source, target


def sample(meanings: Sequence, count: int, rng: np.random.Generator) -> list:
    """``count`` items (meanings, or pairs of them) drawn uniformly with replacement from ``meanings``.

    Raises:
        ValueError: when ``meanings`` is empty.
    """
    if not meanings:
        raise ValueError("cannot sample from an empty set of meanings (check the split and the modality)")
    return [meanings[i] for i in rng.integers(0, len(meanings), size=count)]
