"""Readers of the public NExT-GPT data formats (and our own) into ``Dialogue``s — one function per format.

Every reader gets one JSON record and a ``ReadContext``; it records each problem it finds (``file:line:field``)
in the context and returns the dialogues it could build. Modalities are never spelled out per reader: a field
like ``input_image`` is read as ``input_{modality}`` for each modality of the context.

Formats (keys that identify them in parentheses; see docs/data.md):
- ``dialogue``: ours, ``Dialogue.to_dict()`` (``turns``).
- ``pairs``: X-caption pairs (``caption`` + ``image_name``/``video_name``/``audio_name``): CC3M, WebVid,
  AudioCaps. ``task="comprehension"`` (stage 1): user = media + caption prompt, assistant = caption;
  ``task="generation"`` (stage 2): user = the caption as the request, assistant = ``<output:X>`` with the caption.
- ``comprehension``: ``input_X`` (or LLaVA's ``X``) + ``conversations`` [{from, value}] with ``<X>`` placeholders
  in human turns; without ``input_X`` it is text-only instruction data.
- ``generation``: ``output_X`` / ``X_captions`` / ``X_caption_embeddings`` + ``conversations``; ``<X>`` in a gpt
  turn marks where the output goes (a gpt turn may instead carry ``caption`` + ``output_modality``).
- ``t2m``: legacy T2M, ``conversation`` [{from, value, input_modality} | {from, value, caption, output_modality}]
  + ``mm_name`` (the output file; the legacy code appends the signal tokens to the gpt value).
- ``mosit``: MosIT raw, ``X_list`` [{X_name, data_source, caption}] + ``conversation``; media appear in the text
  as ``<Image>caption</Image>`` (or bare ``<image>``) — human side: inputs, gpt side: outputs.
- ``alpaca``: ``instruction`` (+ ``input``) + ``output``, text-only instruction data.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .records import Problem
from .schema import OUTPUT_MARKER, Dialogue, MediaRef, OutputRequest, Turn

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
         "tool": "tool"}
CAPTION_PROMPT = "generate a caption"  # the legacy stage-1 prompt


@dataclass
class ReadContext:
    """What a reader needs besides the record: where it is, the root for media paths, the task, and a problem log."""

    source: str
    root: Path
    modalities: tuple[str, ...]
    task: str = "comprehension"
    caption_prompt: str = CAPTION_PROMPT
    problems: list[Problem] = field(default_factory=list)

    def problem(self, where: str, message: str) -> None:
        self.problems.append(Problem(self.source, where, message))

    def resolve(self, value: str) -> str:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else self.root / path)

    def get(self, data: dict, key: str, kinds: type | tuple = str, where: str = "", required: bool = True) -> Any:
        """``data[key]`` if present with the right type; otherwise record a problem and return None."""
        name = f"{where}.{key}" if where else key
        if key not in data:
            if required:
                self.problem(name, "missing field")
            return None
        value = data[key]
        if value is None and not required:
            return None
        if not isinstance(value, kinds) or isinstance(value, bool):
            wanted = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
            self.problem(name, f"expected {wanted}, got {type(value).__name__}")
            return None
        return value


@dataclass
class Loaded:
    """A dialogue and where its parts came from in the record (for ``file:line:field`` messages)."""

    dialogue: Dialogue
    format: str
    turn_fields: list[str]  # the record field of each turn ("conversations[2]")
    text_key: str = "value"  # the key of a turn's text in the record
    item_fields: dict[int, str] = field(default_factory=dict)  # id(MediaRef | OutputRequest) → record field
    caption_fields: dict[int, str] = field(default_factory=dict)  # id(OutputRequest) → its caption's field

    def field_of(self, turn: int, part: str = "text") -> str:
        base = self.turn_fields[turn] if turn < len(self.turn_fields) else f"turns[{turn}]"
        key = self.text_key if part == "text" else part
        return f"{base}.{key}" if key else base


Reader = Callable[[dict, ReadContext], list[Loaded]]


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _conversation(data: dict, key: str, ctx: ReadContext) -> list[tuple[Turn, dict, str]] | None:
    turns = ctx.get(data, key, list)
    if turns is None:
        return None
    out, ok = [], True
    for index, raw in enumerate(turns):
        where = f"{key}[{index}]"
        if not isinstance(raw, dict):
            ctx.problem(where, f"expected an object with 'from' and 'value', got {type(raw).__name__}")
            ok = False
            continue
        speaker, value = ctx.get(raw, "from", str, where), ctx.get(raw, "value", str, where)
        if speaker is not None and speaker not in ROLES:
            ctx.problem(f"{where}.from", f"unknown speaker {speaker!r}; use one of {sorted(ROLES)}")
            speaker = None
        if speaker is None or value is None:
            ok = False
            continue
        out.append((Turn(ROLES[speaker], value), raw, where))
    return out if ok else None


def _loaded(ctx: ReadContext, fmt: str, turns: list[tuple[Turn, dict, str]], record_id: str,
            items: dict[int, str], captions: dict[int, str] | None = None) -> list[Loaded]:
    dialogue = Dialogue([t for t, _, _ in turns], id=record_id, source=ctx.source)
    return [Loaded(dialogue, fmt, [w for _, _, w in turns], "value", items, captions or {})]


def _placeholder_to_marker(text: str, modality: str) -> tuple[str, int]:
    return re.subn(re.escape(f"<{modality}>"), OUTPUT_MARKER.format(modality=modality), text)


# ---- readers -------------------------------------------------------------------------------------------
def read_dialogue(data: dict, ctx: ReadContext) -> list[Loaded]:
    """Our schema: ``{"turns": [{"role", "text", "inputs": [{modality, path}], "outputs": [...]}], "id"}``."""
    turns_raw = ctx.get(data, "turns", list)
    if turns_raw is None:
        return []
    turns, items, before = [], {}, len(ctx.problems)
    for index, raw in enumerate(turns_raw):
        where = f"turns[{index}]"
        if not isinstance(raw, dict):
            ctx.problem(where, f"expected an object, got {type(raw).__name__}")
            continue
        role, text = ctx.get(raw, "role", str, where), ctx.get(raw, "text", str, where, required=False)
        if role is not None and role not in ("system", "user", "assistant", "tool"):
            ctx.problem(f"{where}.role", f"unknown role {role!r}; use system, user, assistant or tool")
        turn = Turn(role or "user", text or "", tool_name=raw.get("tool_name"),
                    train=_train_flag(raw, role, where, ctx))
        for kind, keys in (("inputs", ("modality", "path")), ("outputs", ("modality", "caption"))):
            for number, item in enumerate(ctx.get(raw, kind, list, where, required=False) or []):
                item_where = f"{where}.{kind}[{number}]"
                if not isinstance(item, dict):
                    ctx.problem(item_where, f"expected an object, got {type(item).__name__}")
                    continue
                values = [ctx.get(item, key, str, item_where) for key in keys]
                if None in values:
                    continue
                if kind == "inputs":
                    ref = MediaRef(values[0], ctx.resolve(values[1]))
                    turn.inputs.append(ref)
                    items[id(ref)] = item_where
                else:
                    path = ctx.get(item, "path", str, item_where, required=False)
                    ref = OutputRequest(values[0], values[1], ctx.resolve(path) if path else None,
                                        ctx.get(item, "embedding", str, item_where, required=False))
                    turn.outputs.append(ref)
                    items[id(ref)] = item_where
        turns.append(turn)
    if len(ctx.problems) > before:
        return []
    dialogue = Dialogue(turns, id=str(data.get("id", "")), source=ctx.source)
    return [Loaded(dialogue, "dialogue", [f"turns[{i}]" for i in range(len(turns))], "text", items)]


def _train_flag(raw: dict, role: str | None, where: str, ctx: ReadContext) -> bool:
    """A turn's ``train`` field (default true): false leaves an assistant turn out of the loss."""
    value = raw.get("train", True)
    if not isinstance(value, bool):
        ctx.problem(f"{where}.train", f"expected true or false, got {type(value).__name__}")
        return True
    if not value and role != "assistant":
        ctx.problem(f"{where}.train", f"only an assistant turn can be left out of the loss; this is a {role} turn "
                                      "(remove 'train')")
    return value


def read_pairs(data: dict, ctx: ReadContext) -> list[Loaded]:
    """X-caption pairs → a comprehension (stage 1) or generation (stage 2) dialogue, by ``ctx.task``."""
    names = [m for m in ctx.modalities if f"{m}_name" in data]
    if len(names) != 1:
        ctx.problem("record", f"an X-caption pair needs exactly one of {[f'{m}_name' for m in ctx.modalities]}; "
                              f"found {[f'{m}_name' for m in names]}")
        return []
    modality = names[0]
    caption, name = ctx.get(data, "caption", str), ctx.get(data, f"{modality}_name", str)
    if caption is None or name is None:
        return []
    record_id = str(data.get("id", data.get(f"{modality}_id", "")))
    if ctx.task == "comprehension":
        item = MediaRef(modality, ctx.resolve(name))
        turns = [Turn("user", f"<{modality}>\n{ctx.caption_prompt}", inputs=[item]), Turn("assistant", caption)]
        fields = ["caption_prompt", "caption"]
    else:
        item = OutputRequest(modality, caption, ctx.resolve(name))
        turns = [Turn("user", caption), Turn("assistant", OUTPUT_MARKER.format(modality=modality), outputs=[item])]
        fields = ["caption", f"{modality}_name"]
    dialogue = Dialogue(turns, id=record_id, source=ctx.source)
    return [Loaded(dialogue, "pairs", fields, "", {id(item): f"{modality}_name"}, {id(item): "caption"})]


def read_comprehension(data: dict, ctx: ReadContext) -> list[Loaded]:
    """``input_X`` (path or list) + ``conversations``; items attach to the human turns holding ``<X>``."""
    turns = _conversation(data, "conversations", ctx)
    if turns is None:
        return []
    items: dict[int, str] = {}
    for modality in ctx.modalities:
        key = f"input_{modality}" if f"input_{modality}" in data else modality  # LLaVA files say "image"
        paths = ctx.get(data, key, (str, list), required=False)
        if paths is None:
            continue
        queue = []
        for number, path in enumerate(_as_list(paths)):
            where = key + (f"[{number}]" if isinstance(paths, list) else "")
            if not isinstance(path, str):
                ctx.problem(where, f"expected a path string, got {type(path).__name__}")
                continue
            ref = MediaRef(modality, ctx.resolve(path))
            items[id(ref)] = where
            queue.append(ref)
        users = [t for t, _, _ in turns if t.role == "user"]
        holders = [t for t in users if f"<{modality}>" in t.text] or users[:1]
        if not holders and queue:
            ctx.problem(key, "no human turn to attach the input to")
        for turn in holders:
            take = max(turn.text.count(f"<{modality}>"), 1) if turn is not holders[-1] else len(queue)
            turn.inputs.extend(queue[:take])
            del queue[:take]
    return _loaded(ctx, "comprehension", turns, str(data.get("id", "")), items)


def read_generation(data: dict, ctx: ReadContext) -> list[Loaded]:
    """``output_X`` / ``X_captions`` / ``X_caption_embeddings`` + ``conversations`` (gpt ``<X>`` = the output)."""
    turns = _conversation(data, "conversations", ctx)
    if turns is None:
        return []
    items: dict[int, str] = {}
    captions_field: dict[int, str] = {}
    for modality in ctx.modalities:
        captions = ctx.get(data, f"{modality}_captions", (str, list), required=False)
        files = ctx.get(data, f"output_{modality}", (str, list), required=False)
        embeddings = ctx.get(data, f"{modality}_caption_embeddings", (str, list), required=False)
        per_turn = [t for t, raw, _ in turns if t.role == "assistant" and raw.get("output_modality") == modality]
        if captions is None and not per_turn:
            if files is not None:
                ctx.problem(f"{modality}_captions", f"missing field (output_{modality} needs its captions)")
            continue
        if captions is None:  # captions only on the gpt turns (``caption`` + ``output_modality``)
            captions = [raw.get("caption") for t, raw, _ in turns if any(t is p for p in per_turn)]
        captions, files, embeddings = (_as_list(v) if v is not None else [] for v in (captions, files, embeddings))
        requests = []
        for number, caption in enumerate(captions):
            if not isinstance(caption, str):
                ctx.problem(f"{modality}_captions[{number}]", f"expected a string, got {type(caption).__name__}")
                continue
            path = files[number] if number < len(files) and isinstance(files[number], str) else None
            embedding = embeddings[number] if number < len(embeddings) and isinstance(embeddings[number], str) else None
            request = OutputRequest(modality, caption, ctx.resolve(path) if path else None, embedding)
            items[id(request)] = f"output_{modality}" if path else f"{modality}_captions"
            captions_field[id(request)] = f"{modality}_captions"
            requests.append(request)
        _attach_outputs(turns, modality, requests, ctx)
    return _loaded(ctx, "generation", turns, str(data.get("id", "")), items, captions_field)


def _attach_outputs(turns: list[tuple[Turn, dict, str]], modality: str, requests: list[OutputRequest],
                    ctx: ReadContext) -> None:
    """Give each gpt turn that marks ``<X>`` (or names ``output_modality``) its requests in order; the last such
    turn (or the last gpt turn when none marks one) takes the rest."""
    assistants = [(t, raw) for t, raw, _ in turns if t.role == "assistant"]
    if not assistants:
        ctx.problem("conversations", f"{len(requests)} {modality} output(s) but no gpt turn to attach them to")
        return
    targets = [(t, raw) for t, raw in assistants
               if f"<{modality}>" in t.text or raw.get("output_modality") == modality] or assistants[-1:]
    for number, (turn, _) in enumerate(targets):
        turn.text, count = _placeholder_to_marker(turn.text, modality)
        take = len(requests) if number == len(targets) - 1 else max(count, 1)
        turn.outputs.extend(requests[:take])
        del requests[:take]


def read_t2m(data: dict, ctx: ReadContext) -> list[Loaded]:
    """Legacy T2M: ``conversation`` + ``mm_name``; a gpt turn's ``caption``/``output_modality`` is its output."""
    turns = _conversation(data, "conversation", ctx)
    name = ctx.get(data, "mm_name", str)
    if turns is None or name is None:
        return []
    items: dict[int, str] = {}
    captions: dict[int, str] = {}
    for turn, raw, where in turns:
        if turn.role == "user":
            modality = ctx.get(raw, "input_modality", str, where, required=False)
            if modality not in (None, "text"):
                ctx.problem(f"{where}.input_modality", f"{modality!r}: T2M records carry no input file; only "
                                                       "'text' inputs can be read")
            continue
        modality = ctx.get(raw, "output_modality", str, where, required=False)
        if modality in (None, "text"):
            continue
        if modality not in ctx.modalities:
            ctx.problem(f"{where}.output_modality", f"unknown modality {modality!r}; known: {list(ctx.modalities)}")
            continue
        caption = ctx.get(raw, "caption", str, where)
        if caption is None:
            continue
        request = OutputRequest(modality, caption, ctx.resolve(name), os.path.basename(name) + ".npy")
        turn.text, _ = _placeholder_to_marker(turn.text, modality)
        turn.outputs.append(request)
        items[id(request)] = "mm_name"
        captions[id(request)] = f"{where}.caption"
    record_id = str(data.get("id", os.path.splitext(os.path.basename(name))[0]))
    return _loaded(ctx, "t2m", turns, record_id, items, captions)


def read_mosit(data: dict, ctx: ReadContext) -> list[Loaded]:
    """MosIT raw: ``X_list`` entries matched to ``<X>caption</X>`` tags (by caption, else in order)."""
    turns = _conversation(data, "conversation", ctx)
    if turns is None:
        return []
    entries: dict[str, list[tuple[dict, str]]] = {}
    for modality in ctx.modalities:
        listed = ctx.get(data, f"{modality}_list", list, required=False) or []
        entries[modality] = []
        for number, entry in enumerate(listed):
            where = f"{modality}_list[{number}]"
            if not isinstance(entry, dict):
                ctx.problem(where, f"expected an object, got {type(entry).__name__}")
            elif ctx.get(entry, f"{modality}_name", str, where) is not None:
                entries[modality].append((entry, where))
    names = "|".join(re.escape(m) for m in ctx.modalities)
    tag = re.compile(rf"<({names})>(?:(.*?)</\1>)?", re.IGNORECASE | re.DOTALL)
    items: dict[int, str] = {}
    for turn, _, where in turns:
        def replace(match: re.Match) -> str:
            modality, text = match.group(1).lower(), (match.group(2) or "").strip()
            pool = entries[modality]
            chosen = next((e for e in pool if text and str(e[0].get("caption", "")).strip() == text),
                          pool[0] if pool else None)
            if chosen is not None:
                pool.remove(chosen)
            entry, entry_where = chosen if chosen else ({}, "")
            caption = str(entry.get("caption") or text)
            path = ctx.resolve(entry[f"{modality}_name"]) if entry else None
            if turn.role == "assistant":
                request = OutputRequest(modality, caption, path)
                turn.outputs.append(request)
                items[id(request)] = f"{entry_where}.{modality}_name" if entry else f"{where}.value"
                return OUTPUT_MARKER.format(modality=modality)
            if path is None:
                ctx.problem(f"{where}.value", f"{match.group(0)[:60]!r} has no {modality}_list entry left")
                return ""
            ref = MediaRef(modality, path)
            turn.inputs.append(ref)
            items[id(ref)] = f"{entry_where}.{modality}_name"
            return f"<{modality}>"

        turn.text = tag.sub(replace, turn.text)
    for modality, pool in entries.items():
        for _, where in pool:
            ctx.problem(where, f"not referenced by any <{modality.capitalize()}> tag in the conversation")
    return _loaded(ctx, "mosit", turns, str(data.get("id", "")), items)


def read_alpaca(data: dict, ctx: ReadContext) -> list[Loaded]:
    """Alpaca (text-only stage-3 data): ``instruction`` (+ optional ``input``) → user, ``output`` → assistant."""
    instruction, output = ctx.get(data, "instruction", str), ctx.get(data, "output", str)
    extra = ctx.get(data, "input", str, required=False)
    if instruction is None or output is None:
        return []
    question = f"{instruction}\n{extra}" if extra else instruction
    dialogue = Dialogue([Turn("user", question), Turn("assistant", output)], id=str(data.get("id", "")),
                        source=ctx.source)
    return [Loaded(dialogue, "alpaca", ["instruction", "output"], "")]


READERS: dict[str, Reader] = {
    "dialogue": read_dialogue,
    "pairs": read_pairs,
    "comprehension": read_comprehension,
    "generation": read_generation,
    "t2m": read_t2m,
    "mosit": read_mosit,
    "alpaca": read_alpaca,
}


def detect_format(data: Any, modalities: tuple[str, ...]) -> str | None:
    """The format a record is in, by its keys (None: unknown)."""
    if not isinstance(data, dict):
        return None
    keys = set(data)
    if "turns" in keys:
        return "dialogue"
    if "conversation" in keys:
        if "mm_name" in keys:
            return "t2m"
        if any(f"{m}_list" in keys for m in modalities):
            return "mosit"
    if "conversations" in keys:
        if any(k in keys for m in modalities for k in (f"input_{m}", m)):
            return "comprehension"
        if any(k in keys for m in modalities for k in (f"output_{m}", f"{m}_captions")):
            return "generation"
        return "comprehension"  # text-only instruction data (Alpaca/LLaVA style)
    if "caption" in keys and any(f"{m}_name" in keys for m in modalities):
        return "pairs"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    return None
