"""Dataset validation before step 0 (reliability item 25): every bad record, all at once, as ``file:line:field``.

``validate`` reads the files with the loaders (structural problems: missing fields, wrong types, bad JSON) and
checks each dialogue: known modalities, media files that exist, non-empty captions and answers, placeholder
counts equal to the attached items, ``<output:X>`` markers matched by outputs, roles in order. Given a model's
``TokenLayout`` (and ``max_length``) it also tokenises every dialogue, so a run cannot fail later on its data.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .formats import CAPTION_PROMPT, Loaded
from .layout import TokenLayout
from .loaders import DEFAULT_MODALITIES, iter_loaded
from .records import Problem
from .render import MARKER_RE, DialogueError
from .tokenize import DialogueTooLong, encode_dialogue

# signal tokens of the presets and the legacy code ([IMG0], [VID3], [AUD7]) and of ModalitySpec defaults ([IMAGE0])
SIGNAL_LIKE = re.compile(r"\[(?:IMG|VID|AUD|IMAGE|VIDEO|AUDIO)\d+\]")
NEXT_ROLES = {  # role → roles that may follow it
    None: ("system", "user"),
    "system": ("user",),
    "user": ("assistant",),
    "tool": ("assistant",),
    "assistant": ("user", "tool"),
}


def validate(
    paths: Iterable[str | Path],
    root: str | Path | None = None,
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    *,
    format: str | None = None,
    task: str = "comprehension",
    output_modalities: Sequence[str] | None = None,
    check_files: bool = True,
    layout: TokenLayout | None = None,
    max_length: int | None = None,
    caption_prompt: str = CAPTION_PROMPT,
) -> list[Problem]:
    """Check dataset files; returns every problem found (empty: the data is good).

    Args:
        paths, root, format, task, caption_prompt: as in ``nextgpt.dialogs.loaders.iter_loaded``.
        modalities: the modalities the model knows (inputs and outputs).
        output_modalities: the modalities that may be generated (None: all of ``modalities``).
        check_files: check that every input (and output ``path``) file exists.
        layout: a model's token layout: also render and tokenise each dialogue with it.
        max_length: with ``layout``: report dialogues whose first exchange is longer.
    """
    return list(iter_problems(paths, root, modalities, format=format, task=task, output_modalities=output_modalities,
                              check_files=check_files, layout=layout, max_length=max_length,
                              caption_prompt=caption_prompt))


def iter_problems(paths, root=None, modalities=DEFAULT_MODALITIES, **options) -> Iterator[Problem]:
    """``validate`` as a generator (same arguments)."""
    for item in iter_loaded(paths, root, options.get("format"), options.get("task", "comprehension"), modalities,
                            options.get("caption_prompt", CAPTION_PROMPT)):
        if isinstance(item, Problem):
            yield item
        else:
            yield from check_loaded(item, modalities, options.get("output_modalities"),
                                    options.get("check_files", True), options.get("layout"),
                                    options.get("max_length"))


def check_loaded(loaded: Loaded, modalities: Sequence[str], output_modalities: Sequence[str] | None = None,
                 check_files: bool = True, layout: TokenLayout | None = None,
                 max_length: int | None = None) -> list[Problem]:
    """The semantic checks of one dialogue (see the module docstring)."""
    dialogue, problems = loaded.dialogue, []
    outputs_allowed = set(modalities if output_modalities is None else output_modalities)

    def report(where: str, message: str) -> None:
        problems.append(Problem(dialogue.source, where, message))

    previous = None
    for index, turn in enumerate(dialogue.turns):
        text_field = loaded.field_of(index)
        if turn.role not in NEXT_ROLES[previous]:
            after = f"after {previous!r}" if previous else "first"
            report(loaded.field_of(index, "from" if loaded.text_key == "value" else "role"),
                   f"role {turn.role!r} cannot come {after}; expected {' or '.join(NEXT_ROLES[previous])}")
        previous = turn.role
        for item in turn.inputs:
            where = loaded.item_fields.get(id(item), text_field)
            if item.modality not in modalities:
                report(where, f"unknown modality {item.modality!r}; known: {list(modalities)}")
            elif check_files and not Path(item.path).is_file():
                report(where, f"missing media file {item.path}")
        for item in turn.outputs:
            where = loaded.item_fields.get(id(item), text_field)
            if item.modality not in outputs_allowed:
                report(where, f"{item.modality!r} cannot be generated; outputs: {sorted(outputs_allowed)}")
            if not item.caption.strip():
                report(loaded.caption_fields.get(id(item), where), f"empty caption of the {item.modality} output")
            if check_files and item.path and not Path(item.path).is_file():
                report(where, f"missing media file {item.path}")
        if turn.role in ("user", "tool"):
            problems.extend(_placeholder_problems(dialogue.source, text_field, turn, modalities))
        if turn.role == "assistant":
            problems.extend(_assistant_problems(dialogue.source, text_field, turn, modalities))
    if not any(t.role == "assistant" for t in dialogue.turns):
        report(loaded.field_of(0, "") if dialogue.turns else "turns", "no assistant turn: nothing to learn")
    elif not any(t.role == "assistant" and t.train for t in dialogue.turns):
        report(loaded.field_of(0, ""), "every assistant turn has train: false: nothing to learn")
    elif dialogue.turns[-1].role != "assistant":
        report(loaded.field_of(len(dialogue.turns) - 1, ""), "the dialogue ends with a "
               f"{dialogue.turns[-1].role} turn (dropped in training: it has no answer)")
    if layout is not None and not problems:
        problems.extend(_encoding_problems(loaded, layout, max_length))
    return problems


def _placeholder_problems(source: str, where: str, turn, modalities: Sequence[str]) -> list[Problem]:
    problems = []
    for modality in modalities:
        placeholder = f"<{modality}>"
        written, attached = turn.text.count(placeholder), sum(1 for i in turn.inputs if i.modality == modality)
        if written and written != attached:  # no placeholder at all: one per item is prepended
            problems.append(Problem(source, where, f"{written} {placeholder} placeholder(s) but {attached} "
                                                   f"{modality} item(s) attached"))
    if turn.outputs:
        problems.append(Problem(source, where, f"a {turn.role} turn cannot request outputs"))
    return problems


def _assistant_problems(source: str, where: str, turn, modalities: Sequence[str]) -> list[Problem]:
    problems = []
    markers = [m.group(1) for m in MARKER_RE.finditer(turn.text)]
    for modality in sorted(set(markers)):
        given = sum(1 for o in turn.outputs if o.modality == modality)
        if markers.count(modality) > given:
            problems.append(Problem(source, where, f"{markers.count(modality)} <output:{modality}> marker(s) but "
                                                   f"{given} {modality} output(s)"))
    for modality in modalities:
        if f"<{modality}>" in turn.text:
            problems.append(Problem(source, where, f"input placeholder <{modality}> in an answer; an answer "
                                                   f"produces media with <output:{modality}>"))
    if not turn.text.strip() and not turn.outputs:
        problems.append(Problem(source, where, "empty answer"))
    if SIGNAL_LIKE.search(turn.text):
        problems.append(Problem(source, where, "raw signal tokens like [IMG0] in the text; write "
                                               "<output:MODALITY> instead"))
    return problems


def _encoding_problems(loaded: Loaded, layout: TokenLayout, max_length: int | None) -> list[Problem]:
    source = loaded.dialogue.source
    try:
        encode_dialogue(loaded.dialogue, layout, max_length=max_length)
    except DialogueTooLong as error:
        return [Problem(source, "turns", str(error).split(": ", 1)[-1])]
    except DialogueError as error:
        match = re.match(r"turns\[(\d+)\](.*)", error.field)
        where = loaded.field_of(int(match.group(1))) if match else error.field
        return [Problem(source, where, error.message)]
    return []
