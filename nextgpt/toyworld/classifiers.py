"""Attribute classifiers that judge media: one small network per modality with one head per attribute.

They are trained only on the world's ground-truth renderings (jittered, plus noise and brightness
augmentation; beeps with faded edges, :data:`AUDIO_FADE_SECONDS`), never on generated media, and saved as
``{modality}.safetensors`` + ``classifiers.json``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .features import AUDIO_FEATURES, features
from .render import VIDEO_FRAMES, render, render_audio
from .world import MODALITIES, Meaning, all_meanings, attribute_space

logger = logging.getLogger(__name__)

CONFIG_NAME = "classifiers.json"


def _frame_encoder(hidden: int) -> nn.Sequential:
    """``[N, 3, 32, 32]`` → ``[N, hidden]``: three convolutions (stride 1, then pooling keeps small shapes)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),  # 16×16
        nn.Conv2d(8, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # 8×8
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 8 * 8, hidden), nn.ReLU(),
    )


APPEARANCE_FRAMES = (0, 4, 7)  # video frames whose CNN features judge shape and colour (cheaper than all 8)


class AttributeClassifier(nn.Module):
    """A small network per modality + a linear head per attribute.

    Image: a CNN on ``[B, 3, 32, 32]``. Video ``[B, 24, 32, 32]`` (8 RGB frames): the image CNN on three frames
    (appearance) + an MLP over all frames at 8×8 grey (motion). Audio ``[B, 262]`` features: an MLP.
    Output: ``{attribute: logits [B, number of values]}``.
    """

    def __init__(self, modality: str, hidden: int = 64) -> None:
        super().__init__()
        self.modality = modality
        self.space = attribute_space(modality)
        if modality == "audio":
            self.backbone = nn.Sequential(nn.Linear(AUDIO_FEATURES, 128), nn.ReLU(), nn.Linear(128, hidden), nn.ReLU())
        else:
            self.backbone = _frame_encoder(hidden)
        self.motion = (nn.Sequential(nn.Flatten(), nn.Linear(VIDEO_FRAMES * 64, hidden), nn.ReLU())
                       if modality == "video" else None)
        width = 2 * hidden if self.motion is not None else hidden
        self.heads = nn.ModuleDict({name: nn.Linear(width, len(values)) for name, values in self.space.items()})

    def forward(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.motion is not None:
            frames = inputs.reshape(inputs.shape[0], VIDEO_FRAMES, 3, *inputs.shape[2:])
            appearance = self.backbone(frames[:, list(APPEARANCE_FRAMES)].flatten(0, 1))
            appearance = appearance.reshape(inputs.shape[0], len(APPEARANCE_FRAMES), -1).mean(1)
            grey = nn.functional.avg_pool2d(frames.mean(2), 4)  # [B, 8, 8, 8]
            hidden = torch.cat([appearance, self.motion(grey)], dim=-1)
        else:
            hidden = self.backbone(inputs)
        return {name: head(hidden) for name, head in self.heads.items()}


@dataclass
class TrainReport:
    modality: str
    accuracy: float  # all attributes right, on fresh jittered renderings of every combination
    per_attribute: dict[str, float]
    seconds: float


def _augment(batch: torch.Tensor, modality: str, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(batch.shape, generator=generator) * (0.03 if modality == "audio" else 0.06)
    if modality == "audio":
        return batch + noise
    gain = 0.8 + 0.4 * torch.rand((batch.shape[0],) + (1,) * (batch.dim() - 1), generator=generator)
    return (batch * gain + noise).clamp(0, 1)


AUDIO_FADE_SECONDS = 0.02
"""The judges' audio training renderings ramp each beep's edges over a random 0–20 ms (``render_audio``'s
``fade_seconds``). Judges trained on the world's hard-switched beeps only read timbre from the splatter of the switch:
they heard ground-truth beeping square tones with 10 ms fades as sines (middle and high: 0 of 10 each; all beeping
tones 70 of 90, against 90 of 90 with hard switches), and so did every beeping square the toy audio decoder made
(its vocoder plays clean partials)."""


def _rendering(modality: str, meaning: Meaning, rng: np.random.Generator, fades: bool) -> np.ndarray:
    if modality == "audio" and fades:
        return render_audio(meaning, rng, fade_seconds=float(rng.uniform(0, AUDIO_FADE_SECONDS)))
    return render(meaning, rng)


def rendered_set(modality: str, count: int, rng: np.random.Generator, *, fades: bool = False,
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``count`` jittered renderings of random combinations (all combinations, held-out ones included: the
    judges must know every meaning) as classifier inputs and per-attribute label indices; ``fades``: audio beeps
    with random faded edges (:data:`AUDIO_FADE_SECONDS`) instead of the world's hard switches."""
    meanings = all_meanings(modality)
    chosen = [meanings[i] for i in rng.integers(0, len(meanings), size=count)]
    inputs = np.stack([features(modality, _rendering(modality, m, rng, fades)) for m in chosen])
    labels = {name: torch.tensor([values.index(m[name]) for m in chosen]) for name, values in
              attribute_space(modality).items()}
    return torch.from_numpy(inputs), labels


def _accuracy(model: AttributeClassifier, inputs: torch.Tensor, labels: dict[str, torch.Tensor]) -> tuple[float, dict]:
    with torch.no_grad():
        logits = model(inputs)
    right = {name: logits[name].argmax(-1) == labels[name] for name in labels}
    every = torch.stack(list(right.values())).all(0)
    return every.float().mean().item(), {name: r.float().mean().item() for name, r in right.items()}


TRAINING = {  # renderings and epochs per modality: ≥ 98 % on fresh renderings in well under a minute each
    "image": {"train_size": 2000, "epochs": 8, "batch_size": 64},
    "audio": {"train_size": 2000, "epochs": 10, "batch_size": 64},
    "video": {"train_size": 2000, "epochs": 4, "batch_size": 64},
}


def train_classifier(modality: str, *, train_size: int | None = None, test_size: int = 600,
                     epochs: int | None = None, batch_size: int | None = None, seed: int = 0,
                     ) -> tuple[AttributeClassifier, TrainReport]:
    """Train the classifier of ``modality`` on renderings and test it on fresh ones (another seed)."""
    defaults = TRAINING[modality]
    train_size = train_size or defaults["train_size"]
    epochs = epochs or defaults["epochs"]
    batch_size = batch_size or defaults["batch_size"]
    start = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    inputs, labels = rendered_set(modality, train_size, np.random.default_rng(seed), fades=True)
    model = AttributeClassifier(modality)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    steps = epochs * ((train_size + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps)
    for _ in range(epochs):
        order = torch.randperm(train_size, generator=generator)
        for first in range(0, train_size, batch_size):
            index = order[first:first + batch_size]
            logits = model(_augment(inputs[index], modality, generator))
            loss = sum(nn.functional.cross_entropy(logits[n], labels[n][index]) for n in labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    test_inputs, test_labels = rendered_set(modality, test_size, np.random.default_rng(seed + 1000))
    accuracy, per_attribute = _accuracy(model, test_inputs, test_labels)
    report = TrainReport(modality, accuracy, per_attribute, time.perf_counter() - start)
    logger.info("%s classifier: accuracy %.4f on %d fresh renderings (%.1f s)", modality, accuracy, test_size,
                report.seconds)
    return model, report


class AttributeClassifiers:
    """The judges of every modality: ``predict(modality, items)`` → one ``{attribute: value}`` per item."""

    def __init__(self, models: dict[str, AttributeClassifier], reports: dict[str, dict] | None = None) -> None:
        self.models = models
        self.reports = reports or {}

    @classmethod
    def train(cls, modalities: Sequence[str] = MODALITIES, seed: int = 0, **kwargs) -> "AttributeClassifiers":
        models, reports = {}, {}
        for modality in modalities:
            models[modality], report = train_classifier(modality, seed=seed, **kwargs)
            reports[modality] = {"accuracy": report.accuracy, "per_attribute": report.per_attribute,
                                 "seconds": round(report.seconds, 2)}
        return cls(models, reports)

    def predict(self, modality: str, items: Sequence[np.ndarray], rates: Sequence[int | None] | None = None
                ) -> list[dict[str, str]]:
        """Attributes of each media array (any size; ``rates``: audio sample rates)."""
        if modality not in self.models:
            raise KeyError(f"no classifier for {modality!r}; available: {sorted(self.models)}")
        if not items:
            return []
        rates = rates or [None] * len(items)
        model = self.models[modality]
        batch = torch.from_numpy(np.stack([features(modality, x, r) for x, r in zip(items, rates)]))
        with torch.no_grad():
            logits = model(batch)
        choices = {name: logits[name].argmax(-1).tolist() for name in model.space}
        return [{name: model.space[name][choices[name][i]] for name in model.space} for i in range(len(items))]

    def predict_meaning(self, modality: str, item: np.ndarray, rate: int | None = None) -> Meaning:
        return Meaning.of(modality, self.predict(modality, [item], [rate])[0])

    def save(self, out_dir: str | Path) -> Path:
        from nextgpt.checkpoint import write_weights

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for modality, model in self.models.items():
            write_weights({k: v.contiguous() for k, v in model.state_dict().items()}, out / f"{modality}.safetensors")
        config = {"modalities": {m: {"attributes": {k: list(v) for k, v in attribute_space(m).items()},
                                     **self.reports.get(m, {})} for m in self.models}}
        (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, path: str | Path) -> "AttributeClassifiers":
        """Load from a folder written by ``save``.

        Raises:
            FileNotFoundError: when the folder has no classifiers.json (run `nextgpt toyworld classifiers`).
            ValueError: when the saved attribute values differ from this version of the world.
        """
        from safetensors.torch import load_file

        folder = Path(path)
        if not (folder / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{folder} has no {CONFIG_NAME}; train the judges with "
                                    f"`nextgpt toyworld classifiers --out {folder}`")
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        models, reports = {}, {}
        for modality, entry in config["modalities"].items():
            expected = {k: list(v) for k, v in attribute_space(modality).items()}
            if entry["attributes"] != expected:
                raise ValueError(f"the {modality} classifier in {folder} was trained on attributes "
                                 f"{entry['attributes']}, but the world has {expected}; retrain it")
            model = AttributeClassifier(modality)
            model.load_state_dict(load_file(folder / f"{modality}.safetensors"))
            models[modality] = model.eval()
            reports[modality] = {k: v for k, v in entry.items() if k != "attributes"}
        return cls(models, reports)
