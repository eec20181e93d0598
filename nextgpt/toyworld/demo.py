"""The built-in demo on the toy-world model: one conversation that goes text → image → sound → video → text.

Requests are written with the world's own grammar (``language.py``, ``prompts.py``) about meanings of the
**held-out** split, so what the demo shows is composition the model never saw in training. Each produced medium is
read back by the attribute judges when they are given, so the demo prints what it asked for and what it got.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .language import caption
from .prompts import INSTRUCTIONS, NOUN
from .world import Meaning

# (task, modality, meaning values or None) — generate an image, turn it into a sound, make a video, then ask the
# model to describe the image it made (the image goes back in as an input).
DEMO_PLAN: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("generate", "image", ("square", "blue", "large", "top")),
    ("convert_previous", "audio", None),
    ("generate", "video", ("triangle", "red", "left")),
    ("describe", "image", None),
)


@dataclass
class DemoTurn:
    prompt: str
    attach: str | None  # modality of the earlier output sent back as input
    expected: Meaning | None


def demo_turns() -> list[DemoTurn]:
    """The demo's requests, worded by the grammar (first phrasing and first words: the most common forms)."""
    turns = []
    for task, modality, values in DEMO_PLAN:
        meaning = Meaning(modality, values) if values else None
        if task == "generate":
            prompt = INSTRUCTIONS[task][0].format(noun=NOUN[modality], caption=caption(meaning))
        elif task == "convert_previous":
            prompt = INSTRUCTIONS[task][0].format(target=NOUN[modality])
        else:
            prompt = INSTRUCTIONS[task][0].format(placeholder="", noun=NOUN[modality]).strip()
        turns.append(DemoTurn(prompt, modality if task == "describe" else None, meaning))
    return turns


def run_demo(pipe: Any, *, output_dir: str | Path, seed: int = 0, judges: Any = None,
             log: Callable[[str], None] | None = None) -> list[Any]:
    """Run the demo conversation on ``pipe``; returns the responses. Media are written under ``output_dir``; each
    line of the conversation goes to ``log`` (default: this module's logger; the CLI passes ``print``)."""
    log = log or logging.getLogger(__name__).info
    from nextgpt.options import GenerationOptions

    conversation = pipe.conversation(options=GenerationOptions(seed=seed, max_new_tokens=64, output_dir=output_dir))
    made: dict[str, Any] = {}
    responses = []
    for turn in demo_turns():
        attach = {turn.attach: str(made[turn.attach].path)} if turn.attach in made else {}
        log(f"user: {turn.prompt}" + (f"  [+ {turn.attach}: {attach[turn.attach]}]" if attach else ""))
        response = conversation.say(turn.prompt, **attach)
        responses.append(response)
        log(f"assistant: {response.text}")
        for item in response.media:
            made[item.modality] = item
            line = f"  {item.modality}: {item.path}"
            if judges is not None:
                read = judges.predict(item.modality, [item.data], [item.rate])[0]
                line += "  (the judge reads: " + ", ".join(read.values()) + ")"
            log(line)
    return responses
