"""Train the toy world's frozen decoders from scratch on CPU: a tiny VAE, then a text-conditioned UNet.

One loop serves every supported modality; what differs per modality is data in ``SPECS`` (the pipeline kind, its
tiny architecture, the media layout and default generation options). Per decoder:

1. the VAE (the tiny 2-level ``AutoencoderKL``) learns to reconstruct jittered renderings (MSE + a small KL), and
   its ``scaling_factor`` is set so latents have unit variance;
2. the UNet learns the standard ε-prediction loss on the latents of jittered renderings, conditioned on the
   pipeline's own (frozen, randomly initialised) text encoder output for a training caption of the rendering —
   10 % of the captions are replaced by the empty prompt so classifier-free guidance works;
3. the pipeline is saved with ``save_pretrained`` (safetensors, a DDIM scheduler), and generations from held-out
   meanings and phrasings are scored by the attribute judges.

Audio (AudioLDM) is not supported yet: its VAE works on mel spectrograms and the judges need a vocoder that
keeps pitch and timbre, which the tiny HiFi-GAN cannot learn in minutes (see docs/toyworld.md, "Decoders").
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nextgpt.config import DecoderConfig

from .language import caption
from .render import VIDEO_FPS, VIDEO_FRAMES, render
from .split import make_split
from .world import Meaning, attribute_space

logger = logging.getLogger(__name__)

CONDITION_TOKENS = 24
"""Prompt length of the toy decoders: every toy caption fits (checked at training time)."""

TOY_VAE_WIDTHS = (16, 32)
"""Channel widths of the toy VAE's two levels (the tiny pipelines' VAE is [32, 64])."""

UNCONDITIONAL_FRACTION = 0.1
"""Fraction of training captions replaced by the empty prompt (for classifier-free guidance)."""


@dataclass(frozen=True)
class DecoderSpec:
    """How one modality's decoder is built and fed."""

    kind: str
    frames: int | None  # None: images [B, 3, H, W]; else videos [B, 3, F, H, W]
    defaults: dict[str, Any]
    steps: int
    vae_steps: int
    batch_size: int


SPECS: dict[str, DecoderSpec] = {
    "image": DecoderSpec("stable-diffusion", None,
                         {"num_inference_steps": 20, "guidance_scale": 3.0, "height": 32, "width": 32},
                         steps=800, vae_steps=150, batch_size=32),
    "video": DecoderSpec("text-to-video", VIDEO_FRAMES,
                         {"num_inference_steps": 20, "guidance_scale": 3.0, "height": 32, "width": 32,
                          "num_frames": VIDEO_FRAMES, "fps": VIDEO_FPS},
                         steps=500, vae_steps=100, batch_size=8),
}
"""Supported modalities → pipeline kind, layout, generation defaults and the default budget."""


@dataclass
class DecoderReport:
    """What ``train_toy_decoder`` did and measured."""

    modality: str
    config: DecoderConfig
    vae_loss: list[float] = field(default_factory=list)  # reconstruction MSE, mean per tenth of training
    unet_loss: list[float] = field(default_factory=list)  # ε-MSE, mean per tenth of training
    seconds: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)  # per attribute, and "all"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["config"] = self.config.model_dump()
        return out


def _spec(modality: str) -> DecoderSpec:
    if modality not in SPECS:
        raise ValueError(f"no toy decoder recipe for {modality!r}; supported: {sorted(SPECS)} "
                         "(audio needs a pitch-preserving vocoder, not implemented yet)")
    return SPECS[modality]


def _tiny_architecture(modality: str) -> dict[str, Any]:
    from nextgpt.decoders import build_decoder  # noqa: F401  (registers the kinds)
    from nextgpt.registry import DECODERS

    architecture = DECODERS.get(_spec(modality).kind).tiny_config(CONDITION_TOKENS).architecture
    # measured on 1 CPU thread, batch 32: a VAE step takes 0.36 s at widths [16, 32] against 0.98 s at [32, 64],
    # and flat shapes on black need no more
    architecture["vae"]["config"]["block_out_channels"] = list(TOY_VAE_WIDTHS)
    return architecture


def _pixels(modality: str, meanings: list[Meaning], rng: np.random.Generator) -> torch.Tensor:
    """Jittered renderings in [-1, 1]: images ``[B, 3, H, W]``, videos ``[B, 3, F, H, W]``."""
    arrays = np.stack([render(m, rng) for m in meanings]).astype(np.float32) / 127.5 - 1.0
    tensor = torch.from_numpy(arrays)
    return tensor.permute(0, 3, 1, 2) if tensor.ndim == 4 else tensor.permute(0, 4, 1, 2, 3)


def _frames(pixels: torch.Tensor) -> torch.Tensor:
    """Images or videos → a batch of frames ``[N, 3, H, W]`` (what the image VAE sees)."""
    if pixels.ndim == 4:
        return pixels
    b, c, f, h, w = pixels.shape
    return pixels.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def _tenths(values: list[float]) -> list[float]:
    chunks = np.array_split(np.asarray(values), min(10, len(values)))
    return [round(float(c.mean()), 5) for c in chunks]


def _schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 5 % of steps, then cosine decay to 5 % of the peak."""
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_vae(vae: Any, modality: str, meanings: list[Meaning], *, steps: int, batch_size: int,
              generator: torch.Generator, rng: np.random.Generator, lr: float = 2e-3) -> list[float]:
    """Reconstruction training of the image VAE on frames of jittered renderings; returns the per-step MSE."""
    vae.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = _schedule(optimizer, steps)
    losses = []
    images = max(1, batch_size // (_spec(modality).frames or 1))
    for _ in range(steps):
        batch = [meanings[i] for i in rng.integers(len(meanings), size=images)]
        x = _frames(_pixels(modality, batch, rng))
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=generator)).sample
        mse = torch.nn.functional.mse_loss(recon, x)
        loss = mse + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(mse.item())
    vae.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def _latents(vae: Any, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Scaled VAE latents: ``[B, C, h, w]`` for images, ``[B, C, F, h, w]`` for videos."""
    z = vae.encode(_frames(pixels)).latent_dist.sample(generator=generator) * vae.config.scaling_factor
    if pixels.ndim == 4:
        return z
    b, f = pixels.shape[0], pixels.shape[2]
    return z.reshape(b, f, *z.shape[1:]).permute(0, 2, 1, 3, 4)


def _captions(meanings: list[Meaning], phrasings: list[int], rng: np.random.Generator,
              unconditional: float = 0.0) -> list[str]:
    return ["" if rng.random() < unconditional else caption(m, int(rng.choice(phrasings)), rng) for m in meanings]


def train_unet(pipeline: Any, modality: str, meanings: list[Meaning], phrasings: list[int], *, steps: int,
               batch_size: int, generator: torch.Generator, rng: np.random.Generator, lr: float = 1e-3,
               encode: Any) -> list[float]:
    """ε-prediction training of the UNet on latents of jittered renderings; returns the per-step loss."""
    unet, vae, scheduler = pipeline.unet, pipeline.vae, pipeline.scheduler
    unet.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    schedule = _schedule(optimizer, steps)
    losses = []
    for _ in range(steps):
        batch = [meanings[i] for i in rng.integers(len(meanings), size=batch_size)]
        latents = _latents(vae, _pixels(modality, batch, rng), generator)
        conditions = encode(_captions(batch, phrasings, rng, UNCONDITIONAL_FRACTION))
        noise = torch.randn(latents.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        noisy = scheduler.add_noise(latents, noise, t)
        prediction = unet(noisy, t, encoder_hidden_states=conditions).sample
        loss = torch.nn.functional.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    unet.eval().requires_grad_(False)
    return losses


def evaluate_decoder(decoder: Any, modality: str, judges: Any, *, count: int = 40, seed: int = 0,
                     batch_size: int = 20, **options: Any) -> tuple[dict[str, float], list[Any], list[Meaning]]:
    """Generate from held-out meanings in held-out (and other) phrasings and read them with the judges.

    Returns:
        ``({attribute: accuracy, "all": accuracy}, media, meanings)``.
    """
    split = make_split()
    rng = np.random.default_rng(seed + 1)
    held = split.meanings(modality, "eval")
    meanings = [held[i % len(held)] for i in range(count)]
    captions = _captions(meanings, split.phrasings(modality, "eval"), rng)
    media = []
    for start in range(0, count, batch_size):
        conditions = decoder.encode_text(captions[start:start + batch_size])
        generators = [torch.Generator().manual_seed(seed * 100_003 + start + i) for i in range(len(conditions))]
        media += decoder.generate(conditions, generator=generators, progress=False, **options)
    predicted = judges.predict(modality, [m.data for m in media], [m.rate for m in media])
    right = {name: [p[name] == m[name] for p, m in zip(predicted, meanings)] for name in attribute_space(modality)}
    accuracy = {name: float(np.mean(hits)) for name, hits in right.items()}
    accuracy["all"] = float(np.mean([all(p[n] == m[n] for n in right) for p, m in zip(predicted, meanings)]))
    return accuracy, media, meanings


def image_grid(media: list[Any], columns: int = 8) -> np.ndarray:
    """Generated images (or the middle frame of videos) tiled into one uint8 array."""
    tiles = [m.data if m.data.ndim == 3 else m.data[len(m.data) // 2] for m in media]
    rows = -(-len(tiles) // columns)
    h, w = tiles[0].shape[:2]
    grid = np.zeros((rows * h, columns * w, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return grid


def train_toy_decoder(modality: str, out_dir: str | Path, *, seed: int = 0, steps: int | None = None,
                      batch_size: int | None = None, vae_steps: int | None = None,
                      architecture: dict[str, Any] | None = None, judges: Any = None,
                      eval_count: int = 40) -> DecoderReport:
    """Train a toy decoder from scratch, save it to ``out_dir`` and (with ``judges``, or ``eval_count > 0``)
    score held-out generations.

    Args:
        modality: ``image`` or ``video``.
        out_dir: folder for the diffusers pipeline (``model_index.json`` + safetensors) and ``decoder.json``.
        seed: seeds initialisation, data draws and noise.
        steps, batch_size, vae_steps: UNet steps, batch size and VAE steps (default: the ``SPECS`` budget).
        architecture: component configs (default: the tiny architecture of the modality's pipeline).
        judges: ``AttributeClassifiers`` or a folder they were saved to; ``None`` trains them (seconds) when
            ``eval_count > 0``.
        eval_count: held-out generations to score (0: no evaluation).

    Returns:
        A :class:`DecoderReport`; ``report.config`` loads the saved pipeline with ``build_decoder``.

    Raises:
        ValueError: for a modality without a recipe, or captions longer than the prompt length.
    """
    from diffusers import DDIMScheduler

    from nextgpt.decoders import build_decoder

    spec = _spec(modality)
    steps = spec.steps if steps is None else steps
    vae_steps = spec.vae_steps if vae_steps is None else vae_steps
    batch_size = batch_size or spec.batch_size
    out = Path(out_dir)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = DecoderConfig(kind=spec.kind, architecture=architecture or _tiny_architecture(modality),
                           condition_tokens=CONDITION_TOKENS, condition_dim=32, defaults=dict(spec.defaults))
    decoder = build_decoder(modality, config, allow_random_init=True, seed=seed)
    pipeline = decoder.pipeline
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    pipeline.text_encoder.requires_grad_(False)
    split = make_split()
    meanings, phrasings = split.meanings(modality, "train"), split.phrasings(modality, "train")
    longest = max(len(pipeline.tokenizer(caption(m, p)).input_ids) for m in meanings for p in phrasings)
    if longest > CONDITION_TOKENS:
        raise ValueError(f"a {modality} caption has {longest} tokens, more than CONDITION_TOKENS={CONDITION_TOKENS}")
    report = DecoderReport(modality, config)

    started = time.perf_counter()
    vae_losses = train_vae(pipeline.vae, modality, meanings, steps=vae_steps, batch_size=32, generator=generator,
                           rng=rng)
    with torch.no_grad():
        sample = _latents(pipeline.vae, _pixels(modality, meanings[:64], rng), generator)
    pipeline.vae.register_to_config(scaling_factor=float(1.0 / sample.std()))
    report.seconds["vae"] = round(time.perf_counter() - started, 1)
    report.vae_loss = _tenths(vae_losses) if vae_losses else []
    logger.info("%s VAE: %d steps in %.0f s, MSE %s", modality, vae_steps, report.seconds["vae"], report.vae_loss)

    started = time.perf_counter()
    losses = train_unet(pipeline, modality, meanings, phrasings, steps=steps, batch_size=batch_size,
                        generator=generator, rng=rng, encode=decoder.encode_text)
    report.seconds["unet"] = round(time.perf_counter() - started, 1)
    report.unet_loss = _tenths(losses) if losses else []
    logger.info("%s UNet: %d steps in %.0f s, loss %s", modality, steps, report.seconds["unet"], report.unet_loss)

    out.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(out, safe_serialization=True)
    report.config = DecoderConfig(kind=spec.kind, path=str(out.resolve()), condition_tokens=CONDITION_TOKENS,
                                  condition_dim=32, defaults=dict(spec.defaults))

    if eval_count > 0:
        from .classifiers import AttributeClassifiers

        if judges is None:
            judges = AttributeClassifiers.train([modality], seed=seed)
        elif not isinstance(judges, AttributeClassifiers):
            judges = AttributeClassifiers.load(judges)
        started = time.perf_counter()
        loaded = build_decoder(modality, report.config)
        report.accuracy, media, _ = evaluate_decoder(loaded, modality, judges, count=eval_count, seed=seed)
        report.seconds["eval"] = round(time.perf_counter() - started, 1)
        from nextgpt.decoders import write_image

        write_image(image_grid(media), out / "eval_grid.png")
        logger.info("%s generation accuracy: %s", modality, report.accuracy)
    (out / "decoder.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
