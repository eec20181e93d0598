"""Run-time options (never saved with the model): devices, precision, generation knobs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class RuntimeOptions:
    """How to place and load the model.

    Attributes:
        device: where the encoder, projectors and decoders run ("cpu", "cuda", "cuda:1").
        dtype: "float32" | "float16" | "bfloat16" for the LLM, encoder and decoders.
        device_map: passed to transformers for the LLM (e.g. "auto"); None keeps it on ``device``.
        offload_idle_decoders: move a decoder back to CPU after each use (saves GPU memory).
        load_in_8bit / load_in_4bit: bitsandbytes quantisation of the LLM (needs a GPU).
        allow_pickle: accept pickle checkpoints (.pt/.pth/.bin), read with ``weights_only=True`` only.
    """

    device: str = "cpu"
    dtype: str = "float32"
    device_map: Any = None
    offload_idle_decoders: bool = False
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    allow_pickle: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not supported; use one of {sorted(_DTYPES)}")
        if self.load_in_8bit and self.load_in_4bit:
            raise ValueError("choose at most one of load_in_8bit and load_in_4bit")

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


@dataclass
class GenerationOptions:
    """Per-request generation settings.

    Attributes:
        max_new_tokens: budget for text + signal tokens (a started signal sequence is always completed).
        temperature: 0 → greedy; > 0 → sampling with ``top_p``.
        seed: makes sampling and media reproducible; None draws a fresh seed.
        force: modalities that must be produced (their signal tokens are decoded if the model does not).
        forbid: modalities that must not be produced (their signal tokens are masked).
        max_media_per_modality: bound on outputs of one modality per answer (stops degenerate loops).
        num_inference_steps / guidance_scale: decoder overrides (None: the decoder's defaults).
        decoder_kwargs: per-modality extra pipeline kwargs, e.g. {"video": {"num_frames": 8}}.
        output_dir: where media files are written (None: not written to disk).
        stop: extra stop strings.
        decode: False plans the answer's outputs without making them: the decoders do not run, and each output is
            a ``MediaOutput`` with its modality and empty ``data`` (nothing is saved). Which outputs an answer has
            (routing) is the same either way — the LLM's text does not depend on its media — at a fraction of the
            time; what ``nextgpt eval toyworld --routing-only`` uses.
        string_choices: JSON key → the only strings its value may be, e.g. ``{"path": ("inputs/cat.png",)}``:
            once the answer writes ``"path": "`` the value is decoded as one of them (``constrained.py``). The
            agent passes its working folder's files, so a planned call cannot name a file that is not there.
        name_choices: file names the answer's text may mention, e.g. ``("inputs/cat.png",)``: once the answer writes
            one's folder (``inputs/``) at the start of a word, the rest is decoded as a name in that folder
            (``constrained.NameChoices``). The agent passes its working folder's files, so an answer cannot
            misspell the file it talks about.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    force: frozenset[str] | set[str] | tuple[str, ...] = frozenset()
    forbid: frozenset[str] | set[str] | tuple[str, ...] = frozenset()
    max_media_per_modality: int = 1
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    decoder_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_dir: str | Path | None = "nextgpt-outputs"
    stop: tuple[str, ...] = ()
    decode: bool = True
    string_choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    name_choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = (self.name_choices,) if isinstance(self.name_choices, str) else tuple(self.name_choices or ())
        if not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"name_choices lists the file names an answer may mention, e.g. ['inputs/cat.png']; "
                             f"got {self.name_choices!r}")
        self.name_choices = names
        choices = {}
        for key, values in dict(self.string_choices or {}).items():
            values = (values,) if isinstance(values, str) else tuple(values)
            if not isinstance(key, str) or not key or not values or not all(isinstance(v, str) for v in values):
                raise ValueError(f"string_choices maps a JSON key to the strings its value may be, e.g. "
                                 f"{{'path': ['inputs/cat.png']}}; got {key!r}: {values!r}")
            choices[key] = values
        self.string_choices = choices
        self.force = frozenset(self.force)
        self.forbid = frozenset(self.forbid)
        if self.force & self.forbid:
            raise ValueError(f"modalities both forced and forbidden: {sorted(self.force & self.forbid)}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be ≥ 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be ≥ 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_media_per_modality < 1:
            raise ValueError(f"max_media_per_modality must be ≥ 1, got {self.max_media_per_modality}")

    def check_modalities(self, available: list[str]) -> None:
        """Raise ValueError if force/forbid name a modality the model cannot generate."""
        unknown = sorted((self.force | self.forbid) - set(available))
        if unknown:
            raise ValueError(f"force/forbid name {unknown}, which this model cannot generate; it generates {available}")
