"""Convert the released NExT-GPT checkpoint (``pytorch_model.pt``) to our safetensors layout.

The official file is a pickled fp16 OrderedDict of the trainable weights (reference doc). It is read with
``torch.load(weights_only=True)`` only. Key map (official → ours)::

    llama_proj.{weight,bias}                        → input_projectors.shared.proj.{weight,bias}
    gen_text_hidden_fcs{,_video,_audio}.0.fc.*      → output_projectors.{image,video,audio}.in_proj.*
                                         .tfm.*     → output_projectors.<m>.transformer.*
                                         .model.*   → output_projectors.<m>.out_proj.*
                                         .query_embs→ output_projectors.<m>.queries
    llama_model.base_model.model.*lora_*            → llm.base_model.model.*lora_*   (peft keys, unchanged)
    llama_model.base_model.model.model.embed_tokens.weight → token_rows.input (added rows) + embeddings.safetensors
    llama_model.base_model.model.lm_head.weight            → token_rows.output (added rows) + embeddings.safetensors

The legacy code trained the whole embedding and output tables by accident; the converted folder keeps them in
``embeddings.safetensors`` (applied on load) so the converted model behaves as the released one.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from . import checkpoint
from .checkpoint import EMBEDDINGS_NAME
from .config import NextGPTConfig

logger = logging.getLogger(__name__)

OUTPUT_PREFIXES = {"gen_text_hidden_fcs.0.": "image", "gen_text_hidden_fcs_video.0.": "video",
                   "gen_text_hidden_fcs_audio.0.": "audio"}
OUTPUT_PARTS = {"fc.": "in_proj.", "tfm.": "transformer.", "model.": "out_proj.", "query_embs": "queries"}
OFFICIAL_EMBED = "llama_model.base_model.model.model.embed_tokens.weight"
OFFICIAL_HEAD = "llama_model.base_model.model.lm_head.weight"


def map_official_key(key: str) -> str | None:
    """Our key for an official key (None for the embedding tables, handled separately).

    Raises:
        KeyError: for a key the official layout does not have.
    """
    if key in (OFFICIAL_EMBED, OFFICIAL_HEAD):
        return None
    if key.startswith("llama_proj."):
        return "input_projectors.shared.proj." + key[len("llama_proj."):]
    for prefix, modality in OUTPUT_PREFIXES.items():
        if key.startswith(prefix):
            rest = key[len(prefix):]
            for old, new in OUTPUT_PARTS.items():
                if rest.startswith(old):
                    return f"output_projectors.{modality}.{new}{rest[len(old):]}"
    if key.startswith("llama_model.") and "lora_" in key:
        return "llm." + key[len("llama_model."):]
    raise KeyError(f"unexpected key in the official checkpoint: {key!r}")


def convert_state(official: dict[str, torch.Tensor], config: NextGPTConfig,
                  dtype: torch.dtype = torch.float32) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Map an official state dict to (our trainable state, full embedding tables).

    The result is checked against the shapes the config's model expects (built on the meta device).

    Raises:
        ValueError: listing missing/unexpected keys and wrong shapes.
    """
    from .model import NextGPTModel

    ours: dict[str, torch.Tensor] = {}
    embeddings: dict[str, torch.Tensor] = {}
    for key, value in official.items():
        mapped = map_official_key(key)
        if mapped is not None:
            ours[mapped] = value.to(dtype)
    model = NextGPTModel.build(config, meta=True)
    added = list(model.added_token_ids.values())
    for official_key, name in ((OFFICIAL_EMBED, "input"), (OFFICIAL_HEAD, "output")):
        if official_key in official:
            table = official[official_key].to(dtype)
            embeddings[name] = table
            ours[f"token_rows.{name}"] = table[added]
    expected = {k: tuple(v.shape) for k, v in checkpoint.trainable_state(model).items()}
    problems = [f"missing {k} {s}" for k, s in expected.items() if k not in ours]
    problems += [f"unexpected {k}" for k in ours if k not in expected]
    problems += [f"{k}: {tuple(ours[k].shape)} != expected {s}" for k, s in expected.items()
                 if k in ours and tuple(ours[k].shape) != s]
    if problems:
        raise ValueError(f"the checkpoint does not fit config {config.name!r}: " + "; ".join(problems[:8])
                         + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""))
    return ours, embeddings


def convert_official(source: str | Path, out_dir: str | Path, config: NextGPTConfig) -> Path:
    """Read ``pytorch_model.pt`` (weights_only) and write a checkpoint folder with config.json and safetensors."""
    state = checkpoint.read_weights(source, allow_pickle=True)
    ours, embeddings = convert_state(state, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.write_weights(ours, out / checkpoint.WEIGHTS_NAME)
    if embeddings:
        checkpoint.write_weights(embeddings, out / EMBEDDINGS_NAME)
    config.save(out)
    logger.info("converted %d tensors from %s into %s", len(state), source, out)
    return out
