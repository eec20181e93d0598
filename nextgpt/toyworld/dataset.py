"""``build_dataset``: the toy world's training files, held-out evaluation files and media, plus a manifest.

Layout of ``out_dir`` (every data file is JSONL of ``Dialogue.to_dict()``; media paths are relative to it)::

    manifest.json               seed, sizes, split, counts per file
    media/{image,audio,video}/  ground-truth renderings (PNG, 16 kHz WAV, 8-frame MP4)
    train_comprehension.jsonl   stage 1: X → caption pairs
    train_generation.jsonl      stage 2: caption → X pairs
    train_instructions.jsonl    stage 3, T2M-style: text → X, X → text, X → Y (the cross-modal rule)
    train_dialogues.jsonl       stage 3, MosIT-style multi-turn dialogues that switch modalities
    train_tools.jsonl           stage 3: tool-call dialogues in the agent's format (``tool_retries`` of them
                                with a failed call and its retry)
    eval_{captioning,generation,conversion,dialogues,tools,tool_retries}.jsonl   held-out combinations and phrasings
    targets.jsonl          {"id", "file", "kind", "checks"} per eval dialogue (what a right answer is)

``build_validation`` writes the same eval files from the *training* combinations and phrasings instead: a
validation set for choosing recipes without reading the held-out split.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .dialogues import Builder, Example, check_to_dict
from .render import SAMPLE_RATE, VIDEO_FPS, render
from .split import Split, make_split
from .world import MODALITIES, Meaning, convert, sample

logger = logging.getLogger(__name__)

EXTENSIONS = {"image": ".png", "audio": ".wav", "video": ".mp4"}
EVAL_FILES = ("captioning", "generation", "conversion", "dialogues", "tools", "tool_retries")
WORLD_VERSION = "nextgpt-toyworld-v2"
"""Written into every manifest; a build reuses a world folder only of this version. v2: the training tool
dialogues are a third of each modality (v1 drew them from all meanings at once: mostly pictures)."""
TOOL_DRAWS = ("each_modality", "all_meanings")
"""How tool dialogues draw their meanings: a third of each modality (the world's files since v2), or from all the
training meanings at once (v1's mix, mostly pictures: the text the shipped toy LLM learnt from, ``train_llm.py``)."""


@dataclass(frozen=True)
class DatasetSizes:
    """How many dialogues to write: ``pairs`` per modality and stage; the rest in total (``eval`` per modality and
    eval file). ``tool_retries``: tool dialogues with a failed call and its retry, added to train_tools.jsonl."""

    pairs: int
    instructions: int
    dialogues: int
    tools: int
    eval: int
    tool_retries: int = 0


SIZES = {
    "small": DatasetSizes(pairs=40, instructions=90, dialogues=30, tools=15, eval=10, tool_retries=5),
    "full": DatasetSizes(pairs=2000, instructions=6000, dialogues=2000, tools=600, eval=100, tool_retries=200),
}


def get_sizes(name: str) -> DatasetSizes:
    if name not in SIZES:
        raise KeyError(f"unknown toy-world dataset size {name!r}; available: {list(SIZES)}")
    return SIZES[name]


class MediaFiles:
    """Renders meanings (jittered by ``rng``) to numbered files under ``out_dir/media``; returns relative paths."""

    def __init__(self, out_dir: Path, rng: np.random.Generator) -> None:
        from nextgpt.decoders.media_io import write_audio, write_image, write_video

        self.out_dir, self.rng = out_dir, rng
        self.count = dict.fromkeys(MODALITIES, 0)
        self.writers = {"image": write_image, "audio": lambda a, p: write_audio(a, SAMPLE_RATE, p),
                        "video": lambda v, p: write_video(v, VIDEO_FPS, p)}

    def __call__(self, meaning: Meaning) -> str:
        modality = meaning.modality
        relative = f"media/{modality}/{self.count[modality]:06d}{EXTENSIONS[modality]}"
        self.count[modality] += 1
        self.writers[modality](render(meaning, self.rng), self.out_dir / relative)
        return relative


def conversion_sources(split: Split, part: str) -> list[tuple[Meaning, str]]:
    """(source meaning, target modality) pairs of ``part``: eval pairs touch a held-out combination on either
    side; training pairs touch none."""
    pairs = []
    for source in MODALITIES:
        for meaning in split.meanings(source, "train") + split.meanings(source, "eval"):
            for target in MODALITIES:
                converted = convert(meaning, target)
                if converted is None:
                    continue
                held = split.is_held_out(meaning) or split.is_held_out(converted)
                if held == (part == "eval"):
                    pairs.append((meaning, target))
    return pairs


def _examples(builder: Builder, split: Split, part: str, sizes: DatasetSizes, *,
              eval_style: bool | None = None, tool_draw: str = "each_modality") -> dict[str, list[Example]]:
    """The example groups of ``part``'s meanings: the training files, or (``eval_style``, the default for the eval
    part) the evaluation files with ``sizes.eval`` items per modality — for the training part, the validation set.
    ``tool_draw`` (one of :data:`TOOL_DRAWS`) is how the training tool dialogues draw their meanings."""
    if tool_draw not in TOOL_DRAWS:
        raise ValueError(f"tool_draw must be one of {TOOL_DRAWS}; got {tool_draw!r}")
    rng = builder.rng
    eval_style = part == "eval" if eval_style is None else eval_style
    pools = {m: split.meanings(m, part) for m in MODALITIES}
    conversions = conversion_sources(split, part)
    by_source: dict[str, list[str]] = {}
    for meaning, target in conversions:
        by_source.setdefault(meaning.key, []).append(target)

    def targets(meaning: Meaning) -> list[str]:
        return by_source.get(meaning.key, [])

    def draw(pool: list, count: int) -> list:
        return sample(pool, count, rng)

    def each_modality(count: int) -> list[Meaning]:
        """``count`` meanings, a third (±1) of them of each modality, as the eval files ask of each: drawn from
        all the meanings at once, 15 training sounds against 170 pictures left a trained planner 9 sound
        generations and 26 sound descriptions in 800 tool dialogues (docs/toyworld.md, "The data files")."""
        shares = [count // len(MODALITIES) + (i < count % len(MODALITIES)) for i in range(len(MODALITIES))]
        return [m for mod, share in zip(MODALITIES, shares) for m in draw(pools[mod], share)]

    def all_meanings(count: int) -> list[Meaning]:
        return draw([m for mod in MODALITIES for m in pools[mod]], count)

    tool_meanings = each_modality if tool_draw == "each_modality" else all_meanings
    if eval_style:
        return {
            "captioning": [builder.captioning(m) for mod in MODALITIES for m in draw(pools[mod], sizes.eval)],
            "generation": [builder.generation(m) for mod in MODALITIES for m in draw(pools[mod], sizes.eval)],
            "conversion": [builder.conversion(m, t) for m, t in draw(conversions, sizes.eval * len(MODALITIES))],
            "dialogues": [builder.multiturn(pools, targets, int(rng.integers(2, 5)))
                          for _ in range(sizes.eval * len(MODALITIES))],
            # last, so the files above stay what they were before tool calls were evaluated
            "tools": [builder.tool_use(m, targets(m)) for mod in MODALITIES for m in draw(pools[mod], sizes.eval)],
            "tool_retries": [builder.tool_use(m, targets(m), retry=True) for mod in MODALITIES
                             for m in draw(pools[mod], sizes.eval)],
        }
    instructions = []
    for _ in range(sizes.instructions):
        kind = ["generation", "captioning", "conversion"][int(rng.integers(3))]
        if kind == "conversion":
            meaning, target = conversions[int(rng.integers(len(conversions)))]
            instructions.append(builder.conversion(meaning, target))
        else:
            meaning = draw(pools[MODALITIES[int(rng.integers(len(MODALITIES)))]], 1)[0]
            instructions.append(getattr(builder, kind)(meaning))
    return {
        "comprehension": [builder.pair(m, "comprehension") for mod in MODALITIES
                          for m in draw(pools[mod], sizes.pairs)],
        "generation": [builder.pair(m, "generation") for mod in MODALITIES for m in draw(pools[mod], sizes.pairs)],
        "instructions": instructions,
        "dialogues": [builder.multiturn(pools, targets, int(rng.integers(2, 5))) for _ in range(sizes.dialogues)],
        "tools": [builder.tool_use(m, targets(m)) for m in tool_meanings(sizes.tools)]
        + [builder.tool_use(m, targets(m), retry=True) for m in tool_meanings(sizes.tool_retries)],
    }


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:  # written whole, then renamed
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


def build_dataset(out_dir: str | Path, seed: int = 0, sizes: DatasetSizes | str = "small",
                  split: Split | None = None) -> dict:
    """Write the toy world's datasets to ``out_dir`` (layout in the module docstring); deterministic in ``seed``.

    Args:
        out_dir: folder to write (created; existing files of the same names are replaced).
        seed: seeds every draw and every rendering jitter.
        sizes: a ``DatasetSizes`` or the name of one (``small``, ``full``).
        split: the held-out split (default: the project's one, ``make_split()``).

    Returns:
        The manifest (also written as ``manifest.json``).
    """
    sizes = get_sizes(sizes) if isinstance(sizes, str) else sizes
    split = split or make_split()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    media = MediaFiles(out, rng)
    counts: dict[str, int] = {}
    targets: list[dict] = []
    for part in ("train", "eval"):
        groups = _examples(Builder(split, part, media, rng), split, part, sizes)
        counts.update(_write_groups(out, part, groups, targets if part == "eval" else None))
    _write_jsonl(out / "targets.jsonl", targets)
    manifest = {"world": WORLD_VERSION, "seed": seed, "sizes": asdict(sizes), "split": split.to_dict(),
                "files": counts, "media": dict(media.count)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    logger.info("toy world written to %s: %s", out, counts)
    return manifest


def _write_groups(out: Path, part: str, groups: dict[str, list[Example]], targets: list[dict] | None,
                  file_part: str | None = None) -> dict[str, int]:
    """Write each group as ``{file_part or part}_{name}.jsonl`` (dialogue ids ``{part}-{name}-000000``); with
    ``targets``, append what a right answer is for each dialogue. Returns the row count per file."""
    counts = {}
    for name, examples in tqdm(groups.items(), desc=f"toy world {part}", disable=None):
        file = f"{file_part or part}_{name}.jsonl"
        rows = []
        for index, example in enumerate(examples):
            example.dialogue.id = f"{part}-{name}-{index:06d}"
            rows.append(example.dialogue.to_dict())
            if targets is not None:
                targets.append({"id": example.dialogue.id, "file": file, "kind": example.kind,
                                "checks": [check_to_dict(c) for c in example.checks]})
        _write_jsonl(out / file, rows)
        counts[file] = len(rows)
    return counts


VALIDATION_SEED = 1_000_003
"""The default seed of :func:`build_validation`: not a seed a training world is built with (0 is the recipe's)."""


def build_validation(out_dir: str | Path, seed: int = VALIDATION_SEED, per_modality: int = 100,
                     split: Split | None = None) -> dict:
    """Write a **validation set**: evaluation files of the toy world drawn from its *training* combinations and
    *trained* phrasings (fresh renderings and draws, ``seed``), laid out like a world's held-out files
    (``eval_*.jsonl``, ``targets.jsonl``, ``media/``, ``manifest.json`` with ``"part": "validation"``), so
    ``nextgpt eval toyworld --data OUT`` evaluates a checkpoint on it unchanged.

    What it is for: choosing between recipes (seeds, losses, data mixes) without reading the held-out split, which
    then measures the chosen one once. It measures how well a model does what it was trained on — routing,
    captioning, tool calls on familiar combinations — not composition: a miss here is a miss on the training
    distribution itself. Nothing held out appears in it (tested).

    Args:
        out_dir: folder to write (created).
        seed: seeds every draw and rendering; keep it apart from the training world's seed.
        per_modality: items per modality and file (captioning, generation, tools, tool_retries); conversion and
            dialogue files have 3× as many, as in the eval files.
        split: the split (default: the project's one).

    Raises:
        ValueError: ``per_modality`` < 1.
    """
    if per_modality < 1:
        raise ValueError(f"per_modality must be at least 1 item per modality, got {per_modality}")
    split = split or make_split()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    media = MediaFiles(out, rng)
    sizes = DatasetSizes(pairs=0, instructions=0, dialogues=0, tools=0, eval=per_modality)
    groups = _examples(Builder(split, "train", media, rng), split, "train", sizes, eval_style=True)
    targets: list[dict] = []
    counts = _write_groups(out, "validation", groups, targets, file_part="eval")
    _write_jsonl(out / "targets.jsonl", targets)
    manifest = {"world": WORLD_VERSION, "part": "validation", "seed": seed, "per_modality": per_modality,
                "split": split.to_dict(), "files": counts, "media": dict(media.count)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    logger.info("toy-world validation set written to %s: %s", out, counts)
    return manifest
