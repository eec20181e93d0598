"""Conversation templates: how turns become the LLM's prompt text. Saved with every checkpoint (config.template).

A template renders a list of ``(role, text)`` turns into *segments* ``(text, is_assistant)`` so that training can
put the loss on assistant text only and inference can end on the assistant prefix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from nextgpt.registry import TEMPLATES

Turn = tuple[str, str]  # (role, text) with role in {"system", "user", "assistant"}
ROLES = ("system", "user", "assistant")

VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass(frozen=True)
class Segment:
    text: str
    is_assistant: bool


@dataclass(frozen=True)
class RoleTemplate:
    """A template of the form ``system sep0 user_prefix TEXT user_suffix assistant_prefix TEXT assistant_suffix``.

    Attributes:
        name: registry name (saved in config.json).
        system: default system prompt.
        system_format: how the system prompt is written (``{system}`` is replaced).
        user_prefix / user_suffix: around a user turn.
        assistant_prefix: opens an assistant turn (the generation prompt ends with it, stripped of trailing space).
        assistant_suffix: closes an assistant turn; it is part of the assistant's target (the model learns to stop).
        stop: strings that end generation (besides the tokenizer's EOS).
        user_prefix_after_assistant: user prefix for turns that follow an assistant turn (None: ``user_prefix``);
            NExT-GPT's v0 data writes ``answer\n###Human: ...`` because the answer already ends with ``###``.
    """

    name: str
    system: str
    system_format: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str
    stop: tuple[str, ...]
    user_prefix_after_assistant: str | None = None

    def segments(self, turns: Sequence[Turn], add_generation_prompt: bool = True) -> list[Segment]:
        """Render turns to segments. A trailing assistant prefix is added when ``add_generation_prompt``.

        Raises:
            ValueError: for an unknown role or a system turn that is not first.
        """
        system = self.system
        body = list(turns)
        if body and body[0][0] == "system":
            system = body.pop(0)[1]
        out: list[Segment] = []
        if system:
            out.append(Segment(self.system_format.format(system=system), False))
        for index, (role, text) in enumerate(body):
            if role == "user":
                prefix = self.user_prefix
                if self.user_prefix_after_assistant is not None and index and body[index - 1][0] == "assistant":
                    prefix = self.user_prefix_after_assistant
                out.append(Segment(f"{prefix}{text}{self.user_suffix}", False))
            elif role == "assistant":
                out.append(Segment(self.assistant_prefix, False))
                out.append(Segment(f"{text}{self.assistant_suffix}", True))
            elif role == "system":
                raise ValueError(f"turn {index + 1}: a system turn may only come first")
            else:
                raise ValueError(f"turn {index + 1}: unknown role {role!r}; use one of {ROLES}")
        if add_generation_prompt:
            out.append(Segment(self.assistant_prefix.rstrip(" "), False))
        return out

    def render(self, turns: Sequence[Turn], add_generation_prompt: bool = True) -> str:
        return "".join(s.text for s in self.segments(turns, add_generation_prompt))


TEMPLATES.add(
    "vicuna_v0",
    # NExT-GPT's legacy training format: no system prompt, "### Human: q\n### Assistant: a\n###Human: ...".
    RoleTemplate(
        name="vicuna_v0",
        system="",
        system_format="{system}\n",
        user_prefix="### Human: ",
        user_suffix="\n",
        assistant_prefix="### Assistant: ",
        assistant_suffix="\n###",
        stop=("###",),
        user_prefix_after_assistant="Human: ",
    ),
)
TEMPLATES.add(
    "vicuna_v1",
    RoleTemplate(
        name="vicuna_v1",
        system=VICUNA_SYSTEM,
        system_format="{system} ",
        user_prefix="USER: ",
        user_suffix=" ",
        assistant_prefix="ASSISTANT: ",
        assistant_suffix="</s>",
        stop=("</s>",),
    ),
)


@dataclass(frozen=True)
class ChatTemplate:
    """Uses the tokenizer's own ``chat_template`` (for instruction-tuned LLMs chosen by config)."""

    name: str = "chat_template"
    stop: tuple[str, ...] = ()

    def segments(
        self, turns: Sequence[Turn], add_generation_prompt: bool = True, tokenizer: Any = None
    ) -> list[Segment]:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("template 'chat_template' needs a tokenizer that has a chat_template")
        messages = [{"role": role, "content": text} for role, text in turns]
        out: list[Segment] = []
        rendered_before = ""
        # Render growing prefixes so each assistant message can be marked for the loss mask.
        for end in range(1, len(messages) + 1):
            rendered = tokenizer.apply_chat_template(messages[:end], tokenize=False)
            piece = rendered[len(rendered_before):] if rendered.startswith(rendered_before) else rendered
            out.append(Segment(piece, messages[end - 1]["role"] == "assistant"))
            rendered_before = rendered
        if add_generation_prompt:
            full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            out.append(Segment(full[len(rendered_before):], False))
        return out

    def render(self, turns: Sequence[Turn], add_generation_prompt: bool = True, tokenizer: Any = None) -> str:
        return "".join(s.text for s in self.segments(turns, add_generation_prompt, tokenizer))


TEMPLATES.add("chat_template", ChatTemplate())


def get_template(name: str) -> RoleTemplate | ChatTemplate:
    """Look up a template by name (KeyError lists the available ones)."""
    return TEMPLATES.get(name)
