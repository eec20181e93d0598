"""The decoder interface: conditioning embeddings ``[B, Q, D]`` → media arrays, via a diffusers pipeline.

A subclass names its pipeline class and implements three small hooks (``encode_text``, ``to_media`` and, where the
pipeline wants another shape, ``prepare_conditions``). Everything else is shared here: loading or random
initialisation, the cached empty-prompt negative, option defaults, generator checks, the step callback, saving.
"""
from __future__ import annotations

import inspect
import itertools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from nextgpt.config import DecoderConfig

from .components import build_components, count_parameters
from .media_io import write_media

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]
"""Called as ``callback(step, total_steps)`` after each denoising step; ``step`` counts from 1 to ``total_steps``."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Arguments the decoder itself sets on every pipeline call; passing them as options would bypass its contract.
_RESERVED_OPTIONS = frozenset(
    {
        "prompt",
        "negative_prompt",
        "prompt_embeds",
        "negative_prompt_embeds",
        "generator",
        "output_type",
        "return_dict",
        "callback",
        "callback_steps",
        "callback_on_step_end",
        "num_images_per_prompt",
        "num_waveforms_per_prompt",
    }
)


@dataclass
class DecodedMedia:
    """One generated item. ``data``: image ``[H, W, 3]`` uint8, audio ``[samples]`` float32, video
    ``[F, H, W, 3]`` uint8. ``rate`` is the sample rate (audio) or frames per second (video)."""

    modality: str
    data: np.ndarray
    rate: int | None = None


class Decoder:
    """Wraps one diffusers pipeline (composed, never forked); the pipeline is built on first use and kept.

    Args:
        modality: the modality this decoder produces.
        config: its ``DecoderConfig``.
        base_dir: folder that relative ``config.path`` values are resolved against.
        allow_random_init: build from ``config.architecture`` when no weights are given.
        seed: seed for random initialisation.
        device: where the pipeline runs (``"meta"`` builds shapes only, for counting parameters).
        dtype: parameter dtype of the pipeline.
    """

    file_extension: ClassVar[str] = ""
    pipeline_class_name: ClassVar[str] = ""
    """Name of the composed diffusers pipeline class (imported on first use: importing diffusers takes seconds)."""
    media_options: ClassVar[tuple[str, ...]] = ()
    """Keys of ``config.defaults`` used to build the media (e.g. ``fps``) rather than passed to the pipeline."""

    def __init__(
        self,
        modality: str,
        config: DecoderConfig,
        *,
        base_dir: str | Path | None = None,
        allow_random_init: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.modality = modality
        self.config = config
        self.base_dir = Path(base_dir) if base_dir else None
        self.allow_random_init = allow_random_init
        self.seed = seed
        self.device = torch.device(device)
        self.dtype = dtype
        self._pipeline: Any = None
        self._negative: torch.Tensor | None = None

    def __repr__(self) -> str:
        source = self.config.path or ("random init" if self.allow_random_init else "no weights")
        return f"{type(self).__name__}(modality={self.modality!r}, source={source!r}, loaded={self.loaded})"

    @classmethod
    def pipeline_class(cls) -> type:
        """The diffusers pipeline class this decoder composes."""
        import diffusers

        return getattr(diffusers, cls.pipeline_class_name)

    # ---- presets -----------------------------------------------------------------------------------------
    @staticmethod
    def tiny_config(**kwargs: Any) -> DecoderConfig:
        """A tiny random-init config for tests (subclasses provide it)."""
        raise NotImplementedError

    @staticmethod
    def real_config() -> DecoderConfig:
        """The config of the real checkpoint used by the ``nextgpt-7b`` preset (subclasses provide it)."""
        raise NotImplementedError

    # ---- lifecycle -------------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    @property
    def pipeline(self) -> Any:
        """The diffusers pipeline, built (or loaded) on first access and then kept."""
        if self._pipeline is None:
            pipeline = self.build_pipeline()
            # meta components are created in place: nothing to move. Cast only when needed, since diffusers
            # warns about casting with to() even when nothing changes.
            if self.device.type != "meta" and pipeline.dtype != self.dtype:
                pipeline.to(self.device, self.dtype)
            elif self.device.type != "meta":
                pipeline.to(self.device)
            self._pipeline = pipeline
        return self._pipeline

    def build_pipeline(self) -> Any:
        """Load ``config.path`` or, with ``allow_random_init``, build every component from ``config.architecture``.

        Raises:
            FileNotFoundError: ``config.path`` is a local path that does not exist.
            ValueError: neither weights nor permission to initialise randomly.
        """
        if self.config.path is not None:
            return self._load_pretrained()
        if not self.allow_random_init:
            raise ValueError(
                f"{self._name}: config.path is None and random initialisation is not allowed; set the decoder's path "
                f"to a diffusers pipeline folder or hub id (e.g. {self.real_config().path!r}), or pass "
                "allow_random_init=True to build it untrained from config.architecture"
            )
        if not self.config.architecture:
            raise ValueError(f"{self._name}: allow_random_init=True but config.architecture is empty; nothing to build")
        logger.info("%s: building an untrained pipeline from config.architecture (seed %d)", self._name, self.seed)
        meta = self.device.type == "meta"
        with torch.random.fork_rng(devices=[]):  # seed the build without touching the caller's RNG stream
            torch.manual_seed(self.seed)
            components = build_components(
                self.config.architecture, device="meta" if meta else None, tokenizers=not meta
            )
        return self.assemble_pipeline(components)

    def assemble_pipeline(self, components: dict[str, Any]) -> Any:
        """Create the pipeline from built components (subclasses add fixed extras such as a disabled safety checker)."""
        return self.pipeline_class()(**components)

    def resolve_path(self) -> tuple[str, bool]:
        """``config.path`` resolved against ``base_dir``: ``(path, is_local)``.

        Raises:
            FileNotFoundError: naming the path, when it is local and missing (or a folder without model_index.json).
        """
        raw = str(self.config.path)
        path = Path(raw).expanduser()
        candidate = path if path.is_absolute() or self.base_dir is None else self.base_dir / path
        if candidate.exists():
            if not (candidate / "model_index.json").is_file():
                raise FileNotFoundError(
                    f"{self._name}: {candidate} is not a diffusers pipeline folder (no model_index.json); "
                    f"save one with {self.pipeline_class_name}.save_pretrained()"
                )
            return str(candidate), True
        if _HUB_ID.match(raw):
            return raw, False
        where = f" (resolved against {self.base_dir})" if self.base_dir and not path.is_absolute() else ""
        raise FileNotFoundError(
            f"{self._name}: decoder path {raw!r}{where} does not exist: {candidate}; point DecoderConfig.path at a "
            f"diffusers pipeline folder or a hub id such as {self.real_config().path!r}"
        )

    def _load_pretrained(self) -> Any:
        path, local = self.resolve_path()
        logger.info("%s: loading %s from %s", self._name, self.pipeline_class_name, path)
        try:
            return self.pipeline_class().from_pretrained(path, dtype=self.dtype, local_files_only=local)
        except OSError as error:
            raise OSError(
                f"{self._name}: could not load {self.pipeline_class_name} from {path!r}: {error}. Without "
                f"network access, download it elsewhere (huggingface-cli download {path}) and set path to the folder"
            ) from error

    def to(self, device: str | torch.device) -> "Decoder":
        """Move the pipeline (if built) and the cached negative embedding to ``device``; returns ``self``."""
        self.device = torch.device(device)
        if self._pipeline is not None:
            self._pipeline.to(self.device)
        if self._negative is not None:
            self._negative = self._negative.to(self.device)
        return self

    def unload(self) -> None:
        """Drop the pipeline (frees memory); the next use builds it again."""
        self._pipeline = None
        self._negative = None

    def num_parameters(self) -> dict[str, int]:
        """Parameters per pipeline component (builds the pipeline; cheap on ``device="meta"``)."""
        return count_parameters(self.pipeline.components)

    @property
    def _name(self) -> str:
        return f"{self.config.kind} decoder for {self.modality!r}"

    # ---- conditioning ----------------------------------------------------------------------------------
    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """The pipeline's own text-encoder output for ``captions``: ``[B, Q, D]`` — the training target.

        Raises:
            ValueError: for empty or non-string captions, or a pipeline without text encoder.
        """
        if isinstance(captions, str):
            captions = [captions]
        captions = list(captions)
        if not captions or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"{self._name}: encode_text needs a non-empty list of strings, got {captions!r}")
        pipeline = self.pipeline
        if pipeline.tokenizer is None or pipeline.text_encoder is None:
            raise ValueError(f"{self._name}: this pipeline has no tokenizer/text encoder, so it cannot encode text")
        with torch.no_grad():  # not inference_mode: the result is used as a training target
            return self._encode_prompts(captions)

    def _encode_prompts(self, captions: list[str]) -> torch.Tensor:
        """Subclass hook: run the pipeline's prompt encoding on ``captions`` → ``[B, Q, D]``."""
        raise NotImplementedError

    def negative_embedding(self) -> torch.Tensor:
        """The empty-prompt embedding ``[1, Q, D]`` the pipeline itself uses for classifier-free guidance (cached).

        AudioLDM pads its empty prompt to ``projection_dim`` tokens instead of the tokenizer's length; the padding
        is masked, so ``encode_text([""])`` is the same vector (the prompt-equivalence test checks this).
        """
        if self._negative is None:
            self._negative = self.encode_text([""])
        return self._negative

    def prepare_conditions(self, conditions: torch.Tensor) -> torch.Tensor:
        """``[B, Q, D]`` → the ``prompt_embeds`` the pipeline expects (default: unchanged, on device and dtype)."""
        return conditions.to(device=self.device, dtype=self.dtype)

    # ---- generation ------------------------------------------------------------------------------------
    def split_options(self, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Merge ``config.defaults`` with ``overrides`` (``None`` values ignored).

        Returns:
            ``(pipeline_kwargs, media_kwargs)``: keyword arguments of the pipeline call, and those used by
            :meth:`to_media` (``media_options``).

        Raises:
            ValueError: an option that the decoder sets itself (prompt_embeds, generator, output_type, ...).
            TypeError: an option the pipeline does not accept, listing the ones it does.
        """
        options = {**self.config.defaults, **{k: v for k, v in overrides.items() if v is not None}}
        media = {key: options.pop(key) for key in self.media_options if key in options}
        reserved = sorted(_RESERVED_OPTIONS & options.keys())
        if reserved:
            raise ValueError(
                f"{self._name}: {reserved} are set by the decoder itself; pass conditions, generator and callback "
                "as arguments of generate() instead"
            )
        parameters = inspect.signature(self.pipeline_class().__call__).parameters
        accepted = {
            name for name, p in parameters.items() if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
        }
        unknown = sorted(options.keys() - accepted)
        if unknown:
            allowed = sorted((accepted - _RESERVED_OPTIONS) | set(self.media_options))
            raise TypeError(f"{self._name}: unknown generation option(s) {unknown}; this decoder accepts {allowed}")
        options.setdefault("num_inference_steps", parameters["num_inference_steps"].default)
        return options, media

    def generate(
        self,
        conditions: torch.Tensor,
        *,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        callback: StepCallback | None = None,
        progress: bool = True,
        **kwargs: Any,
    ) -> list[DecodedMedia]:
        """Run the pipeline with ``prompt_embeds=conditions`` and the empty-prompt negative; returns B items.

        Args:
            conditions: ``[B, Q, D]`` with ``Q, D = config.condition_tokens, config.condition_dim``.
            generator: one generator for the batch, or one per item (then item ``i`` equals a batch-1 call with
                ``generator[i]``); ``None`` draws from the global RNG.
            num_inference_steps, guidance_scale: override ``config.defaults``.
            callback: ``callback(step, total)`` after each denoising step.
            progress: show the pipeline's progress bar.
            **kwargs: other options of ``config.defaults`` (height, width, num_frames, fps, audio_length_in_s) or
                of the pipeline call (eta, latents, ...).

        Returns:
            ``B`` :class:`DecodedMedia`.

        Raises:
            ValueError: wrong condition shape, generator count, or a reserved option.
            TypeError: an unknown option.
        """
        conditions = self._check_conditions(conditions)
        batch = conditions.shape[0]
        self._check_generator(generator, batch)
        options, media_options = self.split_options(
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, **kwargs
        )
        pipeline = self.pipeline
        pipeline.set_progress_bar_config(disable=not progress)
        negative = self.negative_embedding().repeat(batch, 1, 1)
        with torch.no_grad():
            output = pipeline(
                prompt_embeds=self.prepare_conditions(conditions),
                negative_prompt_embeds=self.prepare_conditions(negative),
                generator=generator,
                output_type="np",
                **self._callback_arguments(callback, options["num_inference_steps"]),
                **options,
            )
        return self.to_media(output, **media_options)

    def to_media(self, output: Any, **media_options: Any) -> list[DecodedMedia]:
        """Subclass hook: the pipeline's ``output_type="np"`` output → one :class:`DecodedMedia` per item."""
        raise NotImplementedError

    def _check_conditions(self, conditions: torch.Tensor) -> torch.Tensor:
        expected = (self.config.condition_tokens, self.config.condition_dim)
        if not isinstance(conditions, torch.Tensor) or conditions.ndim != 3 or tuple(conditions.shape[1:]) != expected:
            shape = tuple(conditions.shape) if isinstance(conditions, torch.Tensor) else type(conditions).__name__
            raise ValueError(
                f"{self._name}: conditions must be a tensor [B, {expected[0]}, {expected[1]}] "
                f"(condition_tokens × condition_dim), got {shape}"
            )
        if conditions.shape[0] == 0:
            raise ValueError(f"{self._name}: conditions hold no items (batch size 0)")
        return conditions

    def _check_generator(self, generator: Any, batch: int) -> None:
        if isinstance(generator, (list, tuple)):
            if len(generator) != batch:
                raise ValueError(
                    f"{self._name}: got {len(generator)} generators for a batch of {batch}; pass one per item or a "
                    "single generator"
                )
            generators = list(generator)
        else:
            generators = [generator] if generator is not None else []
        for g in generators:
            if not isinstance(g, torch.Generator):
                raise ValueError(
                    f"{self._name}: generator must be a torch.Generator (or a list of them), got {type(g).__name__}"
                )

    def _callback_arguments(self, callback: StepCallback | None, num_inference_steps: int) -> dict[str, Any]:
        """Adapt ``callback(step, total)`` to the pipeline: ``callback_on_step_end`` where it exists, else the
        legacy ``callback`` (which fires once per progress-bar step, so counting calls gives the step)."""
        if callback is None:
            return {}
        if "callback_on_step_end" in inspect.signature(self.pipeline_class().__call__).parameters:

            def on_step_end(pipeline: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
                # schedulers such as PNDM run more model steps than num_inference_steps: report the real count
                callback(index + 1, pipeline.num_timesteps)
                return tensors

            return {"callback_on_step_end": on_step_end}
        counter = itertools.count(1)

        def legacy(step: int, timestep: Any, latents: torch.Tensor) -> None:
            callback(next(counter), num_inference_steps)

        return {"callback": legacy, "callback_steps": 1}

    # ---- output ----------------------------------------------------------------------------------------
    def save(self, media: DecodedMedia, path: str | Path) -> Path:
        """Write ``media`` to ``path`` in this decoder's format (``file_extension`` is added when missing).

        Raises:
            ValueError: ``path`` has another extension.
        """
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(self.file_extension)
        if path.suffix.lower() != self.file_extension:
            raise ValueError(f"{self._name} writes {self.file_extension} files; got the path {path}")
        return write_media(media, path)
