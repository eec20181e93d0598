"""Parameter table of a config, built on the meta device (no memory, no weights, no downloads)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import NextGPTConfig
from .model import NextGPTModel


@dataclass
class ComponentCount:
    name: str
    total: int
    trainable: int


def parameter_table(config: NextGPTConfig, include_decoders: bool = True) -> list[ComponentCount]:
    """Total and trainable parameters per component. Trainable = the NExT-GPT recipe's: input and output
    projectors and LoRA (the encoder, the base LLM and the decoders are frozen)."""
    model = NextGPTModel.build(config, meta=True)
    rows: list[ComponentCount] = []
    rows.append(ComponentCount(f"encoder ({config.encoder.kind})", _numel(model.encoder), 0))
    lora = sum(p.numel() for n, p in model.llm.named_parameters() if "lora_" in n)
    llm_type = model.llm.config.model_type
    rows.append(ComponentCount(f"llm ({llm_type})", _numel(model.llm) - lora, 0))
    if config.lora is not None:
        rows.append(ComponentCount(f"lora (r={config.lora.r})", lora, lora))
    for key, projector in model.input_projectors.items():
        rows.append(ComponentCount(f"input projector ({key})", _numel(projector), _numel(projector)))
    for key, projector in model.output_projectors.items():
        rows.append(ComponentCount(f"output projector ({key})", _numel(projector), _numel(projector)))
    hidden = model.hidden_size
    rows.append(ComponentCount(f"added token rows ({len(config.added_tokens)} × {hidden}, in+out; stage 2)",
                               2 * len(config.added_tokens) * hidden, 0))
    if include_decoders:
        from nextgpt.decoders import build_components, count_parameters

        for spec in config.output_modalities:
            if spec.decoder.architecture is None:
                continue
            components = build_components(spec.decoder.architecture, device="meta", tokenizers=False)
            total = sum(count_parameters(components).values())
            rows.append(ComponentCount(f"decoder {spec.name} ({spec.decoder.kind})", total, 0))
    return rows


def format_table(rows: list[ComponentCount]) -> str:
    """Render rows with totals and fp16/bf16 memory."""
    lines = [f"{'component':<58}{'total':>16}{'trainable':>16}{'fp16/bf16':>12}"]
    for row in rows:
        lines.append(f"{row.name:<58}{row.total:>16,}{row.trainable:>16,}{_gib(row.total):>12}")
    total = sum(r.total for r in rows if not r.name.startswith("added token rows"))
    trainable = sum(r.trainable for r in rows)
    lines.append(f"{'TOTAL':<58}{total:>16,}{trainable:>16,}{_gib(total):>12}")
    return "\n".join(lines)


def _numel(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def _gib(params: int) -> str:
    size = params * 2
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


__all__ = ["ComponentCount", "parameter_table", "format_table"]
