"""The words around the captions: instruction phrasings per task and the assistant's answer phrasings.

Instruction templates are generic over modalities (``{noun}``, ``{placeholder}``); the last phrasing of each
task is held out of training (split.py's rule for captions applies to instructions too).
"""
from __future__ import annotations

import re

from nextgpt.apps.agent.specs import CONVERT_PROMPT, DESCRIBE_QUESTION, SYSTEM_PROMPT, media_tool_specs

NOUNS: dict[str, tuple[str, ...]] = {  # the words a request may use for each modality; the first is the usual one
    "image": ("picture", "image", "drawing"),
    "audio": ("sound", "audio clip", "tone"),
    "video": ("video", "animation", "movie"),
}
NOUN = {modality: words[0] for modality, words in NOUNS.items()}

INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "generate": (
        "Make a {noun} of {caption}.",
        "Show me {caption}, as a {noun}.",
        "Can you create a {noun}: {caption}?",
        "I would like a {noun} of {caption}.",
        "Generate a {noun}: {caption}.",
        "Create {caption} as a {noun}.",
        "Please generate a {noun} with {caption}.",
    ),
    "describe": (
        "{placeholder}\nWhat is in this {noun}?",
        "{placeholder}\nDescribe this {noun}.",
        "{placeholder}\nCaption this {noun}, please.",
        "{placeholder}\n" + DESCRIBE_QUESTION,  # what the agent's describe tools ask
        "{placeholder}\nWhat does this {noun} show?",
        "{placeholder}\nGive me a caption for this {noun}.",
        "{placeholder}\nExplain this {noun} in words.",
        "{placeholder}\nTell me about this {noun}.",
    ),
    "convert": (
        "{placeholder}\nMake a {target} for this {noun}.",
        "{placeholder}\nTurn this {noun} into a {target}.",
        "{placeholder}\nWhat would this {noun} be as a {target}? Show me.",
        # what convert_media asks; {target_phrase}: "a sound" (apps/agent/specs.py's OUTPUT_PHRASES)
        "{placeholder}\n" + CONVERT_PROMPT.format(target="{target_phrase}", source="{modality}"),
        "{placeholder}\nConvert this {noun} to a {target}.",
        "{placeholder}\nCreate a {target} from this {noun}.",
        "{placeholder}\nGive me a {target} version of this {noun}.",
        "{placeholder}\nShow me this {noun} as a {target}.",
    ),
    "convert_previous": (
        "Now make a {target} for it.",
        "Turn that into a {target}.",
        "Can I have it as a {target} too?",
        "Convert it to a {target}.",
        "Make one more: a {target} of it.",
        "And as a {target}?",
    ),
    "ask": (
        "What is its {attribute}?",
        "Tell me its {attribute}.",
        "Which {attribute} does it have?",
        "And its {attribute}?",
    ),
}
HELD_OUT_INSTRUCTION = -1  # index of each task's held-out phrasing

COURTESY_RATE = 0.3
"""Share of the training requests of *every* task that :func:`polite` gives a "please". The templates alone have one
polite phrasing, a describe request, so in training "please" meant "answer in words": the model shipped before
courtesy answered the held-out "Please generate a {noun} with …" in words 23 times in 60, and a trained phrasing
with "Please" in front 10–20 times, against 0–2 without it (with courtesy: 3 times, 0). Courtesy at one rate for all
tasks predicts none of them."""

ANSWERS: dict[str, tuple[str, ...]] = {
    "generate": ("Here is {caption}: {marker}", "{marker} This is {caption}.", "Sure, {caption}: {marker}"),
    "describe": ("It is {caption}.", "This {noun} shows {caption}.", "I see {caption}."),
    "convert": ("This {noun} is {source}, so as a {target} it is {caption}: {marker}",
                "As a {target}, {source} becomes {caption}: {marker}"),
    "ask": ("It is {value}.", "Its {attribute} is {value}."),
}

ATTRIBUTE_WORDS = {"colour": "colour", "shape": "shape", "size": "size", "position": "position", "pitch": "pitch",
                   "timbre": "timbre", "rhythm": "rhythm", "direction": "direction"}

MODEL_MODALITIES = ("image", "video", "audio")  # the toy model's modalities, in its config's order
TOOL_SYSTEM = SYSTEM_PROMPT  # the agent's own system prompt: the model plans with what it was trained on


def with_articles(text: str) -> str:
    """``a`` before a vowel becomes ``an`` (``a image`` → ``an image``): the templates say ``a {noun}``."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def polite(instruction: str, form: int) -> str:
    """``instruction`` with a courtesy word on its request line (the text after a leading media placeholder): form
    0 puts "Please" in front of a command, form 1 ", please" before the final punctuation (also what form 0 does
    to a question, and to a line that starts with "I"). A request that already says "please" is returned as is."""
    head, newline, line = instruction.rpartition("\n")
    if "please" in line.lower() or not line:
        return instruction
    if form == 0 and not line.startswith("I ") and "?" not in line:
        line = "Please " + line[0].lower() + line[1:]
    elif line[-1] in ".?!":
        line = line[:-1] + ", please" + line[-1]
    else:
        line = line + ", please"
    return head + newline + line


def instruction_phrasings(task: str, part: str) -> list[str]:
    """Instruction templates of ``task`` for ``part`` (``train`` leaves the held-out phrasing out)."""
    templates = list(INSTRUCTIONS[task])
    return templates[:HELD_OUT_INSTRUCTION] if part == "train" else templates


def tool_specs(modalities: tuple[str, ...] = MODEL_MODALITIES) -> list[dict]:
    """The agent's media tools for a model of ``modalities``: exactly what ``nextgpt agent`` lists to the planner
    (apps/agent/specs.py)."""
    return media_tool_specs(modalities, modalities)
