"""Typed training configuration (``nextgpt train --config stage.yaml --set optim.lr=1e-4``).

A ``TrainConfig`` is loaded from YAML, checked field by field (unknown keys are errors), and may be changed from
the command line with dotted ``key=value`` overrides whose values are parsed as YAML scalars.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nextgpt.config import LoRAConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSource(_Strict):
    """Where the model comes from: a preset (stage 1) or a checkpoint folder written by a previous stage."""

    preset: str | None = Field(None, description="preset name, e.g. 'tiny' or 'nextgpt-7b'")
    preset_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the preset")
    checkpoint: str | None = Field(None, description="a save_pretrained folder (e.g. stage 1's output)")

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSource":
        if (self.preset is None) == (self.checkpoint is None):
            raise ValueError("model: give exactly one of 'preset' (e.g. tiny) or 'checkpoint' (a save_pretrained "
                             f"folder); got preset={self.preset!r}, checkpoint={self.checkpoint!r}")
        if self.preset_args and self.preset is None:
            raise ValueError("model.preset_args only applies together with model.preset")
        return self


class DataConfig(_Strict):
    """Dataset files (any format ``nextgpt data validate`` reads) and batching."""

    train: list[str] = Field(..., min_length=1, description="training files; relative media paths resolve "
                                                               "against each file's folder")
    eval: list[str] = Field(default_factory=list, description="evaluation files (empty: no eval loop)")
    root: str | None = Field(None, description="folder relative media paths resolve against (default: each "
                                               "file's folder)")
    format: str | None = Field(None, description="data format (default: detected per file), see 'nextgpt data'")
    task: Literal["comprehension", "generation"] = Field("comprehension", description="what X-caption pairs "
                                                          "become: comprehension (stage 1) or generation (stage 2)")
    max_length: int = Field(512, gt=0, description="tokens per example; longer ones are cut (whole media kept)")
    batch_size: int = Field(4, gt=0, description="examples per process per micro-batch")
    eval_batch_size: int | None = Field(None, gt=0)
    shuffle: bool = True
    group_by_length: bool = Field(False, description="batch examples of similar length together (less padding, "
                                                     "faster when lengths vary; the order stays random)")
    num_workers: int = Field(0, ge=0)
    cache_dir: str | None = Field(None, description="feature cache written by 'nextgpt data cache' (None: encode "
                                                    "live)")


class OptimConfig(_Strict):
    """Optimiser and learning-rate schedule (linear warmup, then cosine/linear decay or constant)."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = Field(4e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr as a fraction of lr")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm (None: no clipping)")
    lr_scale: dict[str, float] = Field(default_factory=dict, description="glob pattern over the trained "
                                       "parameters' names (as in 'trainable') → multiplier of lr, e.g. "
                                       "{'input_projectors.*': 0.1}; the first matching pattern wins, every "
                                       "pattern must match a trained parameter")

    @field_validator("lr_scale")
    @classmethod
    def _positive_scales(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {pattern: scale for pattern, scale in value.items() if not scale > 0}
        if bad:
            raise ValueError(f"lr_scale multipliers must be > 0, got {bad}; to keep parameters fixed, leave them "
                             "out of 'trainable'")
        return value


class DenoiseConfig(_Strict):
    """Diffusion noise-prediction loss through the frozen decoder UNet (off by default)."""

    enabled: bool = False
    weight: float = Field(1.0, ge=0)
    snr_gamma: float | None = Field(5.0, gt=0, description="min-SNR weighting γ (None: plain MSE)")


class LossConfig(_Strict):
    lm_weight: float = Field(1.0, ge=0, description="weight of the next-token loss on assistant tokens")
    signal_weight: float = Field(1.0, ge=0, description="weight of the signal-feature distance loss")
    signal_scale: dict[str, float] = Field(default_factory=dict, description="per-modality scale (default 1.0)")
    route_weight: float = Field(0.0, ge=0, description="extra weight on the next-token loss of each output's first "
                                                       "signal token: the model's choice of output modality, one "
                                                       "token among an answer's many in the LM loss (0: off)")
    after_output_weight: float = Field(0.0, ge=0, description="extra weight on the next-token loss of the token "
                                                              "right after each output's last signal token (the "
                                                              "answer's end, or its words), predicted from a "
                                                              "state the signal loss also shapes (0: off)")
    answer_start_weight: float = Field(0.0, ge=0, description="extra weight on the next-token loss of each "
                                                              "trained answer's first token: which kind of answer "
                                                              "(words, an output, a tool call) the model starts "
                                                              "(0: off)")
    denoise: DenoiseConfig = Field(default_factory=DenoiseConfig)


class TrainConfig(_Strict):
    """One training run. ``trainable`` globs are matched against ``NextGPTModel.named_parameters()``."""

    stage: Literal[1, 2, 3]
    model: ModelSource
    output_dir: str
    data: DataConfig
    trainable: list[str] = Field(..., min_length=1, description="glob patterns of parameters to train, e.g. "
                                                                 "'input_projectors.*', '*lora_*'")
    train_token_rows: bool = Field(False, description="also train the added (signal) token rows of the "
                                                      "embedding tables; every other row stays frozen")
    lora: LoRAConfig | None = Field(None, description="add LoRA adapters (stage 3); saved in the model config")
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    max_steps: int | None = Field(None, gt=0, description="optimizer steps (None: 'epochs' passes over the data)")
    epochs: int = Field(1, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    log_every: int = Field(10, gt=0)
    eval_every: int | None = Field(None, gt=0, description="steps between evals (None: at the end only)")
    save_every: int | None = Field(None, gt=0, description="steps between resumable checkpoints (None: none)")
    keep_checkpoints: int = Field(2, gt=0, description="resumable checkpoints kept (oldest removed)")
    log_with: list[str] | Literal["auto"] = Field("auto", description="Accelerate trackers; 'auto': TensorBoard "
                                                                      "when installed")
    progress_bar: bool = True

    @model_validator(mode="after")
    def _checks(self) -> "TrainConfig":
        if self.lora is not None and not any("lora" in p for p in self.trainable):
            raise ValueError("lora is set but no 'trainable' pattern matches LoRA weights; add '*lora_*'")
        return self


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML training config and apply ``key.sub=value`` overrides.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: YAML errors, malformed overrides, or validation errors — naming the file and the fields.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} not found (see configs/ for examples)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of training settings, got {type(data).__name__}")
    for override in overrides or []:
        apply_override(data, override)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as error:
        raise ValueError(f"{path} is not a valid training config:\n{error}") from None


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``data[a][b] = value`` for ``"a.b=value"`` (value parsed as YAML: numbers, booleans, lists).

    Raises:
        ValueError: without '=' or with an empty key.
    """
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {override!r} must look like key.sub=value (e.g. optim.lr=1e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
