"""Constrained decoding of file names: a JSON string value (``"path": "…"``, :class:`StringChoices`) and a name the
answer's text writes (``inputs/…``, :class:`NameChoices`) may only spell one of the given strings.

An agent's planner names files by copying them into a call, and a small or distracted model misspells them
(``inputs/qmt_7.png`` for ``inputs/qmvt_7.png``). When ``GenerationOptions.string_choices`` maps a JSON key to the
strings it may take, every token from that key's closing quote to its value's closing quote is held to the text of
one of them; ``GenerationOptions.name_choices`` does the same for a name the text starts with one of their folders.
Everything else is decoded as usual. The check works on decoded text, not on token ids, so any
tokenizer and any split of a name into tokens is accepted.
"""
from __future__ import annotations

import json
import re
import weakref
from typing import Any, Callable

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


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/")  # a name goes on
_INSIDE_A_WORD = _NAME_CHARS | {"."}  # a folder written right after one of these is not the start of a name


class NameChoices:
    """Which tokens may come next so that a file name the answer's *text* starts naming is one of ``names``.

    A name is recognised by its folder: once the answer writes ``inputs/`` (the folder of one of the names, up to its
    last ``/``) at the start of a word — after a space, a quote, a bracket or the start of the answer — the rest is
    held to a name in that folder, which must then end (a space, a full stop, a quote: anything but a letter, a
    digit, ``_``, ``-`` or ``/``). A folder no name is in, a name without a folder, or a word that only contains a
    folder (``myinputs/``) is left alone.

    Args:
        names: the file names the answer may mention, e.g. ``("inputs/cat.png", "outputs/image-1.png")``.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = tuple(sorted({name for name in names if "/" in name.rstrip("/")}))
        self.folders = tuple(sorted({name[:name.rindex("/") + 1] for name in self.names}, key=len, reverse=True))

    def allowed(self, text: str, pieces: list[str], size: int) -> torch.Tensor | None:
        """A boolean mask over ``size`` token ids of those that keep every name ``text`` goes on to write one of
        ``names``, or None when no piece could start or continue one."""
        if not self.names:
            return None
        tail = text[-_LOOKBACK:]
        count = min(size, len(pieces))
        opened = self._open_name(tail)
        if opened is not None:  # inside a name: every piece must keep it on (or end) one of the names
            fits = self._continues(opened)
            ok = [bool(piece) and fits(piece) and ("/" not in piece or self._new_names_fit(tail, piece))
                  for piece in pieces[:count]]
        else:  # a piece may still write a folder, or finish one the text began: only pieces with a "/" can
            ok = [("/" not in piece) or self._new_names_fit(tail, piece) for piece in pieces[:count]]
            if all(ok):
                return None
        mask = torch.zeros(size, dtype=torch.bool)
        mask[:count] = torch.tensor(ok, dtype=torch.bool)
        return mask

    def _continues(self, opened: str) -> Callable[[str], bool]:
        """Whether a piece keeps the open name ``opened`` on one of the names or ends it there, checked against the
        rest of each name (set lookups per piece, not a scan of the names: a vocabulary of 32k pieces and hundreds
        of files stay in milliseconds)."""
        rests = {name[len(opened):] for name in self.names if name.startswith(opened)}
        ended = any(len(opened) > len(name) and opened.startswith(name) and opened[len(name)] not in _NAME_CHARS
                    for name in self.names)  # "inputs/a.p" with "inputs/a" a name: that name ended at the "."
        inside = {rest[:k] for rest in rests for k in range(1, len(rest) + 1)}
        lengths = sorted({len(rest) for rest in rests})

        def fits(piece: str) -> bool:
            return ended or piece in inside or any(
                len(piece) > k and piece[:k] in rests and piece[k] not in _NAME_CHARS for k in lengths)

        return fits

    def _starts(self, text: str, since: int = 0) -> list[int]:
        """Where a folder of ``names`` begins at the start of a word in ``text`` and ends after ``since``."""
        found = []
        for folder in self.folders:
            at = text.find(folder)
            while at != -1:
                if at + len(folder) > since and (at == 0 or text[at - 1] not in _INSIDE_A_WORD):
                    found.append(at)
                at = text.find(folder, at + 1)
        return found

    def _open_name(self, tail: str) -> str | None:
        """The name the text is writing now (from its folder to the end of ``tail``), or None."""
        starts = self._starts(tail)
        if not starts:
            return None
        written = tail[max(starts):]  # the last one: a name written before it has ended
        return written if any(name.startswith(written) for name in self.names) else None

    def _new_names_fit(self, tail: str, piece: str) -> bool:
        text = tail + piece
        return all(self._fits(text[at:]) for at in self._starts(text, since=len(tail)))

    def _fits(self, written: str) -> bool:
        """Whether ``written`` (from a folder on) can still become one of the names, or is one followed by text."""
        for name in self.names:
            if name.startswith(written):
                return True
            if written.startswith(name) and (written[len(name)] not in _NAME_CHARS):
                return True
        return False
