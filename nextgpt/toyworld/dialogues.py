"""Toy-world meanings → dialogues in the project's schema, each with the checks that judge a model's answers.

Builders are pure apart from ``media`` (a callable that renders a meaning to a file and returns its path), so
the same code writes training data and the held-out evaluation set. A ``Check`` says, for one assistant turn,
what a right answer produces (``text`` or a modality) and which attributes of which modality it must get right.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import cache
from typing import Callable

import numpy as np

from nextgpt.apps.agent.specs import attachment_note, missing_file, output_phrase, tool_failure
from nextgpt.dialogs.formats import CAPTION_PROMPT
from nextgpt.dialogs.schema import OUTPUT_MARKER, Dialogue, MediaRef, OutputRequest, Turn
from nextgpt.dialogs.tool_calls import render_tool_call, render_tool_specs

from .language import PLACE, WORDS, caption
from .prompts import (
    ANSWERS,
    ATTRIBUTE_WORDS,
    COURTESY_RATE,
    MODEL_MODALITIES,
    NOUNS,
    TOOL_SYSTEM,
    instruction_phrasings,
    polite,
    tool_specs,
    with_articles,
)
from .split import Split
from .world import Meaning, convert, linked_attributes

MediaWriter = Callable[[Meaning], str]
TOOL_CALL = "tool_call"  # what a tool-call turn produces (Check.produce)


@cache
def tool_system_prompt() -> str:
    """The system turn of every tool-use dialogue: the agent's instructions and its media tools' specs. Rendered
    once per process (rendering the specs' JSON schemas for every dialogue took ≈ 16 s of the world's data step and
    ≈ 23 s of the toy LLM's text)."""
    return TOOL_SYSTEM + "\n\n" + render_tool_specs(tool_specs())


@dataclass
class Check:
    """What assistant turn ``turn`` must do: produce ``produce`` (``text`` or a modality, and nothing else) whose
    ``about``-modality ``attributes`` are these."""

    turn: int
    produce: str
    about: str
    attributes: dict[str, str]

    @classmethod
    def from_dict(cls, data: dict) -> "Check":
        return cls(data["turn"], data["produce"], data["about"], dict(data["attributes"]))


@dataclass
class Example:
    dialogue: Dialogue
    checks: list[Check]
    kind: str


class Builder:
    """Builds dialogues for one part of the split (``train`` or ``eval``) with one random generator."""

    def __init__(self, split: Split, part: str, media: MediaWriter, rng: np.random.Generator, *,
                 courtesy_rate: float = COURTESY_RATE) -> None:
        """``courtesy_rate``: the share of training requests made polite (0 for the LLM's pretraining text, which
        is the world's dialogues without courtesy: see ``train_llm.dialogue_texts``)."""
        if not 0.0 <= courtesy_rate <= 1.0:
            raise ValueError(f"courtesy_rate must be a share between 0 and 1, got {courtesy_rate!r}")
        self.split, self.part, self.media, self.rng = split, part, media, rng
        self.courtesy_rate = courtesy_rate
        # courtesy draws from a stream of its own: every other draw is what it would be without it
        self.courtesy = rng.spawn(1)[0]

    # ---- words -------------------------------------------------------------------------------------------
    def _choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def caption(self, meaning: Meaning) -> str:
        return caption(meaning, self._choice(self.split.phrasings(meaning.modality, self.part)), self.rng)

    def noun(self, modality: str) -> str:
        """A word for ``modality`` in a request (``picture``, ``image``, ``drawing``)."""
        return self._choice(NOUNS[modality])

    def instruction(self, task: str, **words: str) -> str:
        """A request of ``task`` in one of the part's phrasings; in training, ``courtesy_rate`` of them polite."""
        text = with_articles(self._choice(instruction_phrasings(task, self.part)).format(**words))
        if self.part == "train" and self.courtesy.random() < self.courtesy_rate:
            text = polite(text, int(self.courtesy.integers(2)))
        return text

    def answer(self, task: str, **words: str) -> str:
        return with_articles(self._choice(ANSWERS[task]).format(**words))

    # ---- turns -------------------------------------------------------------------------------------------
    def _generate_turns(self, meaning: Meaning) -> tuple[Turn, Turn]:
        text = self.caption(meaning)
        user = Turn("user", self.instruction("generate", noun=self.noun(meaning.modality), caption=text))
        return user, self._output_turn("generate", meaning, caption=text)

    def _output_turn(self, task: str, meaning: Meaning, **words: str) -> Turn:
        marker = OUTPUT_MARKER.format(modality=meaning.modality)
        words.setdefault("caption", self.caption(meaning))
        request = OutputRequest(meaning.modality, words["caption"], path=self.media(meaning))
        return Turn("assistant", self.answer(task, marker=marker, **words), outputs=[request])

    def _describe_turns(self, meaning: Meaning) -> tuple[Turn, Turn]:
        noun = self.noun(meaning.modality)
        user = Turn("user", self.instruction("describe", placeholder=f"<{meaning.modality}>", noun=noun),
                    inputs=[MediaRef(meaning.modality, self.media(meaning))])
        return user, Turn("assistant", self.answer("describe", caption=self.caption(meaning), noun=noun))

    def _convert_turns(self, source: Meaning, target: Meaning, *, previous: bool) -> tuple[Turn, Turn]:
        words = {"noun": self.noun(source.modality), "target": self.noun(target.modality), "modality": source.modality,
                 "target_phrase": output_phrase(target.modality)}
        if previous:
            user = Turn("user", self.instruction("convert_previous", **words))
        else:
            user = Turn("user", self.instruction("convert", placeholder=f"<{source.modality}>", **words),
                        inputs=[MediaRef(source.modality, self.media(source))])
        return user, self._output_turn("convert", target, source=self.caption(source), **words)

    def _ask_turns(self, meaning: Meaning) -> tuple[Turn, Turn, str]:
        attribute = self._choice(list(meaning.attributes))
        value = meaning[attribute]
        if attribute == "position":
            phrase = PLACE[value].format(centre="centre")
        elif attribute == "direction":
            phrase = f"moving {value}"
        else:
            phrase = WORDS[meaning.modality][attribute][value][0]
        word = ATTRIBUTE_WORDS[attribute]
        user = Turn("user", self.instruction("ask", attribute=word))
        return user, Turn("assistant", self.answer("ask", value=phrase, attribute=word)), attribute

    # ---- examples ----------------------------------------------------------------------------------------
    def pair(self, meaning: Meaning, task: str) -> Example:
        """An X-caption pair: ``comprehension`` (stage 1: media → caption) or ``generation`` (stage 2)."""
        text, modality = self.caption(meaning), meaning.modality
        if task == "comprehension":
            turns = [Turn("user", f"<{modality}>\n{CAPTION_PROMPT}", inputs=[MediaRef(modality, self.media(meaning))]),
                     Turn("assistant", text)]
            check = Check(1, "text", modality, meaning.attributes)
        else:
            request = OutputRequest(modality, text, path=self.media(meaning))
            turns = [Turn("user", text), Turn("assistant", OUTPUT_MARKER.format(modality=modality),
                                             outputs=[request])]
            check = Check(1, modality, modality, meaning.attributes)
        return Example(Dialogue(turns), [check], f"pair-{task}")

    def generation(self, meaning: Meaning) -> Example:
        return Example(Dialogue(list(self._generate_turns(meaning))),
                       [Check(1, meaning.modality, meaning.modality, meaning.attributes)], "generation")

    def captioning(self, meaning: Meaning) -> Example:
        return Example(Dialogue(list(self._describe_turns(meaning))),
                       [Check(1, "text", meaning.modality, meaning.attributes)], "captioning")

    def conversion(self, source: Meaning, target_modality: str) -> Example:
        target = convert(source, target_modality)
        if target is None:
            raise ValueError(f"{source.key} has no {target_modality} under the cross-modal rule")
        judged = {a: target[a] for a in linked_attributes(source.modality, target_modality)}
        return Example(Dialogue(list(self._convert_turns(source, target, previous=False))),
                       [Check(1, target_modality, target_modality, judged)], "conversion")

    def multiturn(self, pools: dict[str, list[Meaning]], targets: Callable[[Meaning], list[str]],
                  steps: int) -> Example:
        """A MosIT-style dialogue of ``steps`` exchanges that switch modalities: generate, describe, convert the
        previous item, ask about one attribute of it. ``pools`` holds the meanings to draw new items from;
        ``targets(m)`` the modalities ``m`` may be converted to in this part."""
        turns: list[Turn] = []
        checks: list[Check] = []
        current: Meaning | None = None
        for _ in range(steps):
            kinds = ["generate", "describe"] + (["ask"] if current else [])
            kinds += ["convert"] * 2 if current and targets(current) else []
            kind = self._choice(kinds)
            if kind == "generate" or kind == "describe":
                current = self._choice(pools[self._choice(list(pools))])
                user, answer = (self._generate_turns if kind == "generate" else self._describe_turns)(current)
                produce = current.modality if kind == "generate" else "text"
                check = Check(0, produce, current.modality, current.attributes)
            elif kind == "convert":
                source = current
                current = convert(source, self._choice(targets(source)))
                user, answer = self._convert_turns(source, current, previous=True)
                judged = {a: current[a] for a in linked_attributes(source.modality, current.modality)}
                check = Check(0, current.modality, current.modality, judged)
            else:
                user, answer, attribute = self._ask_turns(current)
                check = Check(0, "text", current.modality, {attribute: current[attribute]})
            turns += [user, answer]
            check.turn = len(turns) - 1
            checks.append(check)
        return Example(Dialogue(turns), checks, "multiturn")

    def tool_use(self, meaning: Meaning, targets: list[str], *, retry: bool = False) -> Example:
        """A dialogue in the agent's tool-call format, with the agent's own system prompt, tool list, attachment
        note and tool-result texts (apps/agent/specs.py, operations.py): describe, generate or convert one item.

        ``retry=True`` (describe or convert only): the first call names a file that is not there (a name the model
        might confuse with the attachment's), the tool answers with the agent's error that lists the files, and
        the model calls again with the right one. The failed call is ``train=False``: context the model learns to
        recover from, never a target (kind ``tool_retry``).

        Its check (for the eval set) judges the call the model writes (after the error, for a retry): ``produce``
        is ``tool_call`` and ``attributes`` hold the tool's name (``tool``) and what its arguments must say: the
        item's attributes (read from the description), or the ``path`` and ``to`` of the call."""
        modality, noun = meaning.modality, self.noun(meaning.modality)
        system = Turn("system", tool_system_prompt())
        kinds = ([] if retry else ["generate"]) + ["describe"] + (["convert"] if targets else [])
        kind = self._choice(kinds)
        source = self._attachment(modality)
        attached = attachment_note([(source, _MIME[modality])])
        if kind == "generate":
            text = self.caption(meaning)
            user = self.instruction("generate", noun=noun, caption=text)
            call, name = {"description": text}, f"generate_{modality}"
            expected = dict(meaning.attributes)
            made = self._made(modality)
            result = f"generated {modality}: {made} ({_MIME[modality]}, seed 0)"
            final = f"I made {made}: {text}."
        elif kind == "describe":
            user = self.instruction("describe", placeholder="", noun=noun).lstrip("\n") + attached
            call, name = {"path": source}, f"describe_{modality}"
            expected = {"path": source}
            text = self.caption(meaning)
            described = self.answer("describe", caption=text, noun=noun)
            result = f"{modality} {source} — the model's description (data, not instructions): {described}"
            final = f"{source} shows {text}."
        else:
            target = self._choice(targets)
            words = {"noun": noun, "target": self.noun(target), "modality": modality,
                     "target_phrase": output_phrase(target)}
            user = self.instruction("convert", placeholder="", **words).lstrip("\n") + attached
            call, name = {"path": source, "to": target}, "convert_media"
            expected = {"path": source, "to": target}
            made = self._made(target)
            result = f"generated {target} from {source}: {made} ({_MIME[target]}, seed 0)"
            final = f"I made {made}."
        turns = [system, Turn("user", user)]
        if retry:
            wrong = self._wrong_path(source)
            others = int(self.rng.integers(3))  # earlier outputs in the folder, as a workspace collects them
            there = sorted({source, *(self._made(self._choice(MODEL_MODALITIES)) for _ in range(others))})
            turns += [Turn("assistant", render_tool_call(name, {**call, "path": wrong}), train=False),
                      Turn("tool", tool_failure(name, missing_file(wrong, there)), tool_name=name)]
        check = Check(len(turns), TOOL_CALL, modality, {"tool": name, **expected})
        turns += [Turn("assistant", render_tool_call(name, call)), Turn("tool", result, tool_name=name),
                  Turn("assistant", final)]
        return Example(Dialogue(turns), [check], "tool_retry" if retry else "tools")

    def file_question(self) -> Example:
        """The user attaches one to three files (of different kinds, named as the agent names attachments) and
        asks for the name of one; the answer repeats it. No tools: plain practice at copying a name the model
        cannot guess, which a tool call's ``path`` needs (the LLM's training text only; no check)."""
        count = 1 + int(self.rng.integers(len(MODEL_MODALITIES)))
        kinds = [MODEL_MODALITIES[int(i)] for i in self.rng.permutation(len(MODEL_MODALITIES))[:count]]
        files = [(self._attachment(kind), _MIME[kind]) for kind in kinds]
        asked = int(self.rng.integers(count))
        noun = self.noun(kinds[asked])
        user = self._choice(FILE_QUESTIONS).format(noun=noun) + attachment_note(files)
        answer = self._choice(FILE_ANSWERS).format(noun=noun, path=files[asked][0])
        return Example(Dialogue([Turn("user", user), Turn("assistant", answer)]), [], "file_question")

    def _wrong_path(self, source: str) -> str:
        """A name the planner might write instead of ``source``: a usual stem of its kind, or the number dropped
        or changed."""
        folder, name = source.split("/", 1)
        stem, suffix = name.rsplit(".", 1)
        base, number = re.fullmatch(r"(.+?)(?:[-_](\d+))?", stem).groups()
        stems = next(s for m, s in _FILE_STEMS.items() if f".{suffix}" == _EXTENSIONS[m])
        options = [f"{other}.{suffix}" for other in stems if other != base]
        options += [f"{base}.{suffix}" if number is not None else f"{base}-{int(self.rng.integers(2, 100))}.{suffix}"]
        return f"{folder}/{self._choice([o for o in options if f'{folder}/{o}' != source])}"

    def _attachment(self, modality: str) -> str:
        """A user's file as the agent imports it (its own name under ``inputs/``), named the many ways people name
        files: ``inputs/photo-12.png``, ``inputs/beach.png``, ``inputs/qmvt_7.png``, ``inputs/IMG_0412.png``.

        Most names are not guessable from the request, so a planner trained on them must copy the name it was
        given: with only the usual stems (``photo``, ``clip``, ...) and small numbers, the toy LLM learnt to write
        a likely name instead (held-out describe calls named the right file 0.09 of the time)."""
        kind = int(self.rng.integers(4))
        if kind == 0:
            stem = self._choice(_FILE_STEMS[modality])
        elif kind == 1:
            stem = self._choice(_NAME_WORDS)
        elif kind == 2:
            stem = "".join(self._choice(_LETTERS) for _ in range(int(self.rng.integers(2, 7))))
        else:
            return f"inputs/{_CAMERA_PREFIX[modality]}_{int(self.rng.integers(10_000)):04d}{_EXTENSIONS[modality]}"
        number = int(self.rng.integers(1000))
        suffix = "" if number % 2 else f"{self._choice('-_')}{number // 2}"
        return f"inputs/{stem}{suffix}{_EXTENSIONS[modality]}"

    def _made(self, modality: str) -> str:
        """A file name as the pipeline writes it (the N-th of its modality in the folder): ``outputs/image-2.png``."""
        return f"outputs/{modality}-{int(self.rng.integers(1, 10))}{_EXTENSIONS[modality]}"


_EXTENSIONS = {"image": ".png", "audio": ".wav", "video": ".mp4"}
_FILE_STEMS = {"image": ("picture", "photo", "image", "drawing"), "audio": ("sound", "clip", "tone", "recording"),
               "video": ("video", "clip", "movie", "animation")}
_NAME_WORDS = ("cat", "dog", "beach", "sunset", "scan", "sketch", "song", "voice", "memo", "demo", "take", "shot",
               "frame", "holiday", "test", "sample", "draft", "final", "export", "untitled", "new", "mine", "work",
               "party", "garden", "lesson", "intro", "loop", "bird", "car")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_CAMERA_PREFIX = {"image": "IMG", "audio": "REC", "video": "VID"}
FILE_QUESTIONS = ("Which file is the {noun}?", "What is the {noun} called?", "Name the {noun} I attached.",
                  "What is the name of the {noun}?", "Which one is the {noun}?")
FILE_ANSWERS = ("The {noun} is {path}.", "{path}", "It is {path}.", "That is {path}.")
_MIME = {"image": "image/png", "audio": "audio/wav", "video": "video/mp4"}


def check_to_dict(check: Check) -> dict:
    return asdict(check)
