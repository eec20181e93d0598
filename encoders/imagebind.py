"""ImageBind as a frozen ``MediaEncoder``: image, audio, video and text → one unit-norm embedding per item.

Data path (per modality, the ImageBind reference preprocessing; counts configurable in ``config.options``):

==========  ==============================================================  ===================================
modality    preprocessing (one item)                                         model input ``[B, views, ...]``
==========  ==============================================================  ===================================
image       RGB → resize short side 224 (bicubic) → centre crop 224 → CLIP    ``[B, 3, 224, 224]`` (the vision
            mean/std                                                         stem repeats it to 2 frames)
video       ``video_clips`` clips of ``video_clip_seconds`` spread over the   ``[B, clips·crops, 3, 2, 224,
            video, ``video_frames`` (2) frames each → short side 224 →        224]``
            CLIP mean/std → ``video_crops`` spatial crops (left/centre/right)
audio       mono 16 kHz → ``audio_clips`` clips of ``audio_clip_seconds`` →   ``[B, clips, 1, 128, 204]``
            Kaldi fbank, 128 mel × 204 frames → (x − mean) / std
text        CLIP BPE (the vocabulary shipped inside imagebind) → 77 ids       ``[B, 77]``
==========  ==============================================================  ===================================

Every view goes through ImageBind's preprocessor → trunk → head, is L2-normalised (ImageBind's ``Normalize``)
and the views of an item are averaged, exactly like ``ImageBindModel.forward``. Two deliberate differences:

- ImageBind's postprocessors then multiply text by a learned logit scale and audio by a fixed 20 (depth 5,
  thermal 10, IMU 5); those scales only serve its contrastive losses and are **not** applied (the reference
  NExT-GPT input is the normalised embedding, "audio without ×20"). Vision has no scale.
- With ``renormalize=True`` (default) the average over views is L2-normalised again, so every item — not only
  single-view ones — is a unit vector. ``renormalize=False`` gives ImageBind's raw mean of unit vectors.

Weights come from ``config.path``: safetensors, or the official pickled ``imagebind_huge.pth`` only with
``allow_pickle=True`` (then ``torch.load(weights_only=True)``); :func:`convert_pickle_checkpoint` turns the
latter into safetensors once. The parameter names are those of ``imagebind_model.ImageBindModel``, so
``ImageBindEncoder.state_dict()`` and the official checkpoint are interchangeable.
"""
from __future__ import annotations

import functools
import importlib.resources
import inspect
import logging
import math
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from nextgpt.checkpoint import check_shapes, read_weights
from nextgpt.config import EncoderConfig
from nextgpt.registry import ENCODERS

from ._imagebind_shims import import_imagebind
from .base import MediaEncoder
from .media import load_audio, load_image, load_text, load_video

logger = logging.getLogger(__name__)

__all__ = [
    "HUGE_ARCHITECTURE",
    "TINY_ARCHITECTURE",
    "ImageBindEncoder",
    "ImageBindOptions",
    "convert_pickle_checkpoint",
    "huge_config",
    "tiny_config",
]

HUGE_ARCHITECTURE: dict[str, Any] = {
    # exactly the keyword arguments of imagebind_model.imagebind_huge(); everything else is ImageBindModel's default
    "vision_embed_dim": 1280,
    "vision_num_blocks": 32,
    "vision_num_heads": 16,
    "text_embed_dim": 1024,
    "text_num_blocks": 24,
    "text_num_heads": 16,
    "out_embed_dim": 1024,
    "audio_drop_path": 0.1,
    "imu_drop_path": 0.7,
}
"""ImageBind-huge (1,200,781,057 parameters, all six modality towers; embed_dim 1024)."""

TINY_ARCHITECTURE: dict[str, Any] = {
    "out_embed_dim": 64,
    "vision_embed_dim": 64,
    "vision_num_blocks": 2,
    "vision_num_heads": 4,
    "audio_embed_dim": 64,
    "audio_num_blocks": 2,
    "audio_num_heads": 4,
    "text_embed_dim": 64,
    "text_num_blocks": 2,
    "text_num_heads": 4,
    # towers we never call, kept (tiny) so the module layout stays that of ImageBindModel
    "depth_embed_dim": 32,
    "depth_num_blocks": 1,
    "depth_num_heads": 4,
    "thermal_embed_dim": 32,
    "thermal_num_blocks": 1,
    "thermal_num_heads": 4,
    "imu_embed_dim": 32,
    "imu_num_blocks": 1,
    "imu_num_heads": 4,
}
"""A 64-d ImageBind for tests (≈3.6M parameters, most in the 49408×64 text embedding table)."""

SAMPLE_RATE = 16_000
IMAGE_SIZE = 224  # fixed by ImageBindModel (img_size=[3, video_frames, 224, 224])
TEXT_CONTEXT = 77  # fixed by ImageBindModel's TextPreprocessor
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_FBANK_WINDOW = 400  # 25 ms at 16 kHz: the shortest clip Kaldi fbank accepts

# modality → (ImageBind modality key, dimensions of one view of one item)
_MODALITIES: dict[str, tuple[str, int]] = {
    "image": ("vision", 3),  # [3, H, W]
    "audio": ("audio", 3),  # [1, mel, frames]
    "video": ("vision", 4),  # [3, T, H, W]
    "text": ("text", 1),  # [77]
}


class ImageBindOptions(BaseModel):
    """Preprocessing options (``EncoderConfig.options``); defaults are the ImageBind / NExT-GPT reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    audio_clips: int = Field(3, gt=0, description="clips per audio item, spread over its duration")
    audio_clip_seconds: float = Field(2.0, gt=0)
    audio_mean: float = Field(-4.268, description="fbank normalisation used in ImageBind training")
    audio_std: float = Field(9.138, gt=0)
    video_clips: int = Field(5, gt=0, description="clips per video item, spread over its duration")
    video_clip_seconds: float = Field(2.0, gt=0)
    video_crops: Literal[1, 3] = Field(3, description="spatial crops per clip: 3 = left/centre/right, 1 = centre")
    video_array_fps: float = Field(30.0, gt=0, description="frame rate assumed for a bare [F, H, W, 3] array")
    renormalize: bool = Field(True, description="L2-normalise the average of an item's views")


def tiny_config(**options: Any) -> EncoderConfig:
    """A tiny random ImageBind for tests: 64-d, 2 blocks, 4 heads; 1 audio clip, 1 video clip, 1 crop.

    Args:
        options: overrides of :class:`ImageBindOptions` fields.
    """
    return EncoderConfig(
        kind="imagebind",
        path=None,
        architecture=dict(TINY_ARCHITECTURE),
        embed_dim=TINY_ARCHITECTURE["out_embed_dim"],
        options={"audio_clips": 1, "video_clips": 1, "video_crops": 1, **options},
    )


def huge_config(path: str | None = "imagebind_huge.safetensors") -> EncoderConfig:
    """ImageBind-huge with the reference preprocessing (3 audio clips; 5 video clips × 3 crops).

    Args:
        path: the weights, relative to the checkpoint folder (``base_dir``) unless absolute. The default is the
            safetensors file :func:`convert_pickle_checkpoint` writes from the official ``imagebind_huge.pth``
            (which needs ``allow_pickle=True`` if used directly).
    """
    return EncoderConfig(
        kind="imagebind",
        path=path,
        architecture=dict(HUGE_ARCHITECTURE),
        embed_dim=HUGE_ARCHITECTURE["out_embed_dim"],
        options=ImageBindOptions().model_dump(),
    )


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    ib = import_imagebind()
    vocabulary = importlib.resources.files("imagebind") / "bpe" / "bpe_simple_vocab_16e6.txt.gz"
    with importlib.resources.as_file(vocabulary) as path:
        return ib.preprocessors.SimpleTokenizer(bpe_path=str(path), context_length=TEXT_CONTEXT)


@functools.lru_cache(maxsize=1)
def _image_transform() -> Callable[[Any], torch.Tensor]:
    """``imagebind.data.load_and_transform_vision_data``'s transform: PIL RGB → ``[3, 224, 224]``."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(IMAGE_SIZE, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(IMAGE_SIZE),
            transforms.ToTensor(),
            transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD),
        ]
    )


def _clip_spans(duration: float, clips: int, clip_seconds: float) -> list[tuple[float, float]]:
    """ImageBind's clip placement: ``clips`` windows, starts evenly spaced over ``duration - clip_seconds``."""
    ib = import_imagebind()
    sampler = ib.clip_sampling.ConstantClipsPerVideoSampler(clip_duration=clip_seconds, clips_per_video=clips)
    return [(float(start), float(end)) for start, end in ib.data.get_clip_timepoints(sampler, duration)]


def melspec(waveform: torch.Tensor, num_mel_bins: int, target_length: int) -> torch.Tensor:
    """``imagebind.data.waveform2melspec`` for a 16 kHz ``[1, samples]`` clip → ``[1, mel, frames]``.

    The same computation (Kaldi fbank, Hanning window, 25 ms / 10 ms, cut or zero-pad to ``target_length``)
    without its two side effects: it subtracts the mean *in place* (altering overlapping clips of the caller's
    waveform) and reports short clips through the root logger, which configures logging globally.
    """
    import torchaudio.compliance.kaldi

    waveform = waveform - waveform.mean()
    if waveform.shape[-1] < _FBANK_WINDOW:
        waveform = F.pad(waveform, (0, _FBANK_WINDOW - waveform.shape[-1]))
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform,
        htk_compat=True,
        sample_frequency=SAMPLE_RATE,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=num_mel_bins,
        dither=0.0,
        frame_length=25,
        frame_shift=10,
    ).transpose(0, 1)
    frames = fbank.shape[1]
    if frames < target_length:
        fbank = F.pad(fbank, (0, target_length - frames))
    return fbank[:, :target_length].unsqueeze(0)


@ENCODERS.register("imagebind")
class ImageBindEncoder(MediaEncoder):
    """Frozen ImageBind for image, audio, video and text.

    Build it with :meth:`from_config` (or ``nextgpt.encoders.build_encoder``). The ImageBind submodules
    (``modality_preprocessors``, ``modality_trunks``, ``modality_heads``, ``modality_postprocessors``) are
    children of this module, so its ``state_dict`` has ImageBind's own parameter names.

    Args:
        config: the encoder config; ``architecture`` is passed to ``ImageBindModel``.
        model: an ``ImageBindModel`` built from that architecture, whose children are adopted.
    """

    modalities = tuple(_MODALITIES)

    def __init__(self, config: EncoderConfig, model: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.options = _parse_options(config.options)
        self.limits = config.limits
        self.embed_dim = config.embed_dim
        defaults = _architecture_defaults()
        architecture = {**defaults, **config.architecture}
        self.mel_bins = architecture["audio_num_mel_bins"]
        self.mel_frames = architecture["audio_target_len"]
        self.video_frames = architecture["video_frames"]
        for name, child in model.named_children():
            self.add_module(name, child)
        self.requires_grad_(False)
        self.eval()

    # ---- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: EncoderConfig,
        *,
        base_dir: str | Path | None = None,
        allow_random_init: bool = False,
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        allow_pickle: bool = False,
    ) -> "ImageBindEncoder":
        """Build ImageBind from ``config`` and load its weights.

        Args:
            config: ``architecture`` = ``ImageBindModel`` kwargs; ``path`` = weights file.
            base_dir: folder that a relative ``config.path`` is resolved against (the checkpoint folder).
            allow_random_init: build with seeded random weights when ``config.path`` is None.
            seed: seed of the random initialisation (the caller's RNG state is left untouched).
            device: where to put the encoder; ``"meta"`` builds the structure without memory or weights (for
                shapes and parameter counts), ignoring ``path``.
            dtype: parameter dtype (default float32).
            allow_pickle: accept a pickled ``.pth/.pt/.bin`` checkpoint, loaded with ``torch.load(weights_only=True)``.

        Raises:
            ValueError: for an architecture ``ImageBindModel`` does not accept, an ``embed_dim`` different from
                ``out_embed_dim``, bad options, no path without ``allow_random_init``, a refused pickle, or a
                corrupt/mismatched weights file (naming the file and the offending tensors).
            FileNotFoundError: naming a missing weights file.
        """
        _check_architecture(config)
        _parse_options(config.options)
        ib = import_imagebind()
        if device is not None and torch.device(device).type == "meta":
            with _empty_weights():
                return cls(config, ib.model.ImageBindModel(**config.architecture))
        if config.path is None:
            if not allow_random_init:
                raise ValueError(
                    "encoder config has no weights path (config.path=None) and random initialisation is not "
                    "allowed; set encoder.path to an ImageBind .safetensors file or pass allow_random_init=True "
                    "(tests and tiny models only)"
                )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = ib.model.ImageBindModel(**config.architecture)
            logger.info("built a randomly initialised ImageBind (seed %d)", seed)
        else:
            path = _resolve(config.path, base_dir)
            state = read_weights(path, allow_pickle=allow_pickle)
            with _empty_weights():
                model = ib.model.ImageBindModel(**config.architecture)
            check_shapes({k: tuple(t.shape) for k, t in model.state_dict().items()}, state, path,
                         "encoder.architecture", "Use the architecture the checkpoint was trained with "
                         "(HUGE_ARCHITECTURE for the official ImageBind-huge)")
            model.load_state_dict(state, strict=True, assign=True)
            logger.info("loaded ImageBind weights from %s", path)
        encoder = cls(config, model)
        return encoder.to(device=device or "cpu", dtype=dtype or torch.float32)

    # ---- preprocessing ---------------------------------------------------------------------------------------
    def preprocess(self, modality: str, items: Sequence[Any]) -> torch.Tensor:
        """Load ``items`` under ``config.limits`` and build the batched ImageBind input (see the module table).

        Raises:
            KeyError: for an unknown modality.
            MediaError: for an item that cannot be loaded or breaks a limit (the message names the item).
        """
        self.check_modality(modality)
        if modality == "text":  # the BPE tokenizer batches by itself
            texts = [load_text(item, self.limits, name=f"text item {i}") for i, item in enumerate(items)]
            return _tokenizer()(texts).reshape(len(texts), TEXT_CONTEXT)
        prepare: Callable[[Any], torch.Tensor] = getattr(self, f"_prepare_{modality}")
        return torch.stack([prepare(item) for item in items])

    def _prepare_image(self, item: Any) -> torch.Tensor:
        return _image_transform()(load_image(item, self.limits))  # [3, 224, 224]

    def _prepare_audio(self, item: Any) -> torch.Tensor:
        options = self.options
        waveform = load_audio(item, self.limits, sample_rate=SAMPLE_RATE).unsqueeze(0)  # [1, samples]
        spans = _clip_spans(waveform.shape[1] / SAMPLE_RATE, options.audio_clips, options.audio_clip_seconds)
        clips = [
            melspec(waveform[:, int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)], self.mel_bins, self.mel_frames)
            for start, end in spans
        ]
        return (torch.stack(clips) - options.audio_mean) / options.audio_std  # [clips, 1, mel, frames]

    def _prepare_video(self, item: Any) -> torch.Tensor:
        ib = import_imagebind()
        options, per_clip = self.options, self.video_frames
        video = load_video(item, self.limits, select=self._select_video_frames, array_fps=options.video_array_fps)
        frames = torch.from_numpy(video.frames).float().div_(255.0)  # [clips·T, H, W, 3]
        clips = frames.reshape(-1, per_clip, *frames.shape[1:]).permute(0, 4, 1, 2, 3)  # [clips, 3, T, H, W]
        scale = ib.video_transforms.ShortSideScale(IMAGE_SIZE)
        normalise = ib.data.NormalizeVideo(mean=CLIP_MEAN, std=CLIP_STD)
        views = [normalise(scale(clip)) for clip in clips]
        views = ib.data.SpatialCrop(IMAGE_SIZE, num_crops=options.video_crops)(views)
        return torch.stack(views)  # [clips·crops, 3, T, 224, 224]

    def _select_video_frames(self, num_frames: int, duration: float) -> list[int]:
        """ImageBind's sampling: frames in ``[ceil(fps·start), ceil(fps·end))`` of each clip, then ``T`` of them
        uniformly (pytorchvideo's ``UniformTemporalSubsample``)."""
        fps = num_frames / duration
        indices: list[int] = []
        for start, end in _clip_spans(duration, self.options.video_clips, self.options.video_clip_seconds):
            first = min(math.ceil(fps * start), num_frames - 1)
            last = max(min(math.ceil(fps * end), num_frames), first + 1)
            picks = torch.linspace(first, last - 1, self.video_frames).clamp(first, last - 1).long()
            indices.extend(picks.tolist())
        return indices

    # ---- embedding -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def forward_preprocessed(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        """Embed a preprocessed batch.

        Args:
            inputs: ``[B, *view]`` or ``[B, views, *view]`` (see the module table).

        Returns:
            ``[B, embed_dim]``: per-view L2-normalised embeddings averaged over views (re-normalised unless
            ``options.renormalize`` is False). No logit scale is applied.
        """
        self.check_modality(modality)
        key, view_ndim = _MODALITIES[modality]
        if inputs.ndim == view_ndim + 1:
            inputs = inputs.unsqueeze(1)
        if inputs.ndim != view_ndim + 2:
            raise ValueError(
                f"{modality} inputs must be [B, *view] or [B, views, *view] with a {view_ndim}-d view, "
                f"got shape {tuple(inputs.shape)}"
            )
        batch, views = inputs.shape[:2]
        tokens = self.modality_preprocessors[key](**{key: inputs.flatten(0, 1)})
        hidden = self.modality_trunks[key](**tokens["trunk"])
        pooled = F.normalize(self.modality_heads[key](hidden, **tokens["head"]), dim=-1)
        embedding = pooled.view(batch, views, -1).mean(dim=1)
        return F.normalize(embedding, dim=-1) if self.options.renormalize else embedding


# ---- helpers -------------------------------------------------------------------------------------------------
def _parse_options(options: dict[str, Any]) -> ImageBindOptions:
    try:
        return ImageBindOptions(**options)
    except ValidationError as error:
        raise ValueError(
            f"invalid ImageBind encoder options {options}; valid keys: {sorted(ImageBindOptions.model_fields)}\n{error}"
        ) from None


@functools.lru_cache(maxsize=1)
def _architecture_defaults() -> dict[str, Any]:
    parameters = inspect.signature(import_imagebind().model.ImageBindModel.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name != "self"}


def _check_architecture(config: EncoderConfig) -> None:
    defaults = _architecture_defaults()
    unknown = sorted(set(config.architecture) - set(defaults))
    if unknown:
        raise ValueError(f"encoder.architecture has unknown ImageBindModel arguments {unknown}; valid: {sorted(defaults)}")
    out_dim = {**defaults, **config.architecture}["out_embed_dim"]
    if out_dim != config.embed_dim:
        raise ValueError(
            f"encoder.embed_dim={config.embed_dim} but the architecture's out_embed_dim is {out_dim}; make them equal"
        )


def _empty_weights():
    """Build modules with parameters on the meta device (ImageBind's constructor calls ``.item()``, which a plain
    ``torch.device('meta')`` context cannot run)."""
    from accelerate import init_empty_weights

    return init_empty_weights(include_buffers=False)


def _resolve(path: str, base_dir: str | Path | None) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.is_absolute() and base_dir is not None:
        resolved = Path(base_dir) / resolved
    if not resolved.is_file():
        raise FileNotFoundError(
            f"ImageBind weights {resolved} not found (encoder.path={path!r}"
            + (f", resolved against {base_dir}" if base_dir is not None else "")
            + "); point encoder.path at a local .safetensors file (hub ids are not supported for the encoder)"
        )
    return resolved


def convert_pickle_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Convert a pickled ImageBind state dict (e.g. the official ``imagebind_huge.pth``) to safetensors.

    The pickle is read with ``torch.load(weights_only=True)``, so it cannot execute code.

    Returns:
        The path written.

    Raises:
        ValueError: if the file is not a flat state dict of tensors.
    """
    from safetensors.torch import save_file

    state = read_weights(Path(source), allow_pickle=True)
    target = Path(target)
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(target))
    return target
