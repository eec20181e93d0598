"""Regenerate the shipped tiny LLaMA-style tokenizer (nextgpt/assets/tokenizers/tiny-llama/).

A byte-level BPE (so any UTF-8 text round-trips) trained on a small built-in English corpus; used by the
`tiny` preset so it builds with no network. Run: python scripts/make_tiny_llm_tokenizer.py
"""
from __future__ import annotations

import itertools
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

OUT = Path(__file__).resolve().parents[1] / "nextgpt" / "assets" / "tokenizers" / "tiny-llama"
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def corpus() -> list[str]:
    subjects = ["a picture", "an image", "a photo", "a sound", "a song", "some music", "a video", "a clip", "the scene"]
    things = ["a red circle", "a blue square", "a green triangle", "a yellow cross", "a purple star", "a dog",
              "a cat", "a beach at sunset", "a city street", "birds singing", "rain falling", "a piano melody"]
    verbs = ["shows", "contains", "sounds like", "looks like", "describes", "is about", "features"]
    asks = ["Please describe this", "What is in this", "Generate", "Show me", "Make", "Can you create",
            "Here is", "I would like", "Tell me about"]
    lines = ["### Human:", "### Assistant:", "USER:", "ASSISTANT:", "A chat between a curious human and an "
             "artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers."]
    for s, v, t in itertools.product(subjects, verbs, things):
        lines.append(f"{s.capitalize()} {v} {t}.")
    for a, s in itertools.product(asks, subjects):
        lines.append(f"{a} {s}? Sure, here is {s} for you.")
    lines += [str(n) for n in range(200)]
    return lines


def main() -> None:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        model_max_length=2048, padding_side="left",
    )
    OUT.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(OUT)
    print(f"wrote {OUT} (vocab {len(wrapped)})")


if __name__ == "__main__":
    main()
