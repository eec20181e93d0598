"""Feature cache: the frozen encoder's embedding of every input item and the decoders' text-encoder target of
every output caption, computed once and stored in sharded safetensors keyed by content hash.

Layout of a cache folder::

    manifest.json        format, the fingerprint of the frozen parts that produced it, the config, the shards
    shards/part-*.safetensors   tensors named ``media:<modality>:<sha256 of the file>`` (``[E]``) and
                         ``target:<modality>:<sha256 of the caption>`` (``[Q, D]``)

A cache opened for a model whose frozen parts differ (another encoder or decoder, other weights) is refused.
Building shards the work across Accelerate processes; each writes its own shards, the main process the manifest.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from safetensors import safe_open

from nextgpt.checkpoint import write_weights

logger = logging.getLogger(__name__)

FORMAT = "nextgpt-feature-cache"
VERSION = 1
MANIFEST = "manifest.json"
SHARDS = "shards"


class CacheMismatchError(ValueError):
    """The cache was written for other frozen components than the model's."""


# ---- keys ----------------------------------------------------------------------------------------------
def file_digest(path: str | Path, _memo: dict[str, str] = {}) -> str:  # noqa: B006 - process-wide memo
    """sha256 of a file's bytes (memoised per path, size and mtime)."""
    stat = os.stat(path)
    memo_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    if memo_key not in _memo:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _memo[memo_key] = digest.hexdigest()
    return _memo[memo_key]


def media_key(modality: str, path: str | Path) -> str:
    return f"media:{modality}:{file_digest(path)}"


def target_key(modality: str, caption: str) -> str:
    return f"target:{modality}:{hashlib.sha256(caption.encode('utf-8')).hexdigest()}"


# ---- fingerprint ---------------------------------------------------------------------------------------
def weights_digest(module: torch.nn.Module | None) -> str | None:
    """A cheap, exact digest of a module's weights: names, shapes, dtypes and the bytes of up to 65,536 evenly
    strided values per tensor (no float reductions, so it does not depend on threads or devices)."""
    if module is None:
        return None
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 65536)].contiguous().cpu()
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
            digest.update(sample.view(torch.uint8).numpy().tobytes() if sample.numel() else b"")
    return digest.hexdigest()


def encoder_fingerprint(pipe: Any) -> dict[str, Any]:
    """What cached media embeddings depend on: the encoder's kind, size, preprocessing options and weights."""
    encoder = pipe.config.encoder
    return {"kind": encoder.kind, "embed_dim": encoder.embed_dim, "options": encoder.options,
            "weights": weights_digest(pipe.model.encoder)}


def decoder_fingerprint(pipe: Any, modality: str) -> dict[str, Any]:
    """What cached caption targets of ``modality`` depend on: the decoder kind, condition shape, text encoder."""
    spec = pipe.config.modality(modality)
    pipeline = pipe.decoders[modality].pipeline
    return {"kind": spec.decoder.kind, "condition_tokens": spec.decoder.condition_tokens,
            "condition_dim": spec.decoder.condition_dim,
            "text_encoder": weights_digest(getattr(pipeline, "text_encoder", None))}


def fingerprint(pipe: Any) -> dict[str, Any]:
    """The fingerprint of every frozen part (loads every decoder's pipeline)."""
    return {"encoder": encoder_fingerprint(pipe),
            "decoders": {spec.name: decoder_fingerprint(pipe, spec.name) for spec in pipe.config.output_modalities}}


def _describe_difference(found: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(found) | set(wanted)):
        a, b = found.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_describe_difference(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: cache {a!r} != model {b!r}")
    return out


# ---- reading -------------------------------------------------------------------------------------------
class FeatureCache:
    """Read access to a cache folder: ``get(key)`` returns a CPU tensor or None when the key is absent."""

    def __init__(self, folder: str | Path, manifest: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self._index: dict[str, str] = {}
        self._handles: dict[str, Any] = {}
        self._pipe: Any = None
        self._checked: set[str] = set()
        for shard in manifest.get("shards", []):
            with safe_open(str(self.folder / SHARDS / shard), framework="pt") as handle:
                for key in handle.keys():
                    self._index[key] = shard

    @classmethod
    def open(cls, folder: str | Path, expected: dict[str, Any] | None) -> "FeatureCache":
        """Open a cache folder and check that it was made by the same frozen components.

        Args:
            expected: ``fingerprint(pipe)`` of the model being trained (None: skip the check).

        Raises:
            FileNotFoundError: no manifest (run ``nextgpt data cache`` first).
            CacheMismatchError: listing every field that differs.
        """
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest is None:
            raise FileNotFoundError(f"{folder / MANIFEST} not found: build the cache with 'nextgpt data cache' "
                                    "or remove data.cache_dir to encode live")
        cache = cls(folder, manifest)
        if expected is not None:
            cache._check("fingerprint", manifest["fingerprint"], expected)
        return cache

    @classmethod
    def open_for(cls, folder: str | Path, pipe: Any) -> "FeatureCache":
        """Open a cache for training ``pipe``: the encoder is checked now, each decoder when its targets are first
        asked for (``check_decoder``), so a run that needs no targets never loads the decoders.

        Raises:
            FileNotFoundError / CacheMismatchError: as ``open``.
        """
        cache = cls.open(folder, None)
        cache._check("encoder", cache.manifest["fingerprint"].get("encoder"), encoder_fingerprint(pipe))
        cache._pipe = pipe
        return cache

    def check_decoder(self, modality: str) -> None:
        """Refuse the cache's ``modality`` targets if another decoder made them (checked once per modality).

        Raises:
            CacheMismatchError: naming what differs.
        """
        if self._pipe is None or modality in self._checked:
            return
        found = self.manifest["fingerprint"].get("decoders", {}).get(modality)
        self._check(f"decoders.{modality}", found, decoder_fingerprint(self._pipe, modality))
        self._checked.add(modality)

    def _check(self, part: str, found: Any, wanted: dict[str, Any]) -> None:
        if found != wanted:
            problems = _describe_difference(found or {}, wanted, f"{part}.")
            raise CacheMismatchError(
                f"feature cache {self.folder} was built by other frozen components than this model's: "
                + "; ".join(problems[:5]) + ". Rebuild it ('nextgpt data cache --overwrite') or use another folder")

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: str) -> torch.Tensor | None:
        shard = self._index.get(key)
        if shard is None:
            return None
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.folder / SHARDS / shard), framework="pt")
        return self._handles[shard].get_tensor(key)


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a cache folder, or None when there is none.

    Raises:
        ValueError: the manifest exists but is not one of ours.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a nextgpt feature-cache manifest (format {FORMAT!r})")
    return manifest


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest atomically (temp file + rename)."""
    path = Path(folder) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".manifest.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=2)
    os.replace(temp, path)
    return path


# ---- writing -------------------------------------------------------------------------------------------
def shard_name(keys: Iterable[str]) -> str:
    """Shard files are named by their content so processes and reruns never collide."""
    return f"part-{hashlib.sha256('|'.join(sorted(keys)).encode()).hexdigest()[:16]}.safetensors"


def write_shard(folder: str | Path, tensors: dict[str, torch.Tensor]) -> str:
    name = shard_name(tensors)
    write_weights(tensors, Path(folder) / SHARDS / name)
    return name


def list_shards(folder: str | Path) -> list[str]:
    return sorted(p.name for p in (Path(folder) / SHARDS).glob("part-*.safetensors"))


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
