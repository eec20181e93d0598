"""A ``Dialogue`` → the template's ``(role, text)`` turns, with media placeholders and output markers expanded.

The rules are those of inference (``nextgpt.prompting.prepare_prompt``), so a training prompt equals the prompt
the model sees at inference:

- user (and tool) text: reserved token strings are removed; a turn whose text has no placeholder for an
  attached modality gets one placeholder per item prepended (``<image>\\n``); placeholder count must equal the
  attached items per modality; each placeholder becomes ``layout.expansions[modality]``; the items are listed
  in placeholder order.
- tool turns are user-side turns whose text is ``render_tool_result(tool_name, text)`` (dialogs/tool_calls.py).
- assistant text: each ``<output:MODALITY>`` marker takes that modality's next OutputRequest of the turn and
  becomes its signal tokens ``[X0]..[Xn-1]`` (no spaces); requests without a marker are appended at the end,
  after one space. Raw signal tokens in data text are refused (write the marker instead).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .layout import TokenLayout
from .schema import OUTPUT_MARKER, Dialogue, MediaRef, OutputRequest, Turn
from .tool_calls import render_tool_result

MARKER_RE = re.compile(re.escape(OUTPUT_MARKER).replace(r"\{modality\}", r"([A-Za-z0-9_]+)"))


class DialogueError(ValueError):
    """A dialogue that cannot be rendered. ``field`` names the offending part (``turns[2].text``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class RenderedTurns:
    turns: list[tuple[str, str]]  # (role, text) for the template; role in system/user/assistant
    inputs: list[MediaRef] = field(default_factory=list)  # in prompt order
    outputs: list[OutputRequest] = field(default_factory=list)  # in the order their signal tokens appear
    input_turns: list[int] = field(default_factory=list)  # index of the dialogue turn of each input
    output_turns: list[int] = field(default_factory=list)  # index of the dialogue turn of each output
    trained: list[bool] = field(default_factory=list)  # per assistant turn, in order: whether it carries the loss


def render_dialogue(dialogue: Dialogue, layout: TokenLayout, turns: list[Turn] | None = None) -> RenderedTurns:
    """Render ``dialogue.turns`` (or the given prefix of them) for ``layout``.

    Raises:
        DialogueError: an unknown modality, a placeholder/marker count that does not match the attached items,
            or reserved token strings in assistant text.
    """
    out = RenderedTurns(turns=[])
    for index, turn in enumerate(dialogue.turns if turns is None else turns):
        where = f"turns[{index}]"
        if turn.role in ("user", "tool"):
            text, items = _user_text(turn, layout, where)
            if turn.role == "tool":
                text = render_tool_result(turn.tool_name or "tool", text)
            out.turns.append(("user", text))
            out.inputs.extend(items)
            out.input_turns.extend([index] * len(items))
        elif turn.role == "assistant":
            if turn.inputs:
                raise DialogueError(f"{where}.inputs", "an assistant turn cannot attach input media")
            if turn.outputs and not turn.train:
                raise DialogueError(f"{where}.train", "a turn left out of the loss (train: false) cannot request "
                                                      "outputs: their alignment would still be trained")
            text, requests = _assistant_text(turn, layout, where)
            out.turns.append(("assistant", text))
            out.trained.append(turn.train)
            out.outputs.extend(requests)
            out.output_turns.extend([index] * len(requests))
        elif turn.role == "system":
            out.turns.append(("system", _strip(turn.text, layout)))
        else:
            raise DialogueError(f"{where}.role", f"unknown role {turn.role!r}; use system, user, assistant or tool")
    return out


def _strip(text: str, layout: TokenLayout) -> str:
    for token in layout.forbidden_strings:
        text = text.replace(token, "")
    return text


def _user_text(turn: Turn, layout: TokenLayout, where: str) -> tuple[str, list[MediaRef]]:
    if turn.outputs:
        raise DialogueError(f"{where}.outputs", f"a {turn.role} turn cannot request outputs")
    for number, item in enumerate(turn.inputs):
        if item.modality not in layout.expansions:
            raise DialogueError(f"{where}.inputs[{number}].modality",
                                f"{item.modality!r} is not an input modality; inputs are {layout.input_modalities}")
    text = _strip(turn.text, layout)
    prefix = ""
    for name, placeholder in layout.placeholders.items():
        count = sum(1 for item in turn.inputs if item.modality == name)
        if count and placeholder not in text:
            prefix += (placeholder + "\n") * count
    text = prefix + text
    pattern = re.compile("|".join(re.escape(p) for p in layout.placeholders.values()) or "(?!)")
    by_placeholder = {p: name for name, p in layout.placeholders.items()}
    found = [by_placeholder[p] for p in pattern.findall(text)]
    for name in layout.placeholders:
        wanted, given = found.count(name), sum(1 for item in turn.inputs if item.modality == name)
        if wanted != given:
            raise DialogueError(f"{where}.text", f"{wanted} {layout.placeholders[name]} placeholder(s) but {given} "
                                                 f"{name} item(s) attached")
    queues = {name: [item for item in turn.inputs if item.modality == name] for name in layout.placeholders}
    ordered = [queues[name].pop(0) for name in found]
    return pattern.sub(lambda m: layout.expansions[by_placeholder[m.group(0)]], text), ordered


def _assistant_text(turn: Turn, layout: TokenLayout, where: str) -> tuple[str, list[OutputRequest]]:
    raw = [token for token in layout.forbidden_strings if token in turn.text]
    if raw:
        raise DialogueError(f"{where}.text", f"contains reserved token strings {raw[:3]}; write "
                                             f"{OUTPUT_MARKER.format(modality='MODALITY')} for an output instead")
    for number, request in enumerate(turn.outputs):
        if request.modality not in layout.signal_tokens:
            raise DialogueError(f"{where}.outputs[{number}].modality", f"{request.modality!r} cannot be generated; "
                                                                       f"outputs are {layout.output_modalities}")
    queues = {name: [r for r in turn.outputs if r.modality == name] for name in layout.signal_tokens}
    ordered: list[OutputRequest] = []

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in queues:
            raise DialogueError(f"{where}.text", f"marker {match.group(0)} names a modality that cannot be "
                                                 f"generated; outputs are {layout.output_modalities}")
        if not queues[name]:
            raise DialogueError(f"{where}.text", f"more {match.group(0)} markers than {name} outputs "
                                                 f"({sum(1 for r in turn.outputs if r.modality == name)})")
        ordered.append(queues[name].pop(0))
        return "".join(layout.signal_tokens[name])

    text = MARKER_RE.sub(replace, turn.text)
    rest = [r for r in turn.outputs if any(r is q for queue in queues.values() for q in queue)]
    if rest:
        tail = "".join("".join(layout.signal_tokens[r.modality]) for r in rest)
        text = f"{text} {tail}" if text and not text[-1].isspace() else text + tail
        ordered.extend(rest)
    return text, ordered
