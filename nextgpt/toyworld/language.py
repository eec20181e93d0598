"""Captions from a small grammar (several phrasings per meaning) and the parser that reads them back.

Each attribute value has a few words (``large``/``big``); each modality has a few caption templates. The
parser spots value words (whole words, longest first) and returns every attribute it finds exactly one value
for, so it reads every phrasing the grammar produces — and a model's free-form answer too.
"""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from .world import Meaning, attribute_space

WORDS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "image": {
        "shape": {"circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle",),
                  "cross": ("cross", "plus sign")},
        "colour": {"red": ("red",), "green": ("green",), "blue": ("blue",), "yellow": ("yellow",),
                   "purple": ("purple", "violet")},
        "size": {"small": ("small", "little", "tiny"), "large": ("large", "big")},
        "position": {"left": ("left",), "right": ("right",), "top": ("top",), "bottom": ("bottom",),
                     "centre": ("centre", "center")},
    },
    "audio": {
        "pitch": {"low": ("low", "deep"), "middle": ("middle", "medium"), "high": ("high",)},
        "timbre": {"sine": ("sine",), "square": ("square",), "sawtooth": ("sawtooth", "saw")},
        "rhythm": {"steady": ("steady", "continuous"), "beeping": ("beeping", "pulsing")},
    },
    "video": {
        "shape": {"circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle",),
                  "cross": ("cross", "plus sign")},
        "colour": {"red": ("red",), "green": ("green",), "blue": ("blue",), "yellow": ("yellow",),
                   "purple": ("purple", "violet")},
        "direction": {"left": ("left", "leftwards"), "right": ("right", "rightwards"), "up": ("up", "upwards"),
                      "down": ("down", "downwards")},
    },
}

PLACE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
         "centre": "in the {centre}"}
TEMPLATES: dict[str, tuple[str, ...]] = {
    "image": (
        "a {size} {colour} {shape} {place}",
        "a {colour} {shape}, {size}, {place}",
        "{place}, a {size} {colour} {shape}",
        "there is a {size} {colour} {shape} {place} of the picture",
        "a picture of a {size} {shape} in {colour}, {place}",
    ),
    "audio": (
        "a {pitch} {timbre} tone, {rhythm}",
        "a {rhythm} {pitch} {timbre} wave",
        "a {timbre} sound at a {pitch} pitch that is {rhythm}",
        "the sound of a {pitch}-pitched {timbre} wave, {rhythm}",
        "{rhythm} and {pitch}: a {timbre} tone",
    ),
    "video": (
        "a {colour} {shape} moving {direction}",
        "a {colour} {shape} that moves {direction}",
        "a video of a {shape} in {colour} going {direction}",
        "the {colour} {shape} travels {direction}",
        "{direction} goes a {colour} {shape}",
    ),
}
"""Caption phrasings per modality; split.py holds some of them out of training."""


def caption(meaning: Meaning, phrasing: int = 0, rng: np.random.Generator | None = None) -> str:
    """The caption of ``meaning`` in template ``phrasing``; with ``rng`` each value's word is drawn at random
    (else its first word).

    Raises:
        IndexError: for a phrasing the modality does not have.
    """
    templates = TEMPLATES[meaning.modality]
    if not 0 <= phrasing < len(templates):
        raise IndexError(f"{meaning.modality} captions have phrasings 0..{len(templates) - 1}, got {phrasing}")
    words = {}
    for name, value in meaning.attributes.items():
        options = WORDS[meaning.modality][name][value]
        words[name] = options[int(rng.integers(len(options)))] if rng is not None else options[0]
    if "position" in words:
        centre = words["position"] if meaning["position"] == "centre" else ""
        words["place"] = PLACE[meaning["position"]].format(centre=centre)
    return templates[phrasing].format(**words)


@lru_cache(maxsize=None)
def _patterns(modality: str) -> list[tuple[re.Pattern, str, str]]:
    found = []
    for name, values in WORDS[modality].items():
        for value, words in values.items():
            for word in words:
                found.append((word, name, value))
    found.sort(key=lambda item: -len(item[0]))  # "plus sign" before "sign"-like shorter words
    return [(re.compile(r"\b" + re.escape(word) + r"\b"), name, value) for word, name, value in found]


def parse_caption(text: str, modality: str) -> dict[str, str]:
    """The attributes of ``modality`` that ``text`` names unambiguously: ``{attribute: value}``.

    An attribute named with two different values (``a red or blue circle``) is left out, so a hedging answer
    never counts as right.
    """
    attribute_space(modality)  # KeyError for an unknown modality
    remaining = text.lower()
    seen: dict[str, set[str]] = {}
    for pattern, name, value in _patterns(modality):
        if pattern.search(remaining):
            seen.setdefault(name, set()).add(value)
            remaining = pattern.sub(" ", remaining)
    return {name: next(iter(values)) for name, values in seen.items() if len(values) == 1}


def parse_meaning(text: str, modality: str) -> Meaning | None:
    """The full meaning ``text`` describes, or None when any attribute is missing or ambiguous."""
    found = parse_caption(text, modality)
    if set(found) != set(attribute_space(modality)):
        return None
    return Meaning.of(modality, found)
