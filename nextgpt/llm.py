"""Build the LLM core and its tokenizer from ``LLMConfig``: pretrained, randomly initialised, or on ``meta``.

Any Hugging Face causal LM works: the model class comes from ``AutoModelForCausalLM`` and the architecture from
``model_type``; nothing here is LLaMA-specific. ``trust_remote_code`` is never turned on (reliability item 13).
"""
from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from .config import LLMConfig
from .options import RuntimeOptions

logger = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"


def resolve_path(value: str, base_dir: str | Path | None) -> str:
    """Resolve a relative local path against ``base_dir``; hub ids (``org/name`` that do not exist locally) pass."""
    if value.startswith(BUILTIN_PREFIX):
        name = value[len(BUILTIN_PREFIX):]
        folder = resources.files("nextgpt") / "assets" / "tokenizers" / name
        if not folder.is_dir():
            raise FileNotFoundError(f"unknown builtin tokenizer {name!r}; shipped: {builtin_tokenizers()}")
        return str(folder)
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None and (Path(base_dir) / path).exists():
        return str(Path(base_dir) / path)
    return str(path) if path.exists() else value


def builtin_tokenizers() -> list[str]:
    folder = resources.files("nextgpt") / "assets" / "tokenizers"
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def load_tokenizer(config: LLMConfig, base_dir: str | Path | None = None) -> Any:
    """Load the LLM tokenizer (left padding for batched generation).

    Raises:
        ValueError: when neither ``tokenizer`` nor ``path`` is set.
        OSError: from transformers, with the path named, when the folder/id cannot be loaded offline.
    """
    source = config.tokenizer or config.path
    if source is None:
        raise ValueError("llm.tokenizer and llm.path are both unset: say where the LLM tokenizer comes from")
    tokenizer = AutoTokenizer.from_pretrained(resolve_path(source, base_dir), trust_remote_code=False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _quantization(options: RuntimeOptions) -> Any:
    if not (options.load_in_8bit or options.load_in_4bit):
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise RuntimeError("load_in_8bit/load_in_4bit need bitsandbytes: pip install bitsandbytes") from None
    if not torch.cuda.is_available():
        raise RuntimeError("load_in_8bit/load_in_4bit need a CUDA GPU; none is available")
    if options.load_in_4bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=options.torch_dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def build_llm(
    config: LLMConfig,
    *,
    base_dir: str | Path | None = None,
    allow_random_init: bool = False,
    options: RuntimeOptions | None = None,
    meta: bool = False,
) -> PreTrainedModel:
    """Build the causal LM.

    Args:
        config: where the weights come from (``path``) or what to build (``architecture``).
        base_dir: folder that relative paths are resolved against (the checkpoint folder).
        allow_random_init: build from ``architecture`` with random weights when ``path`` is unset.
        options: run-time dtype / device map / quantisation.
        meta: build from ``architecture`` (or the path's config) on the meta device — no memory, no weights.

    Raises:
        ValueError: when the config does not say how to build the LLM.
    """
    options = options or RuntimeOptions()
    if meta:
        if config.architecture is not None:
            hf_config = _architecture_config(config.architecture)
        elif config.path is not None:
            hf_config = AutoConfig.from_pretrained(resolve_path(config.path, base_dir), trust_remote_code=False)
        else:
            raise ValueError("llm: set path or architecture to build on the meta device")
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(hf_config, dtype=options.torch_dtype)
    if config.path is not None:
        source = resolve_path(config.path, base_dir)
        logger.info("loading LLM from %s", source)
        return AutoModelForCausalLM.from_pretrained(
            source,
            dtype=options.torch_dtype,
            device_map=options.device_map,
            quantization_config=_quantization(options),
            trust_remote_code=False,
        )
    if config.architecture is None:
        raise ValueError("llm: neither path (pretrained weights) nor architecture (random init) is set")
    if not allow_random_init:
        raise ValueError(
            "llm.path is not set and this config does not allow random initialisation; "
            "point llm.path at a causal LM folder or hub id (e.g. your merged Vicuna-7B v0)"
        )
    model = AutoModelForCausalLM.from_config(_architecture_config(config.architecture), dtype=options.torch_dtype)
    return model


def _architecture_config(architecture: dict[str, Any]) -> Any:
    kwargs = dict(architecture)
    return AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)


class MetaTokenizer:
    """Stands in for a tokenizer that is not available offline when a preset is built on the meta device.

    It knows only the base vocabulary size (``architecture['vocab_size']``) and gives added tokens consecutive
    ids after it — exactly what ``add_tokens`` does with the real tokenizer — so shapes and counts are right.
    """

    def __init__(self, vocab_size: int) -> None:
        self.base_size = vocab_size
        self.added: dict[str, int] = {}

    def __len__(self) -> int:
        return self.base_size + len(self.added)

    def add_tokens(self, tokens: list[str], special_tokens: bool = True) -> int:
        new = [t for t in tokens if t not in self.added]
        for token in new:
            self.added[token] = len(self)
        return len(new)

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [self.added[t] for t in tokens]
