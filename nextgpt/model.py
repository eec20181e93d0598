"""The NExT-GPT model: frozen encoder → input projectors → causal LM with signal tokens → output projectors.

Decoders are not part of this module (they are large, frozen and loaded lazily by ``nextgpt.pipeline``); the
output projectors end at the decoder conditions ``[B, Q, D]``.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from nextgpt.encoders import build_encoder
from nextgpt.projectors import build_input_projector, build_output_projector

from .config import NextGPTConfig
from .llm import MetaTokenizer, build_llm, load_tokenizer
from .options import RuntimeOptions

logger = logging.getLogger(__name__)


class NextGPTModel(nn.Module):
    """Holds the encoder, LLM, tokenizer and projectors; knows the token layout.

    Build it with ``NextGPTModel.build(config)``; the constructor takes ready components so tests can pass
    their own.
    """

    def __init__(
        self,
        config: NextGPTConfig,
        llm: nn.Module,
        tokenizer: Any,
        encoder: nn.Module,
        input_projectors: nn.ModuleDict,
        output_projectors: nn.ModuleDict,
    ) -> None:
        super().__init__()
        self.config = config
        self.llm = llm
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.input_projectors = input_projectors
        self.output_projectors = output_projectors
        ids = tokenizer.convert_tokens_to_ids(config.added_tokens)
        self.added_token_ids: dict[str, int] = dict(zip(config.added_tokens, ids))
        self.media_token_id: int = self.added_token_ids[config.media_token]
        self.signal_token_ids: dict[str, list[int]] = {
            spec.name: [self.added_token_ids[t] for t in spec.signal_tokens] for spec in config.output_modalities
        }
        self.signal_owner: dict[int, tuple[str, int]] = {
            token_id: (name, index) for name, ids in self.signal_token_ids.items() for index, token_id in enumerate(ids)
        }

    # ---- construction --------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        config: NextGPTConfig,
        *,
        base_dir: str | Path | None = None,
        options: RuntimeOptions | None = None,
        meta: bool = False,
    ) -> "NextGPTModel":
        """Build every part from the config (weights from paths; random init only if the config allows it).

        Args:
            meta: instantiate on the meta device (no memory, no weights) — for shapes and parameter counts.
        """
        options = options or RuntimeOptions()
        torch.manual_seed(config.seed)
        try:
            tokenizer = load_tokenizer(config.llm, base_dir)
        except (ValueError, OSError):
            if not (meta and config.llm.architecture is not None):
                raise
            # Shapes only: a preset whose tokenizer is not on this machine (e.g. nextgpt-7b before download).
            tokenizer = MetaTokenizer(config.llm.architecture["vocab_size"])
        llm = build_llm(config.llm, base_dir=base_dir, allow_random_init=config.allow_random_init, options=options,
                        meta=meta)
        add_tokens(tokenizer, llm, config.added_tokens)
        if config.lora is not None:
            llm = apply_lora(llm, config.lora)
        encoder = build_encoder(
            config.encoder, base_dir=base_dir, allow_random_init=config.allow_random_init, seed=config.seed,
            device="meta" if meta else None, allow_pickle=options.allow_pickle,
        )
        hidden = llm.get_input_embeddings().embedding_dim
        with torch.device("meta") if meta else contextlib.nullcontext():
            input_projectors = nn.ModuleDict()
            for spec in config.input_modalities:
                key = config.input_projector_key(spec.name)
                if key not in input_projectors:
                    input_projectors[key] = build_input_projector(
                        spec.input_projector, config.encoder.embed_dim, hidden
                    )
            output_projectors = nn.ModuleDict(
                {
                    spec.name: build_output_projector(
                        spec.output_projector, hidden, spec.decoder.condition_dim, spec.decoder.condition_tokens,
                        spec.num_signal_tokens,
                    )
                    for spec in config.output_modalities
                }
            )
        model = cls(config, llm, tokenizer, encoder, input_projectors, output_projectors)
        if not meta:
            for module in (encoder, input_projectors, output_projectors):
                module.to(options.device)
            encoder.to(options.torch_dtype)
            # With a device map or quantisation, transformers/accelerate placed the LLM already.
            if options.device_map is None and not (options.load_in_8bit or options.load_in_4bit):
                llm.to(options.device)
        return model

    # ---- token layout --------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.llm.get_input_embeddings().embedding_dim

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    def tokens_per_item(self, modality: str) -> int:
        return self.input_projectors[self.config.input_projector_key(modality)].num_tokens

    def placeholder_expansion(self, modality: str) -> str:
        """The prompt text an input item's placeholder becomes: wrap + media tokens + wrap."""
        spec = self.config.modality(modality)
        return spec.wrap[0] + self.config.media_token * self.tokens_per_item(modality) + spec.wrap[1]

    # ---- inputs --------------------------------------------------------------------------------------
    def encode_media(self, modality: str, items: Sequence[Any]) -> torch.Tensor:
        """Encode (frozen) and project media items. Returns ``[len(items), T, H]``."""
        with torch.no_grad():
            embeddings = self.encoder.encode(modality, items)
        return self.project_media(modality, embeddings)

    def project_media(self, modality: str, embeddings: torch.Tensor) -> torch.Tensor:
        """Project encoder embeddings ``[B, E]`` to LLM tokens ``[B, T, H]`` (trainable)."""
        projector = self.input_projectors[self.config.input_projector_key(modality)]
        weight = next(projector.parameters())
        return projector(embeddings.to(weight.device, weight.dtype))

    def embed(self, input_ids: torch.Tensor, media_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with media-token positions replaced, in order, by ``media_tokens`` ``[M, H]``.

        Raises:
            ValueError: naming both counts when the prompt's media tokens and the given embeddings differ.
        """
        embeds = self.llm.get_input_embeddings()(input_ids)
        mask = input_ids == self.media_token_id
        expected = int(mask.sum())
        given = 0 if media_tokens is None else int(media_tokens.shape[0])
        if expected != given:
            raise ValueError(
                f"the prompt has {expected} media token positions but {given} media token embeddings were given; "
                "each placeholder must match one attached media item"
            )
        if given:
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), media_tokens.to(embeds.device, embeds.dtype))
        return embeds

    # ---- outputs -------------------------------------------------------------------------------------
    def signal_conditions(
        self, modality: str, signal_hidden: torch.Tensor, signal_embeds: torch.Tensor
    ) -> torch.Tensor:
        """Output projector on signal-token features.

        Args:
            signal_hidden: last-layer hidden states at the signal positions ``[B, N, H]``.
            signal_embeds: the signal tokens' input embeddings ``[B, N, H]``.

        Returns:
            Decoder conditions ``[B, Q, D]``.
        """
        projector = self.output_projectors[modality]
        weight = next(projector.parameters())
        return projector((signal_hidden + signal_embeds).to(weight.device, weight.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        media_tokens: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> Any:
        """Teacher-forced pass for training: returns the LM output with hidden states."""
        embeds = self.embed(input_ids, media_tokens)
        return self.llm(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels,
                        output_hidden_states=True)

    # ---- trainable state -----------------------------------------------------------------------------
    def added_token_rows(self) -> dict[str, torch.Tensor]:
        """Rows of the added tokens in the input (and untied output) embedding tables."""
        ids = torch.tensor(list(self.added_token_ids.values()))
        rows = {"token_rows.input": self.llm.get_input_embeddings().weight[ids]}
        output = self.llm.get_output_embeddings()
        if output is not None and output.weight is not self.llm.get_input_embeddings().weight:
            rows["token_rows.output"] = output.weight[ids]
        return rows

    def load_added_token_rows(self, rows: dict[str, torch.Tensor]) -> None:
        ids = torch.tensor(list(self.added_token_ids.values()))
        with torch.no_grad():  # rows stored in another dtype (e.g. a float16 checkpoint) take the table's dtype
            table = self.llm.get_input_embeddings().weight
            if "token_rows.input" in rows:
                table[ids] = rows["token_rows.input"].to(device=self.device, dtype=table.dtype)
            output = self.llm.get_output_embeddings()
            if "token_rows.output" in rows and output is not None:
                output.weight[ids] = rows["token_rows.output"].to(device=self.device, dtype=output.weight.dtype)


def add_tokens(tokenizer: Any, llm: nn.Module, tokens: list[str]) -> None:
    """Add ``tokens`` as special tokens in order and resize the LLM's embeddings to the tokenizer.

    Raises:
        ValueError: if a token was present before but not at the id it needs (ids must be consecutive).
    """
    tokenizer.add_tokens(tokens, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise ValueError(f"added tokens did not get consecutive ids: {dict(zip(tokens, ids))}")
    if llm.get_input_embeddings().num_embeddings < len(tokenizer):
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)


def apply_lora(llm: nn.Module, lora: Any) -> nn.Module:
    """Wrap the LLM with peft LoRA adapters (B initialised to zero: outputs are unchanged until trained)."""
    from peft import LoraConfig, get_peft_model

    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(llm, peft_config)
