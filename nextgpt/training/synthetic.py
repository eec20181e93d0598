"""Tiny synthetic X-caption and instruction data (coloured shapes, tones) for tests, benchmarks and docs.

Each example's caption is determined by its media, so the stage losses can fall on a few CPU steps.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 230), "yellow": (230, 220, 40)}
TONES = {"low": 220.0, "high": 880.0}


def write_images(folder: Path, size: int = 32) -> dict[str, str]:
    """One PNG per colour; returns caption → relative path."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, rgb in COLOURS.items():
        array = np.zeros((size, size, 3), dtype=np.uint8)
        array[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = rgb
        Image.fromarray(array).save(folder / f"{name}.png")
        out[f"a {name} square"] = f"{folder.name}/{name}.png"
    return out


def write_tones(folder: Path, seconds: float = 1.0, rate: int = 16000) -> dict[str, str]:
    """One WAV per tone; returns caption → relative path."""
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    t = np.arange(int(seconds * rate)) / rate
    for name, hz in TONES.items():
        soundfile.write(folder / f"{name}.wav", (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate)
        out[f"a {name} beep"] = f"{folder.name}/{name}.wav"
    return out


def caption_pairs(folder: Path, modality: str = "image", repeat: int = 2) -> Path:
    """Stage-1 data: ``<modality>`` + "describe it" → the caption."""
    media = write_images(folder / "media") if modality == "image" else write_tones(folder / "media")
    lines = [{"turns": [{"role": "user", "text": f"<{modality}> describe it",
                         "inputs": [{"modality": modality, "path": path}]},
                        {"role": "assistant", "text": caption}]}
             for _ in range(repeat) for caption, path in media.items()]
    return _write(folder / f"{modality}_captions.jsonl", lines)


def generation_pairs(folder: Path, modality: str = "image", repeat: int = 2) -> Path:
    """Stage-2 data: a caption → the signal tokens of ``modality``, aligned to that caption."""
    captions = list(COLOURS) if modality != "audio" else list(TONES)
    noun = {"image": "square", "video": "clip", "audio": "beep"}.get(modality, "thing")
    lines = [{"turns": [{"role": "user", "text": f"make a {name} {noun}"},
                        {"role": "assistant", "text": f"<output:{modality}>",
                         "outputs": [{"modality": modality, "caption": f"a {name} {noun}"}]}]}
             for _ in range(repeat) for name in captions]
    return _write(folder / f"{modality}_generation.jsonl", lines)


def instruction_dialogues(folder: Path, repeat: int = 2) -> Path:
    """Stage-3 data: mixed modalities in and out within one file (so batches mix them)."""
    images = write_images(folder / "media")
    lines = []
    for _ in range(repeat):
        for caption, path in images.items():
            colour = caption.split()[1]
            lines.append({"turns": [
                {"role": "user", "text": "<image> what is this?", "inputs": [{"modality": "image", "path": path}]},
                {"role": "assistant", "text": f"It is {caption}."},
                {"role": "user", "text": "make a sound for it"},
                {"role": "assistant", "text": "Here it is: <output:audio>",
                 "outputs": [{"modality": "audio", "caption": f"a {colour} beep"}]}]})
            lines.append({"turns": [
                {"role": "user", "text": f"draw {caption}"},
                {"role": "assistant", "text": "Sure. <output:image>",
                 "outputs": [{"modality": "image", "caption": caption}]}]})
    return _write(folder / "instructions.jsonl", lines)


def _write(path: Path, lines: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def language_texts() -> list[str]:
    """Plain dialogues in the synthetic vocabulary (what a pretrained LLM would already know); the word that
    stage 1 replaces by a media item sits where the tiny preset puts it (between the wrap strings)."""
    texts = []
    for colour in COLOURS:
        texts.append(f"### Human: <Img> {colour}</Img> describe it\n### Assistant: a {colour} square\n###")
        texts.append(f"### Human: draw a {colour} square\n### Assistant: Sure.\n###")
        texts.append(f"### Human: make a {colour} square\n### Assistant: a {colour} square\n###")
    for tone in TONES:
        texts.append(f"### Human: <Aud> {tone}</Aud> describe it\n### Assistant: a {tone} beep\n###")
    return texts


def pretrained_tiny(folder: Path, steps: int = 150, seed: int = 0, lr: float = 3e-3) -> Path:
    """Stand-in for a pretrained base LLM: the ``tiny`` preset whose LLM was trained on ``language_texts``.

    A random LLM cannot be taught captions through its projectors alone (its frozen head gives near-uniform
    logits); a real stage 1 starts from a pretrained LLM, and so do the stage tests. At lr 1e-2 the full-batch
    training oscillated (loss 0.41–0.43 from step 75 on) and on an AVX-512 machine left an LLM that stage 1 could
    not teach (loss 0.28 → 0.26 in 60 steps, 0.18 at best); at 3e-3 stage 1 then goes 0.56 → 0.02.

    Returns:
        ``folder``, a ``save_pretrained`` folder.
    """
    import torch

    from nextgpt.pipeline import NextGPT

    torch.manual_seed(seed)
    pipe = NextGPT.from_preset("tiny", seed=seed)
    llm, tokenizer = pipe.model.llm, pipe.model.tokenizer
    batch = tokenizer(language_texts(), return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(llm.parameters(), lr=lr)
    llm.train()
    for _ in range(steps):
        loss = llm(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    llm.eval()
    pipe.save_pretrained(folder)
    return folder
