"""The toy world's frozen LLM: a byte-level BPE tokenizer for its language and a tiny LLaMA pretrained on its text.

``train_toy_llm(out_dir)``:

1. renders dialogues of the training split (``dialogues.py``'s builder, with no media written) in the
   ``vicuna_v0`` template (``dialogs/templates.py``) — the format the NExT-GPT stages train in. An input item's
   placeholder (``<image>``) is replaced by a caption of it; output markers (``<output:image>``) stay as text;
   tool-call dialogues (the agent's own system prompt and tool list, apps/agent/specs.py) are rendered too and
   kept whole, one per row, so the model can plan tool calls (``nextgpt agent``);
2. trains a byte-level BPE (``tokenizers``; vocabulary :data:`VOCAB_SIZE`) on that text plus every caption,
   instruction and answer template string, saved with ``save_pretrained`` under ``tokenizer/``;
3. pretrains a tiny ``LlamaForCausalLM`` (:data:`TOY_LLAMA`) on the text, packed into blocks, and saves it under
   ``llm/`` (safetensors);
4. reports the perplexity on held-out text: dialogues of the eval split (held-out combinations and phrasings)
   and fresh training-split dialogues (another seed).

Load the result with ``LLMConfig(path="llm", tokenizer="tokenizer")`` and ``base_dir=out_dir``.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from .language import TEMPLATES, WORDS, caption
from .split import Split, make_split
from .world import MODALITIES, Meaning, all_meanings

logger = logging.getLogger(__name__)

__all__ = ["TOY_LLAMA", "VOCAB_SIZE", "LLMReport", "LabelledText", "dialogue_texts", "copy_drill_blocks",
           "file_question_texts", "llm_text", "LLMText", "name_copy_accuracy", "train_toy_llm", "train_toy_tokenizer"]

VOCAB_SIZE = 768
TOOL_BLOCK = 768  # tokens of a tool-call dialogue row (the agent's prompt alone is ≈ 480 with the toy BPE; a
# dialogue with a failed call and its retry up to ≈ 700); a step computes only up to its longest row
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
TEMPLATE = "vicuna_v0"
TOY_LLAMA: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-5,
}
"""The default toy LLaMA (≈0.7M parameters with a 768-token vocabulary)."""


@dataclass
class LLMReport:
    """What :func:`train_toy_llm` did: perplexity on held-out text, the loss curve, wall time and the folders."""

    perplexity_eval: float
    perplexity_train_fresh: float
    losses: list[float]
    seconds: float
    steps: int
    parameters: int
    vocab_size: int
    train_tokens: int
    llm_dir: str
    tokenizer_dir: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- text ----------------------------------------------------------------------------------------------------
def _meanings_by_key() -> dict[str, Meaning]:
    return {m.key: m for modality in MODALITIES for m in all_meanings(modality)}


@dataclass(frozen=True)
class LabelledText:
    """A dialogue rendered in the template and the character ranges of it that carry the loss: the assistant's
    answers (with their end marker) of the turns that are trained — a ``train: false`` turn is context only."""

    text: str
    ranges: tuple[tuple[int, int], ...]


def dialogue_texts(part: str, count: int, seed: int, split: Split | None = None, *,
                   tools: bool = False, tool_draw: str = "all_meanings") -> list[LabelledText]:
    """``count``-ish dialogues of the split's ``part`` (``train``/``eval``) rendered in the vicuna_v0 template,
    input placeholders replaced by a caption of the item (a phrasing of that part). No media is rendered.

    ``tools=True`` gives the tool-call dialogues instead (training meanings; the agent's system prompt, tool list
    and results, a result as a user turn as ``dialogs/render.py`` writes it), their meanings drawn as ``tool_draw``
    says (:data:`~nextgpt.toyworld.dataset.TOOL_DRAWS`)."""
    from nextgpt.dialogs.templates import get_template

    from .dataset import SIZES, DatasetSizes, _examples
    from .dialogues import Builder

    split = split or make_split()
    template = get_template(TEMPLATE)
    by_key = _meanings_by_key()
    rng = np.random.default_rng(seed)
    # No courtesy here: the LLM learns the world's language without "please" on requests, and stage 3 teaches
    # it (docs/toyworld.md, "Text": the one build whose LLM read polite requests captioned worse).
    builder = Builder(split, part, lambda meaning: meaning.key, rng, courtesy_rate=0.0)
    texts: list[LabelledText] = []
    while len(texts) < count:
        if tools:  # the mix of the full world's train_tools.jsonl
            retries = count * SIZES["full"].tool_retries // SIZES["full"].tools
            sizes = DatasetSizes(pairs=0, instructions=0, dialogues=0, tools=count, eval=1, tool_retries=retries)
        elif part == "train":
            per = max(1, count // 20)
            sizes = DatasetSizes(pairs=per, instructions=3 * per, dialogues=3 * per, tools=0, eval=1)
        else:
            sizes = DatasetSizes(pairs=1, instructions=1, dialogues=1, tools=0, eval=max(1, count // 12))
        for examples in _examples(builder, split, part, sizes, tool_draw=tool_draw).values():
            texts += [_render(example, builder, template, by_key) for example in examples]
    order = rng.permutation(len(texts))[:count]
    return [texts[i] for i in order]


def file_question_texts(count: int, seed: int) -> list[LabelledText]:
    """``count`` dialogues in which the user attaches files and asks for one's name (``Builder.file_question``),
    rendered like :func:`dialogue_texts`: practice at copying names the model cannot guess."""
    from nextgpt.dialogs.templates import get_template

    from .dialogues import Builder

    builder = Builder(make_split(), "train", lambda meaning: meaning.key, np.random.default_rng(seed))
    template = get_template(TEMPLATE)
    return [_render(builder.file_question(), builder, template, {}) for _ in range(count)]


@dataclass(frozen=True)
class LLMText:
    """Everything :func:`train_toy_llm` reads (:func:`llm_text`): the world's training dialogues, held-out and fresh
    dialogues for the perplexities, tool-call dialogues and file questions."""

    train: list[LabelledText]
    eval: list[LabelledText]
    fresh: list[LabelledText]
    tools: list[LabelledText]
    files: list[LabelledText]

    def tokenizer_texts(self) -> list[str]:
        """What the BPE learns from: the training and tool dialogues, and as many file questions as dialogues."""
        return [t.text for t in self.train + self.tools + self.files[:len(self.train)]]


def llm_text(seed: int, *, train_dialogues: int = 4000, eval_dialogues: int = 300, tool_dialogues: int = 4000,
             file_questions: int = 20_000, tool_draw: str = "all_meanings", split: Split | None = None) -> LLMText:
    """The toy LLM's text for ``seed`` (:func:`train_toy_llm`'s defaults: the shipped LLM's text)."""
    split = split or make_split()
    return LLMText(
        train=dialogue_texts("train", train_dialogues, seed, split),
        eval=dialogue_texts("eval", eval_dialogues, seed + 1, split),
        fresh=dialogue_texts("train", eval_dialogues, seed + 2, split),
        tools=dialogue_texts("train", tool_dialogues, seed + 3, split, tools=True,
                             tool_draw=tool_draw) if tool_dialogues else [],
        files=file_question_texts(file_questions, seed + 4) if file_questions else [])


@torch.no_grad()
def name_copy_accuracy(out_dir: str | Path, *, count: int = 60, seed: int = 4242,
                       tool_draw: str = "all_meanings") -> dict[str, float]:
    """How often the trained LLM under ``out_dir`` (``llm/`` + ``tokenizer/``) writes a given file name back,
    greedily: ``tool_call_path``, the ``path`` of the first call of ``count`` tool dialogues (those with a
    describe or convert call; the agent's system prompt and tool list), and ``file_question``, the name in the
    answer to ``count`` file questions (:func:`file_question_texts`). Fresh names of this version's generator;
    the tool dialogues drawn as ``tool_draw`` says (:func:`dialogue_texts`)."""
    import re

    from nextgpt.config import LLMConfig
    from nextgpt.llm import build_llm, load_tokenizer

    config = LLMConfig(path="llm", tokenizer="tokenizer")
    tokenizer, model = load_tokenizer(config, base_dir=out_dir), build_llm(config, base_dir=out_dir).eval()
    name = re.compile(r"inputs/[\w-]+\.\w+")
    sets = {"tool_call_path": [t for t in dialogue_texts("train", 2 * count, seed, tools=True, tool_draw=tool_draw)
                               if '"path"' in t.text[t.ranges[0][0]:t.ranges[0][1]]][:count],
            "file_question": file_question_texts(count, seed + 1)}
    result = {}
    for key, texts in sets.items():
        right = []
        for text in texts:
            start, end = text.ranges[0]
            ids = tokenizer(text.text[:start], return_tensors="pt").input_ids
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=48, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            written = name.search(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
            right.append(written is not None and written.group(0) == name.search(text.text[start:end]).group(0))
        result[key] = sum(right) / max(len(right), 1)
    return result


def _render(example: Any, builder: Any, template: Any, by_key: dict[str, Meaning]) -> LabelledText:
    """One example in the template, input placeholders replaced by a caption of the item, a tool result as a user
    turn (as ``dialogs/render.py`` writes it), the loss on the answers that are trained."""
    from nextgpt.dialogs.tokenize import labelled_segments, loss_ranges
    from nextgpt.dialogs.tool_calls import render_tool_result

    turns = []
    for turn in example.dialogue.turns:
        text = turn.text
        for ref in turn.inputs:
            text = text.replace(f"<{ref.modality}>", builder.caption(by_key[ref.path]), 1)
        turns.append(("user", render_tool_result(turn.tool_name or "tool", text)) if turn.role == "tool"
                     else (turn.role, text))
    segments = template.segments(turns, add_generation_prompt=False)
    trained = [t.train for t in example.dialogue.turns if t.role == "assistant"]
    ranges = loss_ranges(segments, labelled_segments(segments, trained))
    return LabelledText("".join(s.text for s in segments), tuple(ranges))


def _template_strings() -> list[str]:
    from .prompts import ANSWERS, INSTRUCTIONS

    lines = [t for group in (INSTRUCTIONS, ANSWERS, TEMPLATES) for options in group.values() for t in options]
    lines += [w for values in WORDS.values() for words in values.values() for ws in words.values() for w in ws]
    lines += ["### Human: ", "### Assistant: ", "\n###", "<image> <audio> <video>",
              "<output:image> <output:audio> <output:video>"]
    lines += [caption(m, p) for modality in MODALITIES for m in all_meanings(modality)
              for p in range(len(TEMPLATES[modality]))]
    return lines


def train_toy_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> Any:
    """A byte-level BPE (any UTF-8 round-trips) trained on ``texts`` + the world's template strings, wrapped as a
    ``PreTrainedTokenizerFast`` with ``<unk> <s> </s> <pad>`` (left padding, like the shipped tiny tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(list(texts) + _template_strings(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>", model_max_length=2048, padding_side="left")


def _labelled(tokenizer: Any, texts: list[LabelledText]) -> Iterable[tuple[list[int], list[int]]]:
    """``<s> text </s>`` token ids of each text and its labels: the ids that start inside its loss ranges (the
    trained answers) and the end token; -100 elsewhere."""
    encoded = tokenizer([t.text for t in texts], add_special_tokens=False, return_offsets_mapping=True)
    for text, tokens, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
        keep = [any(a <= start < b for a, b in text.ranges) for start, _ in offsets]
        yield ([tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id],
               [-100, *[t if k else -100 for t, k in zip(tokens, keep)], tokenizer.eos_token_id])


def _rows(tokenizer: Any, texts: list[LabelledText], block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One text per ``[block]`` row, padded at the end (labels -100 there): for the long tool-call dialogues,
    which must be seen whole — the system prompt that lists the tools is what makes a request a tool call.

    Raises:
        ValueError: a text longer than ``block`` tokens.
    """
    ids, labels = [], []
    for tokens, targets in _labelled(tokenizer, texts):
        if len(tokens) > block:
            raise ValueError(f"a text of {len(tokens)} tokens does not fit a row of {block}; raise tool_block")
        pad = block - len(tokens)
        ids.append(tokens + [tokenizer.pad_token_id] * pad)
        labels.append(targets + [-100] * pad)
    return torch.tensor(ids), torch.tensor(labels)


def _pack(tokenizer: Any, texts: list[LabelledText], block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``<s> text </s>`` of every text, concatenated and cut into ``[N, block]`` rows (the tail dropped), and the
    labels: the token ids on the assistant's answers, -100 elsewhere.

    Measured: with the loss on every token, the unpredictable captions of the prompts dominate it, and 500–1500
    steps gave an LLM that does not carry a caption from the prompt into its answer (it answers with the most
    common words: "a large blue circle"), so the projectors had nothing to write into."""
    ids: list[int] = []
    labels: list[int] = []
    for tokens, targets in _labelled(tokenizer, texts):
        ids += tokens
        labels += targets
    rows = len(ids) // block
    if rows == 0:
        raise ValueError(f"only {len(ids)} tokens of text: fewer than one block of {block}")
    return torch.tensor(ids[: rows * block]).view(rows, block), torch.tensor(labels[: rows * block]).view(rows, block)


def _drill_rows(count: int, block: int, pool: torch.Tensor, fill: Callable[[torch.Tensor, torch.Tensor], None]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` rows of ``block`` tokens (padding: ``pool[0]``, no label), each filled in place by ``fill(ids,
    labels)``."""
    ids = torch.full((count, block), int(pool[0]))
    labels = torch.full((count, block), -100)
    for row in range(count):
        fill(ids[row], labels[row])
    return ids, labels


def copy_drill_blocks(count: int, block: int, vocabulary: list[int], generator: torch.Generator,
                      lengths: tuple[int, int] = (3, 20), small_alphabets: float = 0.5,
                      alphabet_sizes: tuple[int, int] = (2, 10)) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` rows of ``block`` tokens, each filled with random token sequences written twice (``a b c a b c
    d e d e …``), the labels on the second copy but its first token (where a copy starts is not predictable):
    practice at induction — finding the earlier place of the current token and continuing from there — which
    copying a file name needs. Each sequence has ``lengths[0]``–``lengths[1]`` tokens drawn uniformly from
    ``vocabulary`` — or, for a ``small_alphabets`` share of them, from a random subset of ``alphabet_sizes``
    tokens, so that a token recurs inside the sequence and the copy must follow the order, not the last token
    alone (a file name's digits and ``_`` recur all over the agent's prompt); the tail of a row that no pair fills
    is padding with no label.

    Raises:
        ValueError: a block shorter than two copies of the shortest sequence, or an empty vocabulary.
    """
    low, high = lengths
    if not vocabulary or low < 2 or high < low or block < 2 * low:
        raise ValueError(f"copy drills need a vocabulary, 2 ≤ lengths[0] ≤ lengths[1] and a block of at least "
                         f"{2 * max(low, 2)} tokens; got {len(vocabulary)} tokens, lengths {lengths}, block {block}")
    pool = torch.tensor(vocabulary)

    def fill(ids: torch.Tensor, labels: torch.Tensor) -> None:
        at = 0
        while True:
            length = int(torch.randint(low, high + 1, (1,), generator=generator))
            if at + 2 * length > block:
                return
            source = pool
            if float(torch.rand((), generator=generator)) < small_alphabets:
                size = int(torch.randint(alphabet_sizes[0], alphabet_sizes[1] + 1, (1,), generator=generator))
                source = pool[torch.randperm(len(pool), generator=generator)[:size]]
            sequence = source[torch.randint(len(source), (length,), generator=generator)]
            ids[at:at + length] = ids[at + length:at + 2 * length] = sequence
            labels[at + length + 1:at + 2 * length] = sequence[1:]
            at += 2 * length

    return _drill_rows(count, block, pool, fill)


def recall_drill_blocks(count: int, block: int, vocabulary: list[int], generator: torch.Generator,
                        spans: tuple[int, int] = (2, 4), lengths: tuple[int, int] = (3, 12)
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` rows of ``block`` tokens of keyed recall: a group writes ``spans[0]``–``spans[1]`` sequences, each
    after a key token of its own (``k1 a b c k2 d e …``), then asks for them again in a random order — a key, and
    the labels on the whole sequence that followed it. Unlike :func:`copy_drill_blocks`, what to copy is not the
    continuation of the latest repeat but the span the key picks out of several (the file the question names out
    of the attached ones; the target a request names beside its source). Keys and sequences are drawn from
    ``vocabulary``; a group's keys are distinct; groups follow each other until the row is full (the rest is
    padding with no label).

    Raises:
        ValueError: a block shorter than one group of the shortest spans, or a vocabulary too small for the keys.
    """
    low, high = spans
    if len(vocabulary) < 2 * high or low < 2 or high < low or lengths[0] < 1 or lengths[1] < lengths[0] \
            or block < 2 * low * (lengths[0] + 1):
        raise ValueError(f"recall drills need ≥ {2 * high} vocabulary tokens, 2 ≤ spans[0] ≤ spans[1], 1 ≤ "
                         f"lengths[0] ≤ lengths[1] and a block of at least {2 * low * (lengths[0] + 1)} tokens; got "
                         f"{len(vocabulary)} tokens, spans {spans}, lengths {lengths}, block {block}")
    pool = torch.tensor(vocabulary)

    def write(ids: torch.Tensor, at: int, key: torch.Tensor, sequence: torch.Tensor) -> int:
        ids[at] = key
        ids[at + 1:at + 1 + len(sequence)] = sequence
        return at + 1 + len(sequence)

    def fill(ids: torch.Tensor, labels: torch.Tensor) -> None:
        at = 0
        while True:
            number = int(torch.randint(low, high + 1, (1,), generator=generator))
            keys = pool[torch.randperm(len(pool), generator=generator)[:number]]
            sequences = [pool[torch.randint(len(pool), (int(torch.randint(lengths[0], lengths[1] + 1, (1,),
                                                                            generator=generator)),),
                                            generator=generator)] for _ in range(number)]
            if at + 2 * sum(len(s) + 1 for s in sequences) > block:
                return
            for key, sequence in zip(keys, sequences):
                at = write(ids, at, key, sequence)
            for i in torch.randperm(number, generator=generator).tolist():
                labels[at + 1:at + 1 + len(sequences[i])] = sequences[i]
                at = write(ids, at, keys[i], sequences[i])

    return _drill_rows(count, block, pool, fill)


def _step_loss(model: Any, blocks: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor
               ) -> tuple[torch.Tensor, int]:
    """Mean next-token loss of ``rows`` of ``blocks`` and how many tokens it averages."""
    labels = blocks[1][rows]
    # columns after the last labelled token of every row (the padding of short tool rows) change nothing: cut them
    width = int((labels != -100).any(0).nonzero().max()) + 1 if (labels != -100).any() else labels.shape[1]
    labels = labels[:, :width]
    return model(input_ids=blocks[0][rows][:, :width], labels=labels).loss, int((labels[:, 1:] != -100).sum())


def _mean_of(*parts: tuple[torch.Tensor, int]) -> tuple[torch.Tensor, int]:
    """The mean loss over the labelled tokens of all ``parts``; a part without any (its loss is NaN: a short
    block can hold no answer token) is left out, and a step with none at all has a zero loss."""
    kept = [(loss, n) for loss, n in parts if n > 0]
    if not kept:
        return torch.zeros((), requires_grad=True), 0
    count = sum(n for _, n in kept)
    return sum(loss * n for loss, n in kept) / count, count


@torch.no_grad()
def perplexity(model: Any, blocks: tuple[torch.Tensor, torch.Tensor], batch_size: int = 16) -> float:
    """exp of the mean next-token loss over the labelled tokens of ``blocks`` (``(ids, labels)``, ``[N, L]``)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    ids, labels = blocks
    for start in range(0, len(ids), batch_size):
        batch, target = ids[start:start + batch_size], labels[start:start + batch_size]
        tokens = int((target[:, 1:] != -100).sum())
        if tokens == 0:  # a batch of prompt text only: its mean loss is NaN (0/0) and weighs nothing anyway
            continue
        loss = model(input_ids=batch, labels=target).loss
        total, count = total + loss.item() * tokens, count + tokens
    model.train(was_training)
    if count == 0:
        raise ValueError("no labelled (answer) tokens in these blocks: perplexity is undefined")
    return math.exp(total / count)


# ---- training ------------------------------------------------------------------------------------------------
def train_toy_llm(out_dir: str | Path, *, seed: int = 0, steps: int = 1000, batch_size: int = 32, block: int = 128,
                  lr: float = 3e-3, architecture: dict[str, Any] | None = None, vocab_size: int = VOCAB_SIZE,
                  train_dialogues: int = 4000, eval_dialogues: int = 300, tool_dialogues: int = 4000,
                  tool_rows: int = 4, tool_block: int = TOOL_BLOCK, file_questions: int = 20_000,
                  file_rows: int = 16, copy_rows: int = 12, copy_steps: int | None = None,
                  recall_rows: int = 0, copy_probe: int = 60, tool_draw: str = "all_meanings") -> LLMReport:
    """Train the toy tokenizer and LLaMA and save them under ``out_dir/tokenizer`` and ``out_dir/llm``.

    Args:
        out_dir: output folder.
        seed: seeds the text, the initialisation and the batches (same seed, same weights).
        steps: optimiser steps of ``batch_size`` blocks of ``block`` tokens.
        lr: AdamW peak learning rate (cosine decay after a 5 % warm-up).
        architecture: overrides of :data:`TOY_LLAMA` (``LlamaConfig`` kwargs).
        vocab_size: BPE vocabulary size (special tokens included).
        train_dialogues / eval_dialogues: how many training / held-out dialogues to render.
        tool_dialogues: how many tool-call dialogues (the agent's format) to render; 0 leaves them out.
        tool_rows: tool-call dialogues added to every step, each whole in a row of ``tool_block`` tokens (a
            second forward pass; the loss is the mean over the labelled tokens of both).
        file_questions: short dialogues that ask for an attached file's name (:func:`file_question_texts`):
            practice at copying names, which tool calls need; packed in blocks of their own, ``file_rows`` of
            them added to every step (enough distinct names that they are not learnt by heart: 2000 questions
            seen 11 times each taught the toy LLM the training names, not to copy).
        copy_rows: rows of copy drills (:func:`copy_drill_blocks`, fresh every step, from every token of the
            vocabulary but the special ones) added to every step.
        copy_steps: the drills (copy and recall) are added to the first ``copy_steps`` steps only (``None``: every
            step); the steps after them are the world's text, the tool rows and the file questions alone.
        recall_rows: rows of keyed recall drills (:func:`recall_drill_blocks`, fresh every step) added to every
            step (with ``copy_steps``, to the same first steps as the copy drills).
        copy_probe: tool dialogues and file questions for :func:`name_copy_accuracy` in the report (0: skip).
        tool_draw: how the tool dialogues draw their meanings (:data:`~nextgpt.toyworld.dataset.TOOL_DRAWS`):
            ``"all_meanings"`` (world v1's mix, mostly pictures: the shipped LLM's text — with ``seed=0`` its
            BPE is the shipped tokenizer, piece for piece) or ``"each_modality"`` (a third of each, as the world's
            ``train_tools.jsonl`` since v2). docs/toyworld.md, "The recipe's LLM is the shipped LLM's again", has
            what each gave.

    Raises:
        ValueError: for non-positive sizes.
    """
    from transformers import AutoModelForCausalLM, LlamaConfig

    from .dataset import TOOL_DRAWS

    if min(steps, batch_size, block, train_dialogues, eval_dialogues) <= 0:
        raise ValueError("steps, batch_size, block, train_dialogues and eval_dialogues must all be > 0")
    if min(tool_dialogues, tool_rows, file_questions, file_rows, copy_rows, recall_rows) < 0:
        raise ValueError("tool_dialogues, tool_rows, file_questions, file_rows, copy_rows and recall_rows must be ≥ 0")
    if tool_draw not in TOOL_DRAWS:
        raise ValueError(f"tool_draw must be one of {TOOL_DRAWS}; got {tool_draw!r}")
    if copy_steps is not None and copy_steps < 0:
        raise ValueError(f"copy_steps must be ≥ 0 (or None: drills in every step); got {copy_steps}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    text = llm_text(seed, train_dialogues=train_dialogues, eval_dialogues=eval_dialogues,
                    tool_dialogues=tool_dialogues, file_questions=file_questions if file_rows else 0,
                    tool_draw=tool_draw)
    train_text, eval_text, fresh_text, tool_text, file_text = text.train, text.eval, text.fresh, text.tools, text.files
    tokenizer = train_toy_tokenizer(text.tokenizer_texts(), vocab_size)
    tokenizer.save_pretrained(out / "tokenizer")
    train_blocks = _pack(tokenizer, train_text, block)
    tool_blocks = _rows(tokenizer, tool_text, tool_block) if tool_text and tool_rows else None
    file_blocks = _pack(tokenizer, file_text, block) if file_text else None
    eval_blocks, fresh_blocks = _pack(tokenizer, eval_text, block), _pack(tokenizer, fresh_text, block)
    logger.info("toy LLM text: %d train blocks of %d tokens, vocab %d (%.1f s)", len(train_blocks[0]), block,
                len(tokenizer), time.perf_counter() - started)

    config = LlamaConfig(**{**TOY_LLAMA, **(architecture or {})}, vocab_size=len(tokenizer),
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    generator = torch.Generator().manual_seed(seed)
    drill_tokens = sorted(set(range(len(tokenizer))) - set(tokenizer.all_special_ids))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        model.train()
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
        warmup = max(1, steps // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        losses: list[float] = []
        for step in range(steps):
            rows = torch.randint(len(train_blocks[0]), (batch_size,), generator=generator)
            parts = [_step_loss(model, train_blocks, rows)]
            if tool_blocks is not None:
                tool = torch.randint(len(tool_blocks[0]), (tool_rows,), generator=generator)
                parts.append(_step_loss(model, tool_blocks, tool))
            if file_blocks is not None:
                files = torch.randint(len(file_blocks[0]), (file_rows,), generator=generator)
                parts.append(_step_loss(model, file_blocks, files))
            drilled = copy_steps is None or step < copy_steps
            if copy_rows and drilled:
                parts.append(_step_loss(model, copy_drill_blocks(copy_rows, block, drill_tokens, generator),
                                        torch.arange(copy_rows)))
            if recall_rows and drilled:
                parts.append(_step_loss(model, recall_drill_blocks(recall_rows, block, drill_tokens, generator),
                                        torch.arange(recall_rows)))
            loss, _ = _mean_of(*parts)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            if step % 50 == 0 or step == steps - 1:
                logger.info("llm step %d/%d: loss %.4f (%.0f s)", step + 1, steps, losses[-1],
                            time.perf_counter() - started)
    train_seconds = time.perf_counter() - started
    model.eval()
    model.requires_grad_(False)
    model.save_pretrained(out / "llm", safe_serialization=True)
    ppl_eval, ppl_fresh = perplexity(model, eval_blocks), perplexity(model, fresh_blocks)
    copying = name_copy_accuracy(out, count=copy_probe, tool_draw=tool_draw) if copy_probe > 0 else {}
    seconds = time.perf_counter() - started
    report = LLMReport(ppl_eval, ppl_fresh, losses, seconds, steps, sum(p.numel() for p in model.parameters()),
                       len(tokenizer), int(train_blocks[0].numel()), str(out / "llm"), str(out / "tokenizer"),
                       {"train_seconds": train_seconds, "batch_size": batch_size, "block": block, "lr": lr,
                        "seed": seed, "template": TEMPLATE, "tool_dialogues": len(tool_text), "tool_draw": tool_draw,
                        "tool_rows": tool_rows if tool_blocks is not None else 0, "tool_block": tool_block,
                        "name_copy": copying, "file_questions": len(file_text),
                        "file_rows": file_rows if file_blocks is not None else 0, "copy_rows": copy_rows,
                        "copy_steps": copy_steps if copy_rows or recall_rows else 0, "recall_rows": recall_rows,
                        "tool_tokens_max": max((len(t) for t in tokenizer([t.text for t in tool_text])["input_ids"]),
                                               default=0) if tool_text else 0})
    (out / "llm_report.json").write_text(json.dumps({k: v for k, v in report.to_dict().items() if k != "losses"},
                                                    indent=2) + "\n")
    logger.info("toy LLM: perplexity %.3f on held-out (eval split) text, %.3f on fresh training text, %.0f s",
                ppl_eval, ppl_fresh, seconds)
    return report
