"""Messages → prompt text with media placeholders expanded, and the media items in prompt order."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from nextgpt.dialogs.templates import ChatTemplate, get_template

from .generation import canonicalize_signals
from .types import Media, Message


@dataclass
class PreparedPrompt:
    """A prompt ready for tokenisation: text with media tokens, and the media items in the same order."""

    text: str
    media: list[Media] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def prepare_prompt(model: Any, messages: Sequence[Message | dict], max_chars: int | None = None) -> PreparedPrompt:
    """Render messages with the model's template.

    User/system text may not contain the model's reserved token strings (they are removed); assistant history
    keeps its signal tokens (repaired by ``canonicalize_signals``). A message whose text has no placeholder for
    an attached modality gets the placeholders prepended, one per item.

    Raises:
        ValueError: placeholder count ≠ attached items of a modality; an unknown modality; text over the cap.
    """
    config = model.config
    messages = [m if isinstance(m, Message) else Message.from_dict(m) for m in messages]
    signal_tokens = {spec.name: spec.signal_tokens for spec in config.output_modalities}
    inputs = {spec.name: spec for spec in config.input_modalities}
    placeholder_re = re.compile("|".join(re.escape(spec.placeholder) for spec in inputs.values()) or "(?!)")
    by_placeholder = {spec.placeholder: spec.name for spec in inputs.values()}
    reserved = [config.media_token, *config.reserved_tokens]
    turns: list[tuple[str, str]] = []
    ordered: list[Media] = []
    warnings: list[str] = []
    total_chars = 0
    for number, message in enumerate(messages, start=1):
        text = message.text
        total_chars += len(text)
        if message.role == "assistant":
            text, fixed = canonicalize_signals(text, signal_tokens)
            warnings.extend(fixed)
        else:
            for token in reserved + [t for toks in signal_tokens.values() for t in toks]:
                text = text.replace(token, "")
        for item in message.media:
            if item.modality not in inputs:
                raise ValueError(
                    f"message {number}: modality {item.modality!r} cannot be an input; inputs are {sorted(inputs)}"
                )
        text = _insert_missing_placeholders(text, message.media, inputs)
        found = placeholder_re.findall(text)
        for name in inputs:
            wanted = sum(1 for p in found if by_placeholder[p] == name)
            given = sum(1 for m in message.media if m.modality == name)
            if wanted != given:
                raise ValueError(
                    f"message {number}: the text has {wanted} {inputs[name].placeholder} placeholder(s) but "
                    f"{given} {name} item(s) are attached"
                )
        queues = {name: [m for m in message.media if m.modality == name] for name in inputs}
        for placeholder in found:
            ordered.append(queues[by_placeholder[placeholder]].pop(0))
        text = placeholder_re.sub(lambda m: model.placeholder_expansion(by_placeholder[m.group(0)]), text)
        turns.append((message.role, text))
    if max_chars is not None and total_chars > max_chars:
        raise ValueError(f"the prompt has {total_chars} characters; the limit is {max_chars} (max_prompt_chars)")
    template = get_template(config.template)
    if isinstance(template, ChatTemplate):
        rendered = template.render(turns, add_generation_prompt=True, tokenizer=model.tokenizer)
    else:
        rendered = template.render(turns, add_generation_prompt=True)
    return PreparedPrompt(rendered, ordered, warnings)


def _insert_missing_placeholders(text: str, media: list[Media], inputs: dict) -> str:
    prefix = ""
    for name, spec in inputs.items():
        count = sum(1 for m in media if m.modality == name)
        if count and spec.placeholder not in text:
            prefix += (spec.placeholder + "\n") * count
    return prefix + text
