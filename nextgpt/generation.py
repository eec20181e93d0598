"""Token generation with signal tokens: streaming text, forced completion of signal sequences, force/forbid.

The loop runs the LLM with a KV cache over a batch of prompts. Per row, a small state machine decides the next
token: inside a signal sequence ``[X0]..[Xn-1]`` the next signal token is forced (a partial sequence can never be
emitted); outside, only first signal tokens of allowed modalities may be sampled (so a garbled sequence cannot
start mid-way); a forced modality that was not produced is decoded before the row stops. The hidden state of a
signal token is read at the step that *feeds* it — the same positions teacher forcing uses in training.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Callable

import torch

from .constrained import NameChoices, StringChoices, token_pieces
from .options import GenerationOptions

logger = logging.getLogger(__name__)

TextCallback = Callable[[int, str], None]
"""``on_text(row, delta)`` receives newly final text of a row."""
SignalCallback = Callable[[int, str], None]
"""``on_signal(row, modality)`` is called when a row starts a signal sequence."""


@dataclass
class SignalSpan:
    """One completed signal sequence: features for the output projector."""

    modality: str
    hidden: torch.Tensor  # [N, H] last-layer hidden states at the signal positions
    embeds: torch.Tensor  # [N, H] the signal tokens' input embeddings


@dataclass
class GeneratedRow:
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    raw_text: str = ""
    spans: list[SignalSpan] = field(default_factory=list)
    finish_reason: str = "length"
    warnings: list[str] = field(default_factory=list)


@dataclass
class _RowState:
    pending_force: list[str]
    counts: dict[str, int]
    generated: int = 0
    in_signal: tuple[str, int] | None = None  # (modality, index of the next signal token)
    done: bool = False
    text_ids: list[int] = field(default_factory=list)
    emitted: str = ""
    hidden: list[torch.Tensor] = field(default_factory=list)
    embeds: list[torch.Tensor] = field(default_factory=list)
    choices: StringChoices | None = None  # GenerationOptions.string_choices, compiled once per row
    names: NameChoices | None = None  # GenerationOptions.name_choices


class SignalGenerator:
    """Generates answers for a batch of prompt embeddings.

    Args:
        llm: a Hugging Face causal LM.
        tokenizer: its tokenizer (with the signal tokens added).
        signal_token_ids: modality → its signal token ids in order.
        never_generate: ids that are never sampled (media token, reserved tokens).
        stop_strings: strings that end an answer (template stops + request stops).
    """

    def __init__(self, llm, tokenizer, signal_token_ids: dict[str, list[int]], never_generate: list[int],
                 stop_strings: tuple[str, ...]) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.signal_token_ids = signal_token_ids
        self.owner = {t: (m, i) for m, ids in signal_token_ids.items() for i, t in enumerate(ids)}
        self.never = torch.tensor(never_generate + [t for ids in signal_token_ids.values() for t in ids[1:]],
                                  dtype=torch.long)
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.eos_ids = {i for i in _as_list(getattr(llm.generation_config, "eos_token_id", None))} | (
            {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @torch.no_grad()
    def generate(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        options: list[GenerationOptions],
        *,
        generators: list[torch.Generator | None] | None = None,
        on_text: TextCallback | None = None,
        on_signal: SignalCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[GeneratedRow]:
        """Generate one answer per row of a left-padded batch.

        Args:
            inputs_embeds: ``[B, L, H]`` prompt embeddings (media already scattered in).
            attention_mask: ``[B, L]`` 1 for real tokens, 0 for left padding.
            options: per-row generation options.
            generators: per-row sampling generators (needed for reproducible sampling).
            should_stop: polled once per token; True ends every row with finish_reason "cancelled".
        """
        batch = inputs_embeds.shape[0]
        generators = generators or [None] * batch
        states = [_RowState(pending_force=sorted(o.force), counts={m: 0 for m in self.signal_token_ids},
                            choices=StringChoices(o.string_choices) if o.string_choices else None,
                            names=NameChoices(o.name_choices) if o.name_choices else None)
                  for o in options]
        rows = [GeneratedRow() for _ in range(batch)]
        embed_layer = self.llm.get_input_embeddings()
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        step_embeds, step_positions, mask = inputs_embeds, positions, attention_mask.long()
        past = None
        fed: list[int | None] = [None] * batch
        while True:
            out = self.llm(inputs_embeds=step_embeds, attention_mask=mask, position_ids=step_positions,
                           past_key_values=past, use_cache=True, output_hidden_states=True)
            past = out.past_key_values
            last_hidden = out.hidden_states[-1][:, -1]
            for row, token in enumerate(fed):
                if token is not None and token in self.owner:
                    states[row].hidden.append(last_hidden[row])
                    states[row].embeds.append(step_embeds[row, -1])
                    self._maybe_close_span(states[row], rows[row], token)
            if should_stop is not None and should_stop():
                for state, result in zip(states, rows):
                    if not state.done:
                        self._finish(state, result, "cancelled")
            if all(s.done for s in states):
                break
            logits = out.logits[:, -1].float()
            fed = [None] * batch
            for row, state in enumerate(states):
                if not state.done:
                    fed[row] = self._choose(row, state, rows[row], logits[row], options[row], generators[row],
                                            on_text, on_signal)
            tokens = torch.tensor([t if t is not None else self.pad_id for t in fed], device=step_embeds.device)
            step_embeds = embed_layer(tokens)[:, None]
            step_positions = step_positions[:, -1:] + 1
            alive = torch.tensor([t is not None for t in fed], device=mask.device, dtype=mask.dtype)[:, None]
            mask = torch.cat([mask, alive], dim=1)
        for row, state in enumerate(states):
            raw = self.tokenizer.decode(rows[row].token_ids, skip_special_tokens=False)
            cut = min((raw.find(s) for s in self.stop_strings if s in raw), default=-1)
            rows[row].raw_text = (raw[:cut] if cut >= 0 else raw).strip()
            rows[row].text = self._visible_text(state.text_ids, final=True)
            tail = rows[row].text[len(state.emitted):]
            if tail and on_text:
                on_text(row, tail)
        return rows

    # ---- per-row decisions ---------------------------------------------------------------------------
    def _choose(self, row, state, result, logits, options, generator, on_text, on_signal) -> int | None:
        if state.in_signal is not None:
            modality, index = state.in_signal
            return self._append(state, result, self.signal_token_ids[modality][index])
        if state.generated >= options.max_new_tokens:
            if state.pending_force:
                return self._start_signal(row, state, result, state.pending_force[0], on_signal)
            return self._finish(state, result, "length")
        logits = logits.clone()
        logits[self.never.to(logits.device)] = float("-inf")
        for modality, ids in self.signal_token_ids.items():
            if modality in options.forbid or state.counts[modality] >= options.max_media_per_modality:
                logits[ids[0]] = float("-inf")
        if state.choices is not None or state.names is not None:
            self._hold_to_choices(logits, state, result)
        token = self._sample(logits, options, generator)
        if token in self.owner:
            return self._start_signal(row, state, result, self.owner[token][0], on_signal)
        if token in self.eos_ids:
            if state.pending_force:
                return self._start_signal(row, state, result, state.pending_force[0], on_signal)
            return self._finish(state, result, "stop")
        state.text_ids.append(token)
        text = self._visible_text(state.text_ids, final=False)
        if self._hit_stop(state.text_ids):
            if state.pending_force:
                state.text_ids.pop()
                return self._start_signal(row, state, result, state.pending_force[0], on_signal)
            result.token_ids.append(token)
            return self._finish(state, result, "stop")
        if on_text and len(text) > len(state.emitted):
            on_text(row, text[len(state.emitted):])
        state.emitted = text
        return self._append(state, result, token)

    def _hold_to_choices(self, logits: torch.Tensor, state: _RowState, result: GeneratedRow) -> None:
        """Mask every token that would take an open constrained JSON value, or a file name the text is writing, off
        its choices (``constrained.py``)."""
        text = self.tokenizer.decode(state.text_ids, skip_special_tokens=True)
        pieces = token_pieces(self.tokenizer)
        masks = [rule.allowed(text, pieces, logits.numel()) for rule in (state.choices, state.names)
                 if rule is not None]
        masks = [mask for mask in masks if mask is not None]
        if not masks:
            return
        allowed = masks[0] if len(masks) == 1 else masks[0] & masks[1]
        allowed = allowed.to(logits.device) & torch.isfinite(logits)
        if not allowed.any():  # a value the constraint cannot reach any more (it began inside one token): left free
            warning = f"a constrained value was started off its choices ({text[-40:]!r}); decoded unconstrained"
            if warning not in result.warnings:
                result.warnings.append(warning)
            return
        logits[~allowed] = float("-inf")

    def _sample(self, logits: torch.Tensor, options: GenerationOptions, generator) -> int:
        if options.temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / options.temperature, dim=-1)
        if options.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            keep = sorted_probs.cumsum(-1) - sorted_probs < options.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs.cpu(), 1, generator=generator))

    def _start_signal(self, row, state, result, modality, on_signal) -> int:
        if modality in state.pending_force:
            state.pending_force.remove(modality)
        state.in_signal = (modality, 0)
        state.hidden, state.embeds = [], []
        if on_signal:
            on_signal(row, modality)
        return self._append(state, result, self.signal_token_ids[modality][0])

    def _append(self, state: _RowState, result: GeneratedRow, token: int) -> int:
        result.token_ids.append(token)
        state.generated += 1
        if token in self.owner:
            modality, index = self.owner[token]
            last = index + 1 == len(self.signal_token_ids[modality])
            state.in_signal = None if last else (modality, index + 1)
        return token

    def _maybe_close_span(self, state: _RowState, result: GeneratedRow, token: int) -> None:
        modality, index = self.owner[token]
        if index + 1 == len(self.signal_token_ids[modality]):
            result.spans.append(SignalSpan(modality, torch.stack(state.hidden), torch.stack(state.embeds)))
            state.counts[modality] += 1
            state.hidden, state.embeds = [], []

    def _finish(self, state: _RowState, result: GeneratedRow, reason: str) -> None:
        state.done = True
        result.finish_reason = reason
        return None

    # ---- text ----------------------------------------------------------------------------------------
    def _hit_stop(self, text_ids: list[int]) -> bool:
        if not self.stop_strings:
            return False
        tail = self.tokenizer.decode(text_ids[-16:], skip_special_tokens=True)
        return any(stop in tail for stop in self.stop_strings)

    def _visible_text(self, text_ids: list[int], final: bool) -> str:
        """Decoded text cut at the first stop string; while streaming, hold back a possible stop prefix and an
        incomplete UTF-8 character."""
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in self.stop_strings if s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
        elif not final:
            text = text.rstrip("\ufffd")
            for stop in self.stop_strings:
                for size in range(min(len(stop) - 1, len(text)), 0, -1):
                    if text.endswith(stop[:size]):
                        text = text[:-size]
                        break
        return text.rstrip() if final else text


def canonicalize_signals(text: str, signal_tokens: dict[str, list[str]]) -> tuple[str, list[str]]:
    """Repair signal-token runs in text that did not come from our decode loop (history, data files).

    A run of signal tokens is read as sequences that each start at ``[X0]``: a complete sequence is kept, a
    partial one that starts at ``[X0]`` is completed, and tokens that do not continue a sequence (one that starts
    mid-way or switches modality) are dropped with a warning.

    Returns:
        (clean text, warnings)
    """
    owner = {tok: (m, i) for m, toks in signal_tokens.items() for i, tok in enumerate(toks)}
    if not owner:
        return text, []
    token_re = "|".join(re.escape(t) for t in owner)
    warnings: list[str] = []

    def repair(match: re.Match) -> str:
        sequences: list[tuple[str, int]] = []  # (modality, tokens seen)
        for token in re.findall(token_re, match.group(0)):
            modality, index = owner[token]
            if index == 0:
                sequences.append((modality, 1))
            elif sequences and sequences[-1] == (modality, index):
                sequences[-1] = (modality, index + 1)
            else:
                warnings.append(f"dropped signal token {token} that does not continue a sequence")
        out = []
        for modality, seen in sequences:
            expected = signal_tokens[modality]
            if seen < len(expected):
                warnings.append(f"completed a partial {modality} signal sequence ({seen}/{len(expected)} tokens)")
            out.append("".join(expected))
        return "".join(out)

    return re.sub(f"(?:{token_re})+", repair, text), warnings


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
