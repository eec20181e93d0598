"""Offline tokenizers for the decoders' text encoders: CLIP BPE from ImageBind's vocabulary, shipped RoBERTa BPEs.

No model hub is needed to build any tokenizer described by a decoder ``architecture`` except the ``pretrained``
kind, which is only used by real presets whose vocabulary cannot ship here (AudioLDM's RoBERTa).

A tokenizer spec is a dict with a ``source``:

- ``{"source": "clip-bpe", "num_merges": N | None, "model_max_length": 77, "pad_token": "<|endoftext|>"}``:
  OpenAI CLIP's byte-level BPE read from ImageBind's copy of ``bpe_simple_vocab_16e6.txt.gz``. All merges give ids
  identical to ``openai/clip-vit-large-patch14``; the first N merges give a small vocabulary for tiny models.
- ``{"source": "builtin:NAME", "model_max_length": L}``: a RoBERTa BPE shipped in ``nextgpt/assets/tokenizers/NAME``.
- ``{"source": "pretrained", "path": ID, "subfolder": "tokenizer"}``: ``AutoTokenizer.from_pretrained`` (hub or cache).
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path
from typing import Any

import nextgpt

# package data of ``nextgpt`` (this folder is installed as nextgpt/decoders, so locate it through the package)
TOKENIZER_ASSETS = Path(nextgpt.__file__).resolve().parent / "assets" / "tokenizers"
"""Shipped tokenizer folders (``builtin:NAME``)."""

CLIP_BPE_MERGES = 49152 - 256 - 2
"""Merges CLIP uses: its vocabulary is 256 bytes + 256 ``</w>`` bytes + these merges + 2 specials = 49408."""

TINY_ROBERTA_CORPUS = (
    "a dog barks in the distance while cars pass by",
    "rain falls steadily on a tin roof",
    "a man speaks and birds chirp in the background",
    "music plays with drums, bass and an electric guitar",
    "wind blows through the trees on a stormy night",
    "a car engine starts, idles and then drives away",
    "people laugh and clap at a crowded party",
    "water flows in a small stream over rocks",
)
"""Fixed training text of the ``builtin:tiny-roberta`` tokenizer (see :func:`train_tiny_roberta_tokenizer`)."""


def imagebind_bpe_path() -> Path:
    """Locate ImageBind's copy of CLIP's BPE file without importing imagebind (its import needs shims)."""
    spec = importlib.util.find_spec("imagebind")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the CLIP BPE vocabulary is read from the 'imagebind' package, which is not installed: "
            "pip install imagebind-unofficial"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe" / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the installed imagebind package has no CLIP BPE vocabulary")
    return path


@functools.lru_cache(maxsize=1)
def _clip_merges() -> tuple[tuple[str, str], ...]:
    lines = gzip.open(imagebind_bpe_path()).read().decode("utf-8").split("\n")
    # line 0 is a version header; CLIP keeps exactly CLIP_BPE_MERGES merges after it
    return tuple(tuple(line.split()) for line in lines[1 : CLIP_BPE_MERGES + 1])  # type: ignore[misc]


def clip_tokenizer(num_merges: int | None = None, model_max_length: int = 77, pad_token: str = "<|endoftext|>"):
    """CLIP's tokenizer built offline.

    Args:
        num_merges: use only the first N BPE merges (tiny vocabularies); ``None`` → all (real CLIP ids).
        model_max_length: padded/truncated length of encoded prompts (the decoder's ``condition_tokens``).
        pad_token: ``"<|endoftext|>"`` (SD-1.x) or ``"!"`` (OpenCLIP-H tokenizers of SD-2 and text-to-video).

    Returns:
        a ``transformers.CLIPTokenizer`` with ``len == 514 + num_merges`` (49408 for the full vocabulary).
    """
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    merges = _clip_merges()
    if num_merges is not None:
        if not 0 < num_merges <= len(merges):
            raise ValueError(f"num_merges={num_merges} is out of range; CLIP has 1..{len(merges)} merges")
        merges = merges[:num_merges]
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [symbol + "</w>" for symbol in byte_symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=model_max_length, pad_token=pad_token)


def builtin_tokenizer_dir(name: str) -> Path:
    """Folder of the shipped tokenizer ``name``.

    Raises:
        FileNotFoundError: listing the shipped tokenizers.
    """
    folder = TOKENIZER_ASSETS / name
    if not (folder / "vocab.json").is_file():
        shipped = TOKENIZER_ASSETS.iterdir() if TOKENIZER_ASSETS.is_dir() else []
        available = sorted(p.name for p in shipped if p.is_dir())
        raise FileNotFoundError(f"no shipped tokenizer 'builtin:{name}' in {TOKENIZER_ASSETS}; available: {available}")
    return folder


def train_tiny_roberta_tokenizer(directory: str | Path, vocab_size: int = 400) -> Path:
    """Train the deterministic byte-level BPE shipped as ``builtin:tiny-roberta`` and save vocab.json/merges.txt.

    Run once to (re)generate the shipped files; tests check the shipped files match a fresh training.
    """
    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(
        list(TINY_ROBERTA_CORPUS),
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],  # RoBERTa's ids 0..4
        show_progress=False,
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(directory))
    return directory


def build_tokenizer(spec: dict[str, Any]):
    """Build a tokenizer from a spec (see the module docstring).

    Raises:
        ValueError: for an unknown ``source``.
    """
    spec = dict(spec)
    source = spec.pop("source", None)
    if source == "clip-bpe":
        return clip_tokenizer(**spec)
    if isinstance(source, str) and source.startswith("builtin:"):
        from transformers import RobertaTokenizer

        folder = builtin_tokenizer_dir(source.removeprefix("builtin:"))
        return RobertaTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), **spec)
    if source == "pretrained":
        from transformers import AutoTokenizer

        path = spec.pop("path")
        return AutoTokenizer.from_pretrained(path, **spec)
    raise ValueError(
        f"unknown tokenizer source {source!r}; use 'clip-bpe', 'builtin:NAME' or 'pretrained' (with a 'path')"
    )
