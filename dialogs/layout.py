"""``TokenLayout``: what tokenisation needs from a model (tokenizer, media token, placeholders, signal tokens).

Training code builds it with ``TokenLayout.from_model(model)`` so that training prompts are built from exactly
the strings inference uses (``model.placeholder_expansion``, the config's signal tokens and template). Tests
build it with ``TokenLayout.from_config(config, tokenizer)`` and need no LLM weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class TokenLayout:
    """The token strings and ids of one model.

    Attributes:
        tokenizer: a Hugging Face tokenizer with ``media_token`` and the signal tokens added as special tokens.
        template: name of the conversation template (``config.template``).
        media_token / media_token_id: the token whose embeddings are replaced by projected media tokens.
        placeholders: input modality → the placeholder written in user text (``<image>``).
        expansions: input modality → the text a placeholder becomes (wrap + media_token × T + wrap).
        tokens_per_item: input modality → T, the number of media tokens per item.
        signal_tokens / signal_token_ids: output modality → its signal token strings / ids, in order.
        reserved_tokens: further added tokens that may never appear in data text.
    """

    tokenizer: Any
    template: str
    media_token: str
    media_token_id: int
    placeholders: Mapping[str, str]
    expansions: Mapping[str, str]
    tokens_per_item: Mapping[str, int]
    signal_tokens: Mapping[str, tuple[str, ...]]
    signal_token_ids: Mapping[str, tuple[int, ...]]
    reserved_tokens: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_model(cls, model: Any, template: str | None = None) -> "TokenLayout":
        """Everything from a ``NextGPTModel`` (its tokenizer, ``placeholder_expansion``, signal token ids)."""
        config = model.config
        inputs = config.input_modalities
        return cls(
            tokenizer=model.tokenizer,
            template=template or config.template,
            media_token=config.media_token,
            media_token_id=model.media_token_id,
            placeholders={spec.name: spec.placeholder for spec in inputs},
            expansions={spec.name: model.placeholder_expansion(spec.name) for spec in inputs},
            tokens_per_item={spec.name: model.tokens_per_item(spec.name) for spec in inputs},
            signal_tokens={spec.name: tuple(spec.signal_tokens) for spec in config.output_modalities},
            signal_token_ids={name: tuple(ids) for name, ids in model.signal_token_ids.items()},
            reserved_tokens=tuple(config.reserved_tokens),
        )

    @classmethod
    def for_config(cls, config: Any, base_dir: str | Path | None = None) -> "TokenLayout":
        """Load the config's tokenizer (offline), add the model's tokens to it, and build the layout — everything
        tokenisation needs, without building the LLM (for ``nextgpt data validate --preset/--model``)."""
        from nextgpt.llm import load_tokenizer

        tokenizer = load_tokenizer(config.llm, base_dir)
        tokenizer.add_tokens(list(config.added_tokens), special_tokens=True)
        return cls.from_config(config, tokenizer)

    @classmethod
    def from_config(cls, config: Any, tokenizer: Any, tokens_per_item: int | Mapping[str, int] | None = None,
                    template: str | None = None) -> "TokenLayout":
        """Build from a ``NextGPTConfig`` and a tokenizer that already holds ``config.added_tokens``.

        Args:
            tokens_per_item: media tokens per input item; None reads the input projectors' ``num_tokens``
                param (default 1, as the ``linear`` and ``mlp`` projectors).

        Raises:
            ValueError: when an added token is not a single token of the tokenizer (add them first with
                ``nextgpt.model.add_tokens``).
        """
        inputs = config.input_modalities
        if tokens_per_item is None:
            counts = {spec.name: _projector_tokens(config, spec) for spec in inputs}
        elif isinstance(tokens_per_item, int):
            counts = {spec.name: tokens_per_item for spec in inputs}
        else:
            counts = {spec.name: tokens_per_item[spec.name] for spec in inputs}
        ids = dict(zip(config.added_tokens, tokenizer.convert_tokens_to_ids(config.added_tokens)))
        unknown = [token for token, token_id in ids.items() if token_id is None or token_id == tokenizer.unk_token_id]
        if unknown:
            raise ValueError(f"the tokenizer lacks the added tokens {unknown[:5]}...; call "
                             "nextgpt.model.add_tokens(tokenizer, llm, config.added_tokens) first")
        return cls(
            tokenizer=tokenizer,
            template=template or config.template,
            media_token=config.media_token,
            media_token_id=ids[config.media_token],
            placeholders={spec.name: spec.placeholder for spec in inputs},
            expansions={spec.name: spec.wrap[0] + config.media_token * counts[spec.name] + spec.wrap[1]
                        for spec in inputs},
            tokens_per_item=counts,
            signal_tokens={spec.name: tuple(spec.signal_tokens) for spec in config.output_modalities},
            signal_token_ids={spec.name: tuple(ids[t] for t in spec.signal_tokens)
                              for spec in config.output_modalities},
            reserved_tokens=tuple(config.reserved_tokens),
        )

    @property
    def input_modalities(self) -> list[str]:
        return list(self.expansions)

    @property
    def output_modalities(self) -> list[str]:
        return list(self.signal_tokens)

    @property
    def forbidden_strings(self) -> list[str]:
        """Token strings that data text may not contain (they would forge media or signal positions)."""
        return [self.media_token, *self.reserved_tokens, *(t for toks in self.signal_tokens.values() for t in toks)]


def _projector_tokens(config: Any, spec: Any) -> int:
    """T of a modality's input projector, from its config (the shared projector is the first input's)."""
    source = config.input_modalities[0] if config.shared_input_projector else spec
    return int(source.input_projector.params.get("num_tokens", 1))
