"""The toy world's frozen encoder: a small ImageBind trained from scratch (CLIP-style) to align media with captions.

``train_toy_encoder(out_dir)`` builds an :class:`nextgpt.encoders.imagebind.ImageBindEncoder` from a small architecture
(:data:`TOY_ARCHITECTURE`), switches gradients on *for this training only*, and trains image, audio and video
embeddings against the text embeddings of their captions with a symmetric InfoNCE loss: each step draws, per
modality, a batch of distinct meanings, renders each one with jitter (``render.py``), captions it with a random
phrasing and word choice (``language.py``) and runs both through the encoder's own preprocessing
(``ImageBindEncoder.preprocess``: a 32×32 rendering is upscaled to 224×224 like any picture). Training uses the
meanings and phrasings of the training split only (``split.py``), so held-out combinations stay unseen.

It writes ``encoder.safetensors`` (ImageBind parameter names) and ``encoder.json`` (the :class:`EncoderConfig`
with a relative ``path``), so ``build_encoder(config, base_dir=out_dir)`` loads a frozen encoder, and reports
retrieval@1 on fresh renderings: each rendering against the canonical captions of every meaning of its modality.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nextgpt.checkpoint import write_weights
from nextgpt.config import EncoderConfig

from .language import caption
from .render import SAMPLE_RATE, VIDEO_FPS, render
from .split import make_split
from .world import MODALITIES, Meaning, all_meanings

logger = logging.getLogger(__name__)

__all__ = ["TOY_ARCHITECTURE", "TOY_OPTIONS", "EncoderReport", "evaluate_retrieval", "toy_encoder_config",
           "train_toy_encoder"]

TOY_ARCHITECTURE: dict[str, Any] = {
    "out_embed_dim": 64,
    "vision_embed_dim": 64,
    "vision_num_blocks": 1,
    "vision_num_heads": 4,
    "audio_embed_dim": 64,
    "audio_num_blocks": 1,
    "audio_num_heads": 4,
    "text_embed_dim": 64,
    "text_num_blocks": 1,
    "text_num_heads": 4,
    # towers never called, kept tiny so the module layout stays ImageBindModel's
    "depth_embed_dim": 16,
    "depth_num_blocks": 1,
    "depth_num_heads": 2,
    "thermal_embed_dim": 16,
    "thermal_num_blocks": 1,
    "thermal_num_heads": 2,
    "imu_embed_dim": 16,
    "imu_num_blocks": 1,
    "imu_num_heads": 2,
}
"""The default toy ImageBind: 64-d, one block per tower."""

TOY_OPTIONS: dict[str, Any] = {"audio_clips": 1, "video_clips": 1, "video_crops": 1,
                               "video_array_fps": float(VIDEO_FPS)}
"""Preprocessing: one view per item (a 1 s sound is one clip; an 8-frame video one clip, its first and last
frames — enough to see the direction)."""

ENCODER_FILE = "encoder.safetensors"
CONFIG_FILE = "encoder.json"
LOGIT_SCALE = 1 / 0.07  # CLIP's initial temperature, kept fixed


@dataclass
class EncoderReport:
    """What :func:`train_toy_encoder` did: retrieval@1 per modality (all meanings / held-out meanings only), the
    mean fraction of attributes right in the retrieved caption, the loss curve (mean over modalities, every step),
    wall time and the files written."""

    retrieval_at_1: dict[str, float]
    retrieval_at_1_held_out: dict[str, float]
    attribute_accuracy: dict[str, float]
    losses: list[float]
    seconds: float
    steps: int
    parameters: int
    weights: str
    config: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def toy_encoder_config(architecture: dict[str, Any] | None = None, path: str | None = None) -> EncoderConfig:
    """The :class:`EncoderConfig` of a toy ImageBind (``architecture`` overrides :data:`TOY_ARCHITECTURE`)."""
    arch = {**TOY_ARCHITECTURE, **(architecture or {})}
    return EncoderConfig(kind="imagebind", path=path, architecture=arch, embed_dim=arch["out_embed_dim"],
                         options=dict(TOY_OPTIONS))


def _media_item(meaning: Meaning, rng: np.random.Generator | None) -> Any:
    """A rendering in the form ``ImageBindEncoder.preprocess`` reads (arrays; audio as ``(wave, rate)``)."""
    media = render(meaning, rng)
    return (media, SAMPLE_RATE) if meaning.modality == "audio" else media


def _embed(encoder: Any, modality: str, inputs: torch.Tensor) -> torch.Tensor:
    """``ImageBindEncoder.forward_preprocessed`` with gradients (that method runs under ``no_grad``)."""
    from nextgpt.encoders.imagebind import _MODALITIES

    key, view_ndim = _MODALITIES[modality]
    if inputs.ndim == view_ndim + 1:
        inputs = inputs.unsqueeze(1)
    batch, views = inputs.shape[:2]
    tokens = encoder.modality_preprocessors[key](**{key: inputs.flatten(0, 1)})
    hidden = encoder.modality_trunks[key](**tokens["trunk"])
    pooled = F.normalize(encoder.modality_heads[key](hidden, **tokens["head"]), dim=-1)
    return F.normalize(pooled.view(batch, views, -1).mean(dim=1), dim=-1)


def _draw_batch(pool: list[Meaning], size: int, rng: np.random.Generator, hard: float) -> list[Meaning]:
    """``size`` distinct meanings: a fraction ``hard`` are the nearest neighbours of a random anchor (most
    attributes shared: hard negatives that differ in one attribute), the rest drawn at random."""
    order = rng.permutation(len(pool))
    if hard <= 0 or size >= len(pool):
        return [pool[int(i)] for i in order[:size]]
    anchor = pool[int(order[0])]
    shared = np.array([sum(m[a] == v for a, v in anchor.attributes.items()) for m in pool]) + rng.random(len(pool))
    near = [int(i) for i in np.argsort(-shared)[: round(hard * size)]]
    taken = set(near)
    rest = [int(i) for i in order if int(i) not in taken][: size - len(near)]
    return [pool[i] for i in near + rest]


def _info_nce(media: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    logits = LOGIT_SCALE * media @ text.T
    labels = torch.arange(len(media))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


@torch.no_grad()
def evaluate_retrieval(encoder: Any, *, seed: int = 12345, per_modality: int = 100,
                       modalities: tuple[str, ...] = MODALITIES
                       ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Retrieval@1 of fresh jittered renderings against the canonical captions (phrasing 0, first words) of all
    meanings of their modality; returns, per modality: retrieval@1 over all meanings, retrieval@1 on held-out
    meanings only, and the mean fraction of attributes the top caption gets right (all meanings).

    ``per_modality`` renderings are drawn uniformly over all meanings (every held-out meaning is added once more
    so the held-out figure is never empty).
    """
    was_training = encoder.training
    encoder.eval()
    rng = np.random.default_rng(seed)
    split = make_split()
    overall, held, attributes = {}, {}, {}
    for modality in modalities:
        meanings = all_meanings(modality)
        texts = _embed(encoder, "text", encoder.preprocess("text", [caption(m) for m in meanings]))
        picks = [meanings[int(i)] for i in rng.integers(len(meanings), size=per_modality)]
        picks += split.meanings(modality, "eval")
        right, right_held, count_held, attribute_hits = 0, 0, 0, 0.0
        for start in range(0, len(picks), 32):
            chunk = picks[start:start + 32]
            inputs = encoder.preprocess(modality, [_media_item(m, rng) for m in chunk])
            best = (_embed(encoder, modality, inputs) @ texts.T).argmax(dim=1)
            for offset, meaning in enumerate(chunk):
                found = meanings[int(best[offset])]
                hit = found.key == meaning.key
                if start + offset < per_modality:
                    right += hit
                    attribute_hits += _mean(found[a] == v for a, v in meaning.attributes.items())
                if split.is_held_out(meaning):
                    right_held += hit
                    count_held += 1
        overall[modality] = right / per_modality
        held[modality] = right_held / max(count_held, 1)
        attributes[modality] = attribute_hits / per_modality
    encoder.train(was_training)
    return overall, held, attributes


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def train_toy_encoder(out_dir: str | Path, *, seed: int = 0, steps: int = 300, batch_size: int = 32,
                      architecture: dict[str, Any] | None = None, lr: float = 2e-3,
                      modalities: tuple[str, ...] = MODALITIES, eval_per_modality: int = 100,
                      hard_negatives: float = 0.0) -> EncoderReport:
    """Train a toy ImageBind from scratch and save it frozen under ``out_dir``.

    Args:
        out_dir: folder for ``encoder.safetensors`` and ``encoder.json``.
        seed: seeds the initialisation, the batches and the renderings (same seed, same weights).
        steps: optimiser steps; each step has one batch per modality.
        batch_size: meanings per modality per step (capped by the number of training meanings: audio has 14).
        architecture: overrides of :data:`TOY_ARCHITECTURE` (``ImageBindModel`` kwargs).
        lr: AdamW peak learning rate (cosine decay after a 5 % warm-up).
        modalities: the media modalities to align with text.
        eval_per_modality: fresh renderings per modality for the retrieval report (0: skip it).
        hard_negatives: fraction of each batch drawn as the nearest neighbours of a random anchor meaning.

    Raises:
        ValueError: for a non-positive ``steps``/``batch_size``, an unknown modality or a bad architecture.
    """
    from nextgpt.encoders import build_encoder

    if steps <= 0 or batch_size <= 1:
        raise ValueError(f"steps must be > 0 and batch_size > 1, got steps={steps}, batch_size={batch_size}")
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {list(modalities)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config = toy_encoder_config(architecture)
    encoder = build_encoder(config, allow_random_init=True, seed=seed)
    encoder.requires_grad_(True)
    encoder.train()
    parameters = [p for p in encoder.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    split = make_split()
    pools = {m: split.meanings(m, "train") for m in modalities}
    phrasings = {m: split.phrasings(m, "train") for m in modalities}
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in range(steps):
            total = torch.zeros(())
            for modality in modalities:
                pool = pools[modality]
                chosen = _draw_batch(pool, batch_size, rng, hard_negatives)
                texts = [caption(m, phrasings[modality][int(rng.integers(len(phrasings[modality])))], rng)
                         for m in chosen]
                media = _embed(encoder, modality, encoder.preprocess(modality, [_media_item(m, rng) for m in chosen]))
                text = _embed(encoder, "text", encoder.preprocess("text", texts))
                total = total + _info_nce(media, text)
            loss = total / len(modalities)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            if step % 25 == 0 or step == steps - 1:
                logger.info("encoder step %d/%d: loss %.4f (%.0f s)", step + 1, steps, losses[-1],
                            time.perf_counter() - started)
    train_seconds = time.perf_counter() - started
    encoder.requires_grad_(False)
    encoder.eval()
    weights = write_weights({k: v.detach().contiguous() for k, v in encoder.state_dict().items()}, out / ENCODER_FILE)
    saved = toy_encoder_config(architecture, path=ENCODER_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(saved.model_dump(mode="json"), indent=2) + "\n")
    overall, held, attributes = ({}, {}, {})
    if eval_per_modality > 0:
        overall, held, attributes = evaluate_retrieval(encoder, seed=seed + 1_000_003, per_modality=eval_per_modality,
                                           modalities=modalities)
    seconds = time.perf_counter() - started
    report = EncoderReport(overall, held, attributes, losses, seconds, steps, sum(p.numel() for p in parameters),
                           str(weights), str(out / CONFIG_FILE),
                           {"train_seconds": train_seconds, "batch_size": batch_size, "lr": lr, "seed": seed,
                            "hard_negatives": hard_negatives})
    (out / "encoder_report.json").write_text(json.dumps({k: v for k, v in report.to_dict().items()
                                                         if k != "losses"}, indent=2) + "\n")
    logger.info("toy encoder: retrieval@1 %s (held-out %s), %.0f s", overall, held, seconds)
    return report


def load_toy_encoder_config(out_dir: str | Path) -> EncoderConfig:
    """The :class:`EncoderConfig` saved by :func:`train_toy_encoder` (``path`` relative to ``out_dir``).

    Raises:
        FileNotFoundError: when ``out_dir`` holds no ``encoder.json``.
    """
    path = Path(out_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train the toy encoder first (nextgpt toyworld-train encoder)")
    return EncoderConfig(**json.loads(path.read_text()))
