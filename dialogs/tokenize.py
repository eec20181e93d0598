"""A ``Dialogue`` → token ids and loss labels for training, with the media-token runs and signal spans located.

The dialogue is rendered with the same template and placeholder rules as inference (dialogs/render.py), the
whole text is tokenised in one call exactly as ``nextgpt.pipeline`` tokenises a prompt (so training and
inference see the same ids), and a token carries a label when its characters overlap an assistant segment of a
trained turn (``Turn.train``; a turn marked ``train: false`` stays in the context without a loss) —
the assistant text, its signal tokens and the template's assistant suffix (``\\n###`` or ``</s>``, which teaches
stopping) — plus the space that ends the assistant prefix, which inference leaves for the model to generate.
Everything else is ``IGNORE_INDEX``.

Truncation never cuts a media-token run or a signal sequence: whole trailing turns are dropped (the kept part
always ends with an assistant turn), and when even the first exchange is too long the example is refused with
``DialogueTooLong`` naming the lengths.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .layout import TokenLayout
from .render import DialogueError, RenderedTurns, render_dialogue
from .schema import Dialogue, MediaRef, OutputRequest
from .templates import ChatTemplate, RoleTemplate, Segment, get_template

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class DialogueTooLong(ValueError):
    """Even the shortest trainable prefix (up to the first assistant turn) exceeds ``max_length``."""


@dataclass(frozen=True)
class Span:
    """Token positions ``[start, end)`` in ``input_ids`` of one media item or one signal sequence."""

    modality: str
    start: int
    end: int

    def positions(self) -> list[int]:
        return list(range(self.start, self.end))


@dataclass
class EncodedExample:
    """One tokenised training example.

    Attributes:
        input_ids: token ids ``[L]`` (with the tokenizer's BOS if it adds one).
        labels: ``[L]``, ``IGNORE_INDEX`` except on assistant tokens (signal tokens and stop suffix included) of
            turns that are trained (``Turn.train``).
            Not shifted: the LM shifts them (Hugging Face convention).
        inputs: the input media in prompt order; ``media_spans[i]`` are the media-token positions of ``inputs[i]``.
        outputs: the output requests in the order their signal sequences appear; ``signal_spans[i]`` are the
            signal-token positions of ``outputs[i]`` — read the LLM hidden states there (the positions that
            *feed* the signal tokens, as generation does) for the output projector.
        text: the rendered text that was tokenised.
        dropped_turns: trailing turns removed to fit ``max_length`` (0: none).
    """

    input_ids: list[int]
    labels: list[int]
    inputs: list[MediaRef]
    outputs: list[OutputRequest]
    media_spans: list[Span]
    signal_spans: list[Span]
    text: str
    id: str = ""
    source: str = ""
    dropped_turns: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_dialogue(
    dialogue: Dialogue,
    layout: TokenLayout,
    template: str | RoleTemplate | ChatTemplate | None = None,
    *,
    max_length: int | None = None,
) -> EncodedExample:
    """Tokenise one dialogue for training.

    Args:
        dialogue: the example (user/tool turns with inputs, assistant turns with outputs).
        layout: the model's token layout (``TokenLayout.from_model(model)``).
        template: a template name or object (default: ``layout.template``, i.e. the model's).
        max_length: the longest allowed sequence; longer dialogues lose whole trailing turns.

    Returns:
        The ``EncodedExample``.

    Raises:
        DialogueError: the dialogue cannot be rendered (names the field), or has no assistant turn.
        DialogueTooLong: not even the first exchange fits ``max_length``.
    """
    template = get_template(template or layout.template) if not isinstance(template, (RoleTemplate, ChatTemplate)) \
        else template
    whole = render_dialogue(dialogue, layout)  # report rendering problems of the whole dialogue, not a prefix
    ends = [k for k in range(len(dialogue.turns), 0, -1)
            if dialogue.turns[k - 1].role == "assistant" and dialogue.turns[k - 1].train]
    if not ends:
        raise DialogueError("turns", "no assistant turn with a loss (train: true): the example has nothing to learn")
    shortest = 0
    for end in ends:
        rendered = whole if end == len(dialogue.turns) else render_dialogue(dialogue, layout, dialogue.turns[:end])
        example = _encode(rendered, layout, template)
        if max_length is None or len(example) <= max_length:
            example.id, example.source = dialogue.id, dialogue.source
            example.dropped_turns = len(dialogue.turns) - end
            if example.dropped_turns:
                example.notes.append(f"dropped {example.dropped_turns} trailing turn(s) to end on an assistant "
                                     f"turn within max_length={max_length}")
            return example
        shortest = len(example)
    raise DialogueTooLong(f"{dialogue.source or dialogue.id or 'dialogue'}: {shortest} tokens up to the first "
                          f"assistant turn > max_length={max_length}; the example is dropped (media runs and "
                          "signal sequences are never cut)")


def encode_dialogues(dialogues: Iterable[Dialogue], layout: TokenLayout,
                     template: str | RoleTemplate | ChatTemplate | None = None, *,
                     max_length: int | None = None) -> tuple[list[EncodedExample], list[str]]:
    """Encode many dialogues; returns ``(examples, reasons)`` where each reason names a dropped example."""
    examples, dropped = [], []
    for dialogue in dialogues:
        try:
            examples.append(encode_dialogue(dialogue, layout, template, max_length=max_length))
        except (DialogueError, DialogueTooLong) as error:
            where = dialogue.source or dialogue.id
            reason = str(error) if isinstance(error, DialogueTooLong) else f"{where}:{error.field}: {error.message}"
            dropped.append(reason)
            logger.warning("dropped example: %s", reason)
    return examples, dropped


def _encode(rendered: RenderedTurns, layout: TokenLayout, template: Any) -> EncodedExample:
    try:
        if isinstance(template, ChatTemplate):
            segments = template.segments(rendered.turns, add_generation_prompt=False, tokenizer=layout.tokenizer)
        else:
            segments = template.segments(rendered.turns, add_generation_prompt=False)
    except ValueError as error:  # a system turn that is not first, ...
        raise DialogueError("turns", str(error)) from None
    text = "".join(s.text for s in segments)
    labelled = labelled_segments(segments, rendered.trained)
    ids, labels = _tokenize(layout.tokenizer, text, segments, labelled)
    media_spans = _media_spans(ids, rendered.inputs, layout)
    signal_spans = _signal_spans(ids, rendered.outputs, layout)
    return EncodedExample(ids, labels, list(rendered.inputs), list(rendered.outputs), media_spans, signal_spans, text)


def labelled_segments(segments: Sequence[Segment], trained: Sequence[bool]) -> list[bool]:
    """Per segment, whether it carries the loss: the assistant segments, but not those of turns marked
    ``train: false`` (``trained`` holds one flag per assistant segment, in order; missing flags count as true)."""
    flags, number = [], 0
    for segment in segments:
        flags.append(segment.is_assistant and (number >= len(trained) or trained[number]))
        number += segment.is_assistant
    return flags


def loss_ranges(segments: Sequence[Segment], labelled: Sequence[bool]) -> list[tuple[int, int]]:
    """Character ranges ``[start, end)`` of the joined segments' text that carry the loss: each labelled segment,
    with the space that ends the assistant prefix before it — the generation prompt ends with that prefix stripped
    of trailing spaces, so the model generates the space itself."""
    ranges, position, previous = [], 0, ""
    for segment, on in zip(segments, labelled):
        if on:
            space = len(previous) - len(previous.rstrip(" "))
            ranges.append((position - space, position + len(segment.text)))
        position += len(segment.text)
        previous = segment.text
    return ranges


def _tokenize(tokenizer: Any, text: str, segments: list, labelled: list[bool]) -> tuple[list[int], list[int]]:
    if getattr(tokenizer, "is_fast", False):
        ranges = loss_ranges(segments, labelled)
        encoded = tokenizer(text, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        labels = [
            token if end > start and any(start < r_end and end > r_start for r_start, r_end in ranges) else IGNORE_INDEX
            for token, (start, end) in zip(ids, encoded["offset_mapping"])
        ]
        return ids, labels
    # Slow tokenizers have no offsets: tokenise segment by segment (may differ from inference at boundaries).
    logger.debug("tokenizer %s is not fast: tokenising per segment", type(tokenizer).__name__)
    ids = list(tokenizer(text[:0])["input_ids"])  # the special tokens it adds (BOS), if any
    labels = [IGNORE_INDEX] * len(ids)
    for segment, on in zip(segments, labelled):
        piece = list(tokenizer(segment.text, add_special_tokens=False)["input_ids"])
        ids += piece
        labels += piece if on else [IGNORE_INDEX] * len(piece)
    return ids, labels


def _media_spans(ids: list[int], inputs: list[MediaRef], layout: TokenLayout) -> list[Span]:
    positions = [i for i, token in enumerate(ids) if token == layout.media_token_id]
    expected = sum(layout.tokens_per_item[item.modality] for item in inputs)
    if len(positions) != expected:
        raise DialogueError("text", f"{len(positions)} media tokens after tokenisation but the {len(inputs)} "
                                    f"input item(s) need {expected}; is {layout.media_token!r} a special token?")
    spans, cursor = [], 0
    for item in inputs:
        run = positions[cursor:cursor + layout.tokens_per_item[item.modality]]
        if run != list(range(run[0], run[0] + len(run))):
            raise DialogueError("text", f"the media tokens of a {item.modality} item are not contiguous: {run}")
        spans.append(Span(item.modality, run[0], run[-1] + 1))
        cursor += len(run)
    return spans


def _signal_spans(ids: list[int], outputs: list[OutputRequest], layout: TokenLayout) -> list[Span]:
    owner = {token: (name, index) for name, toks in layout.signal_token_ids.items() for index, token in enumerate(toks)}
    spans, i = [], 0
    while i < len(ids):
        if ids[i] not in owner:
            i += 1
            continue
        name, index = owner[ids[i]]
        expected = list(layout.signal_token_ids[name])
        if index != 0 or ids[i:i + len(expected)] != expected:
            raise DialogueError("text", f"a partial {name} signal sequence at token {i}: signal tokens must "
                                        "come as whole sequences (are they special tokens of the tokenizer?)")
        spans.append(Span(name, i, i + len(expected)))
        i += len(expected)
    if [s.modality for s in spans] != [o.modality for o in outputs]:
        raise DialogueError("text", f"signal sequences {[s.modality for s in spans]} do not match the outputs "
                                    f"{[o.modality for o in outputs]}")
    return spans
