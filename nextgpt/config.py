"""Typed, validated configuration: one ``ModalitySpec`` per modality plus the LLM, encoder and template.

The config is saved as ``config.json`` next to the weights. Run-time knobs (device, dtype, generation) live in
separate dataclasses (``nextgpt.options``) and are never saved with the model.

Every component config has a ``path`` (Hugging Face id or local folder/file; relative paths are resolved against
the checkpoint folder) and/or an ``architecture`` (keyword arguments that build the component without weights).
``path`` wins when weights are wanted; ``architecture`` is used for random initialisation (only when the config
allows it) and for instantiation on the ``meta`` device.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CONFIG_NAME = "config.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MediaLimits(_Strict):
    """Limits on untrusted media inputs (reliability.md items 21–24)."""

    max_file_bytes: int = Field(64 * 1024 * 1024, gt=0, description="largest accepted media file")
    max_image_pixels: int = Field(40_000_000, gt=0, description="width × height, checked before decoding")
    image_formats: list[str] = ["PNG", "JPEG", "WEBP", "GIF", "BMP"]
    max_audio_seconds: float = Field(120.0, gt=0)
    max_video_seconds: float = Field(120.0, gt=0)
    max_video_frame_pixels: int = Field(1920 * 1080, gt=0)
    max_video_frames: int = Field(3600, gt=0)
    max_prompt_chars: int = Field(32_000, gt=0)


class EncoderConfig(_Strict):
    """The frozen multimodal encoder (ImageBind by default)."""

    kind: str = "imagebind"
    path: str | None = Field(None, description="weights file (.safetensors, or .pth with explicit opt-in)")
    architecture: dict[str, Any] = Field(default_factory=dict, description="constructor kwargs of the encoder")
    embed_dim: int = Field(..., gt=0, description="size of the pooled embedding given to the input projectors")
    options: dict[str, Any] = Field(default_factory=dict, description="preprocessing options (clips, sizes)")
    limits: MediaLimits = Field(default_factory=MediaLimits)


class ProjectorConfig(_Strict):
    """A projector by registry name; input/output sizes are derived from the components it connects."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)


class DecoderConfig(_Strict):
    """A diffusion decoder conditioned on ``condition_tokens × condition_dim`` prompt embeddings."""

    kind: str
    path: str | None = Field(None, description="diffusers pipeline folder or hub id")
    architecture: dict[str, Any] | None = Field(None, description="component configs for building without weights")
    condition_tokens: int = Field(..., gt=0, description="Q: sequence length of prompt_embeds")
    condition_dim: int = Field(..., gt=0, description="D: width of prompt_embeds")
    defaults: dict[str, Any] = Field(default_factory=dict, description="default call kwargs (steps, guidance, size)")


class ModalitySpec(_Strict):
    """Everything the system knows about one modality; the only source of its token strings and counts."""

    name: str = Field(..., pattern=r"^[a-z][a-z0-9_]*$")
    placeholder: str = Field("", description="marks where an input item goes in the prompt; default <name>")
    signal_prefix: str = Field("", description="signal tokens are [PREFIX0]..[PREFIXn-1]")
    num_signal_tokens: int = Field(0, ge=0, description="0: this modality is never generated")
    wrap: tuple[str, str] = Field(("", ""), description="text placed before/after an input item's tokens")
    input_projector: ProjectorConfig | None = None
    output_projector: ProjectorConfig | None = None
    decoder: DecoderConfig | None = None

    @model_validator(mode="after")
    def _defaults_and_consistency(self) -> "ModalitySpec":
        if not self.placeholder:
            object.__setattr__(self, "placeholder", f"<{self.name}>")
        if not self.signal_prefix:
            object.__setattr__(self, "signal_prefix", self.name.upper())
        generates = self.num_signal_tokens > 0
        if generates != (self.output_projector is not None) or generates != (self.decoder is not None):
            raise ValueError(
                f"modality {self.name!r}: num_signal_tokens={self.num_signal_tokens}, output_projector="
                f"{'set' if self.output_projector else 'None'}, decoder={'set' if self.decoder else 'None'}; "
                "a generated modality needs all three (num_signal_tokens > 0), an input-only one none of them"
            )
        return self

    @property
    def signal_tokens(self) -> list[str]:
        return [f"[{self.signal_prefix}{i}]" for i in range(self.num_signal_tokens)]

    @property
    def is_input(self) -> bool:
        return self.input_projector is not None

    @property
    def is_output(self) -> bool:
        return self.num_signal_tokens > 0


class LLMConfig(_Strict):
    """Any Hugging Face causal LM. ``architecture`` holds a transformers config dict with ``model_type``."""

    path: str | None = Field(None, description="hub id or local folder of a causal LM")
    architecture: dict[str, Any] | None = Field(None, description="transformers config kwargs incl. model_type")
    tokenizer: str | None = Field(None, description="tokenizer folder/hub id; 'builtin:NAME' for shipped ones")

    @field_validator("architecture")
    @classmethod
    def _needs_model_type(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and "model_type" not in value:
            raise ValueError("llm.architecture needs a 'model_type' (e.g. 'llama')")
        return value


class LoRAConfig(_Strict):
    """LoRA adapters on the LLM (peft); part of the model once trained (stage 3), so saved with it."""

    r: int = Field(32, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class NextGPTConfig(_Strict):
    """The whole system: encoder → input projectors → LLM with signal tokens → output projectors → decoders."""

    name: str = "custom"
    llm: LLMConfig
    encoder: EncoderConfig
    modalities: list[ModalitySpec]
    template: str = "vicuna_v0"
    lora: LoRAConfig | None = Field(None, description="LoRA adapters on the LLM (None: no adapters)")
    media_token: str = Field("<media>", description="added token whose embeddings are replaced by media tokens")
    reserved_tokens: list[str] = Field(
        default_factory=list, description="tokens added after media_token, before signal tokens (id layout)"
    )
    shared_input_projector: bool = Field(
        False, description="one input projector (the first input modality's config) for every input modality"
    )
    allow_random_init: bool = Field(False, description="build components without weights from architecture")
    seed: int = Field(0, description="seed for random initialisation")

    @model_validator(mode="after")
    def _unique(self) -> "NextGPTConfig":
        for attribute in ("name", "placeholder", "signal_prefix"):
            values = [getattr(m, attribute) for m in self.modalities]
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"modalities must have distinct {attribute}s; repeated: {duplicates}")
        if not self.modalities:
            raise ValueError("a NextGPTConfig needs at least one modality")
        if self.shared_input_projector:
            kinds = {m.input_projector.kind for m in self.modalities if m.input_projector}
            if len(kinds) > 1:
                raise ValueError(f"shared_input_projector=True but modalities ask for different kinds: {kinds}")
        return self

    # ---- lookups -------------------------------------------------------------------------------------
    def modality(self, name: str) -> ModalitySpec:
        for spec in self.modalities:
            if spec.name == name:
                return spec
        raise KeyError(f"unknown modality {name!r}; this model has: {[m.name for m in self.modalities]}")

    @property
    def input_modalities(self) -> list[ModalitySpec]:
        return [m for m in self.modalities if m.is_input]

    @property
    def output_modalities(self) -> list[ModalitySpec]:
        return [m for m in self.modalities if m.is_output]

    def input_projector_key(self, name: str) -> str:
        return "shared" if self.shared_input_projector else name

    @property
    def added_tokens(self) -> list[str]:
        """Tokens added to the LLM vocabulary, in id order."""
        tokens = [self.media_token, *self.reserved_tokens]
        for spec in self.modalities:
            tokens.extend(spec.signal_tokens)
        return tokens

    # ---- persistence ---------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "NextGPTConfig":
        """Read ``config.json`` from a checkpoint folder.

        Raises:
            FileNotFoundError / ValueError: naming the file and what is wrong with it.
        """
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a NextGPT checkpoint folder holds a {CONFIG_NAME}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        try:
            return cls.model_validate(data)
        except Exception as error:  # pydantic.ValidationError: keep its field-by-field report
            raise ValueError(f"{path} is not a valid NextGPT config:\n{error}") from None


Precision = Literal["float32", "float16", "bfloat16"]
