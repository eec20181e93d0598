"""Constrained decoding of JSON string values: ``"path": "…"`` may only spell one of the given strings.

An agent's planner names files by copying them into a call, and a small or distracted model misspells them
(``inputs/qmt_7.png`` for ``inputs/qmvt_7.png``). When ``GenerationOptions.string_choices`` maps a JSON key to the
strings it may take, every token from that key's closing quote to its value's closing quote is held to the text of
one of them; everything else is decoded as usual. The check works on decoded text, not on token ids, so any
tokenizer and any split of a name into tokens is accepted.
"""
from __future__ import annotations

import json
import re
import weakref
from typing import Any

import torch

_PIECES: "weakref.WeakKeyDictionary[Any, list[str]]" = weakref.WeakKeyDictionary()
_LOOKBACK = 512  # characters of the answer searched for an open key: longer than any key and value we constrain


def token_pieces(tokenizer: Any) -> list[str]:
    """The text each token id of ``tokenizer`` adds after ordinary text (cached per tokenizer): decoding a token
    after an anchor keeps the leading space a SentencePiece token carries, which decoding it alone drops."""
    cached = _PIECES.get(tokenizer)
    if cached is not None:
        return cached
    anchor = tokenizer("a", add_special_tokens=False)["input_ids"][:1]
    base = tokenizer.decode(anchor, skip_special_tokens=False)
    pieces = []
    for token in range(len(tokenizer)):
        text = tokenizer.decode(anchor + [token], skip_special_tokens=False)
        pieces.append(text[len(base):] if text.startswith(base) else text)
    try:
        _PIECES[tokenizer] = pieces
    except TypeError:  # a tokenizer that cannot be weakly referenced: not cached
        pass
    return pieces


class StringChoices:
    """Which tokens may come next so that each constrained JSON string value is one of its choices.

    Args:
        choices: JSON key → the strings its value may be (plain text; JSON escaping is applied here).
    """

    def __init__(self, choices: dict[str, tuple[str, ...]]) -> None:
        self.encoded = {key: tuple(json.dumps(value, ensure_ascii=False)[1:-1] for value in values)
                        for key, values in choices.items() if values}
        keys = "|".join(re.escape(json.dumps(key, ensure_ascii=False)) for key in self.encoded)
        # the text ends after a constrained key and before its value is closed: what follows the key is "rest"
        self._open = re.compile(rf"(?P<key>{keys})(?P<rest>\s*(?::\s*(?:\"(?:[^\"\\]|\\.)*)?)?)$") if keys else None

    def allowed(self, text: str, pieces: list[str], size: int) -> torch.Tensor | None:
        """A boolean mask over ``size`` token ids of those that keep the answer ``text`` inside the constraint
        (``pieces``: each id's text; ids past it are not allowed), or None when no constrained value is open."""
        if self._open is None:
            return None
        tail = text[-_LOOKBACK:]
        match = self._open.search(tail)
        if match is None:
            return None
        rest, choices = match.group("rest"), self.encoded[json.loads(match.group("key"))]
        mask = torch.zeros(size, dtype=torch.bool)
        count = min(size, len(pieces))
        mask[:count] = torch.tensor([bool(piece) and _fits(rest + piece, choices) for piece in pieces[:count]],
                                     dtype=torch.bool)  # an empty piece would let a value stall
        return mask


def _fits(after_key: str, choices: tuple[str, ...]) -> bool:
    """Whether ``after_key`` (the text after a constrained key's closing quote) can still become ``: "<choice>"``,
    or already closed a choice. A key followed by something other than a colon was not a key (allowed); a value
    that is not a string is not allowed."""
    text = after_key.lstrip()
    if not text:
        return True
    if not text.startswith(":"):
        return True  # "path" was a value or a word here, not a key
    text = text[1:].lstrip()
    if not text:
        return True
    if not text.startswith('"'):
        return False
    value = text[1:]
    return any(choice.startswith(value) or value.startswith(choice + '"') for choice in choices)
