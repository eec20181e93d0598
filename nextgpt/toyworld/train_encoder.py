"""The toy world's frozen encoder: a small ImageBind trained from scratch (CLIP-style) to align media with captions.

``train_toy_encoder(out_dir)`` builds an :class:`nextgpt.encoders.imagebind.ImageBindEncoder` from a small architecture
(:data:`TOY_ARCHITECTURE`), switches gradients on *for this training only*, and trains image, audio and video
embeddings against the text embeddings of their captions with a symmetric InfoNCE loss: each step draws, per
modality, a batch of distinct meanings, renders each one with jitter (``render.py``), captions it with a random
phrasing and word choice (``language.py``) and runs both through the encoder's own preprocessing
(``ImageBindEncoder.preprocess``: a 32×32 rendering is upscaled to 224×224 like any picture). Training uses the
meanings and phrasings of the training split only (``split.py``), so held-out combinations stay unseen.

Beside InfoNCE, one linear head per (modality, attribute) reads both the media and the caption embedding and is
trained with cross-entropy on the true value (the heads are thrown away): the LLM downstream must read *every*
attribute off the 64-d embedding through a linear projector, and InfoNCE alone let position/direction go. The
patch stems learn 20× slower than the rest (``stem_lr_scale``: at the full rate the contents of the patch tokens
outgrow their position codes and the tower stops seeing where things are). Two initialisation changes let the
vision and audio towers see *where* things are: trunk linear layers at std
fan_in^-1/2 (ImageBind's 0.02 leaves the blocks nearly linear, and a near-uniform CLS attention over
``content + position`` codes averages position away) and position embeddings louder: 6× in the vision and audio
towers (in the audio tower the position on the mel axis is the pitch).

It writes ``encoder.safetensors`` (ImageBind parameter names) and ``encoder.json`` (the :class:`EncoderConfig`
with a relative ``path``), so ``build_encoder(config, base_dir=out_dir)`` loads a frozen encoder, and reports
(``encoder_report.json``) retrieval@1 on fresh renderings against the canonical captions of every meaning of their
modality, and per attribute — on training and on held-out meanings — linear-probe and retrieval accuracy
(:func:`evaluate_attributes`).
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from nextgpt.checkpoint import write_weights
from nextgpt.config import EncoderConfig
from nextgpt.encoders.imagebind import TINY_ARCHITECTURE

from .language import caption
from .render import SAMPLE_RATE, VIDEO_FPS, render
from .split import make_split
from .world import MODALITIES, Meaning, all_meanings, attribute_space

logger = logging.getLogger(__name__)

__all__ = ["TOY_ARCHITECTURE", "TOY_OPTIONS", "EncoderReport", "evaluate_attributes", "evaluate_retrieval",
           "toy_encoder_config", "train_toy_encoder"]

TOY_ARCHITECTURE: dict[str, Any] = {
    **TINY_ARCHITECTURE,  # 64-d, two blocks in the vision and audio towers
    "text_num_blocks": 1,
    # towers never called, kept tiny so the module layout stays ImageBindModel's
    **{f"{tower}_{key}": value for tower in ("depth", "thermal", "imu")
       for key, value in (("embed_dim", 16), ("num_blocks", 1), ("num_heads", 2))},
}
"""The default toy ImageBind: 64-d; two blocks in the vision and audio towers, one elsewhere."""

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
    probe_accuracy: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Linear probes (logistic regression per attribute, fit on fresh renderings of training meanings):
    ``{modality: {"train" | "held_out": {attribute: accuracy}}}`` on other fresh renderings."""
    retrieval_attribute_accuracy: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Per attribute, how often the top caption (of all meanings of the modality) gets it right:
    ``{modality: {"train" | "held_out": {attribute: accuracy}}}``."""

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


def _reinit_trunks(encoder: Any, seed: int) -> None:
    """Normal(0, fan_in^-1/2) weights for every linear layer of the vision and audio trunks (seeded)."""
    generator = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for key in ("vision", "audio"):
            for module in encoder.modality_trunks[key].modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.normal_(0.0, module.in_features ** -0.5, generator=generator)


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


def _info_nce(media: torch.Tensor, text: torch.Tensor, logit_scale: float = LOGIT_SCALE) -> torch.Tensor:
    logits = logit_scale * media @ text.T
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


def _embed_renderings(encoder: Any, meanings: list[Meaning], rng: np.random.Generator) -> torch.Tensor:
    """Embeddings of fresh jittered renderings of ``meanings`` (one each, in order, 32 at a time)."""
    chunks = []
    for start in range(0, len(meanings), 32):
        chunk = meanings[start:start + 32]
        modality = chunk[0].modality
        chunks.append(_embed(encoder, modality, encoder.preprocess(modality, [_media_item(m, rng) for m in chunk])))
    return torch.cat(chunks)


def _fit_probe(features: torch.Tensor, labels: torch.Tensor, classes: int,
               l2: float = 1e-3) -> Callable[[torch.Tensor], torch.Tensor]:
    """Multinomial logistic regression (L-BFGS, small L2) on standardised ``features`` → ``labels``; returns the
    logits function (standardisation included)."""
    mean, std = features.mean(dim=0), features.std(dim=0) + 1e-6
    features = (features - mean) / std
    probe = torch.nn.Linear(features.shape[1], classes)
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    optimiser = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(probe(features), labels) + l2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    return lambda x: probe((x - mean) / std)


@torch.no_grad()
def evaluate_attributes(encoder: Any, *, seed: int = 54321, modalities: tuple[str, ...] = MODALITIES,
                        fit_per_modality: int = 320, test_per_modality: int = 160
                        ) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, dict[str, float]]]]:
    """Per-attribute accuracy of the embedding of fresh renderings, on training and on held-out meanings.

    Returns ``(probe, retrieval)``, each ``{modality: {"train" | "held_out": {attribute: accuracy}}}``:

    - ``probe``: one logistic regression per attribute, fit on embeddings of ``fit_per_modality`` fresh
      renderings of training-split meanings (cycled), tested on ``test_per_modality`` other fresh renderings of
      training meanings and as many of held-out meanings (what a linear input projector can read off);
    - ``retrieval``: on the same test renderings, whether the nearest canonical caption among all meanings of the
      modality has the attribute right.
    """
    was_training = encoder.training
    encoder.eval()
    rng = np.random.default_rng(seed)
    split = make_split()
    probe_result: dict[str, dict[str, dict[str, float]]] = {}
    retrieval_result: dict[str, dict[str, dict[str, float]]] = {}
    for modality in modalities:
        space = attribute_space(modality)
        meanings = all_meanings(modality)
        texts = _embed(encoder, "text", encoder.preprocess("text", [caption(m) for m in meanings]))
        parts = {"train": split.meanings(modality, "train"), "held_out": split.meanings(modality, "eval")}

        def cycled(pool: list[Meaning], count: int) -> list[Meaning]:
            order = np.concatenate([rng.permutation(len(pool)) for _ in range(count // len(pool) + 1)])[:count]
            return [pool[int(i)] for i in order]

        fit = cycled(parts["train"], fit_per_modality)
        fit_x = _embed_renderings(encoder, fit, rng)
        tests = {part: cycled(pool, test_per_modality) for part, pool in parts.items()}
        test_x = {part: _embed_renderings(encoder, pool, rng) for part, pool in tests.items()}
        probe_result[modality] = {part: {} for part in tests}
        retrieval_result[modality] = {part: {} for part in tests}
        for attribute, values in space.items():
            index = {v: i for i, v in enumerate(values)}
            probe = _fit_probe(fit_x, torch.tensor([index[m[attribute]] for m in fit]), len(values))
            for part, pool in tests.items():
                truth = torch.tensor([index[m[attribute]] for m in pool])
                probe_result[modality][part][attribute] = float((probe(test_x[part]).argmax(1) == truth).float().mean())
                found = (test_x[part] @ texts.T).argmax(dim=1)
                retrieval_result[modality][part][attribute] = _mean(
                    meanings[int(f)][attribute] == m[attribute] for f, m in zip(found, pool))
    encoder.train(was_training)
    return probe_result, retrieval_result


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def train_toy_encoder(out_dir: str | Path, *, seed: int = 0, steps: int = 1200, batch_size: int = 32,
                      architecture: dict[str, Any] | None = None, lr: float = 2e-3,
                      modalities: tuple[str, ...] = MODALITIES, eval_per_modality: int = 100,
                      hard_negatives: float = 0.0, attribute_weight: float = 1.0,
                      logit_scale: float = LOGIT_SCALE, reinit_trunks: bool = True, position_scale: float = 6.0,
                      audio_position_scale: float = 6.0,
                      probe_renderings: int = 320, stem_lr_scale: float = 0.05) -> EncoderReport:
    """Train a toy ImageBind from scratch and save it frozen under ``out_dir``.

    Args:
        out_dir: folder for ``encoder.safetensors`` and ``encoder.json``.
        seed: seeds the initialisation, the batches and the renderings (same seed, same weights).
        steps: optimiser steps; each step has one batch per modality. Held-out shape is learnt slowest: 600 steps
            read it at 0.60 / 0.62 (image / video linear probe), 1200 at 0.88 / 0.88 (docs/toyworld.md).
        batch_size: meanings per modality per step (capped by the number of training meanings: audio has 14).
        architecture: overrides of :data:`TOY_ARCHITECTURE` (``ImageBindModel`` kwargs).
        lr: AdamW peak learning rate (cosine decay after a 5 % warm-up).
        modalities: the media modalities to align with text.
        eval_per_modality: fresh renderings per modality for the retrieval report (0: skip it).
        hard_negatives: fraction of each batch drawn as the nearest neighbours of a random anchor meaning.
        attribute_weight: weight of the auxiliary attribute loss: one linear head per (modality, attribute) reads
            the normalised media embedding *and* the caption's text embedding (the same head for both) with
            cross-entropy against the true value; the heads are thrown away after training (0: InfoNCE only).
        logit_scale: inverse temperature of the InfoNCE logits.
        reinit_trunks: re-initialise the linear layers of the vision and audio trunks with std fan_in^-1/2
            (ImageBind's std 0.02 leaves 64-d blocks almost linear, and a linear pool of patch + position codes
            cannot tell where the object is).
        position_scale: factor on the initial (learnable) position embeddings of the vision tower (ImageBind's
            are ~7× quieter than a 64-d patch token here).
        audio_position_scale: the same for the audio tower, whose position on the mel axis *is* the pitch. Too
            loud and every token is mostly its place, so the tower reads rhythm per (pitch, timbre) instead of
            from the time course alike at every height: audio only, 400 steps, held-out rhythm by linear probe
            ×40 0.33 / 0.43 / 0.67 (seeds 0–2; (middle, square, steady) heard as beeping in all three), ×15 1.00 / 1.00
            with held-out timbre 0.80 / 0.93, ×6 1.00 on seeds 0–3 with pitch 0.98–1.00 and timbre 0.98–1.00, ×1
            timbre 0.68 / 1.00 (docs/toyworld.md). ×40 was chosen on the split before this one, whose held-out
            sounds confounded rhythm with pitch.
        stem_lr_scale: factor on the learning rate of the patch stems (the vision tower's ``Conv3d`` starts at std
            0.017; Adam moves every weight by about ``lr`` per step whatever its scale, so at the full rate the
            patch contents outgrow the position codes within tens of steps and the tower goes blind to *where*:
            image position and video direction stayed at chance even when trained on them alone).
        probe_renderings: fresh renderings per modality to fit the per-attribute linear probes on (half as many
            per split to test them and the per-attribute retrieval; :func:`evaluate_attributes`); 0: skip.

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
    if reinit_trunks:
        _reinit_trunks(encoder, seed)
    with torch.no_grad():  # position codes as loud as patch contents: LayerNorm(content + position) then mixes them
        for key, scale in (("vision", position_scale), ("audio", audio_position_scale)):
            encoder.modality_preprocessors[key].pos_embedding_helper.pos_embed.mul_(scale)
    encoder.requires_grad_(True)
    encoder.train()
    parameters = [p for p in encoder.parameters() if p.requires_grad]
    stems = [p for name, p in encoder.named_parameters() if p.requires_grad and ".rgbt_stem." in name]
    others = [p for p in parameters if all(p is not stem for stem in stems)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        heads = torch.nn.ModuleDict({
            f"{modality}_{attribute}": torch.nn.Linear(config.embed_dim, len(values))
            for modality in modalities for attribute, values in attribute_space(modality).items()})
    head_scale = math.sqrt(config.embed_dim)  # unit-norm embeddings → unit-variance head inputs
    optimiser = torch.optim.AdamW([{"params": others + list(heads.parameters())},
                                   {"params": stems, "lr": lr * stem_lr_scale}], lr=lr, weight_decay=0.01)
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
                total = total + _info_nce(media, text, logit_scale)
                if attribute_weight > 0:
                    both = torch.cat([media, text]) * head_scale
                    for attribute, values in attribute_space(modality).items():
                        truth = torch.tensor([values.index(m[attribute]) for m in chosen] * 2)
                        head = heads[f"{modality}_{attribute}"]
                        total = total + attribute_weight * F.cross_entropy(head(both), truth)
            loss = total / len(modalities)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters + list(heads.parameters()), 1.0)
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
    probe, retrieval = ({}, {})
    if probe_renderings > 0:
        probe, retrieval = evaluate_attributes(encoder, seed=seed + 2_000_003, modalities=modalities,
                                               fit_per_modality=probe_renderings,
                                               test_per_modality=max(1, probe_renderings // 2))
    seconds = time.perf_counter() - started
    report = EncoderReport(overall, held, attributes, losses, seconds, steps, sum(p.numel() for p in parameters),
                           str(weights), str(out / CONFIG_FILE),
                           {"train_seconds": train_seconds, "batch_size": batch_size, "lr": lr, "seed": seed,
                            "hard_negatives": hard_negatives, "attribute_weight": attribute_weight,
                            "logit_scale": logit_scale, "reinit_trunks": reinit_trunks,
                            "position_scale": position_scale, "audio_position_scale": audio_position_scale,
                            "stem_lr_scale": stem_lr_scale,
                            "file_bytes": Path(weights).stat().st_size, "loss_first": losses[0],
                            "loss_last": losses[-1]},
                           probe, retrieval)
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
