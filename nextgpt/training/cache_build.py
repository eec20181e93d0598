"""Build a feature cache (``nextgpt data cache``): every distinct input item and output caption of the
dialogues, encoded once by the frozen components, the work split across Accelerate processes."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from nextgpt.dialogs.schema import Dialogue

from . import cache as store
from .features import FeatureSource

logger = logging.getLogger(__name__)


def cache_items(dialogues: Sequence[Dialogue]) -> list[tuple[str, str, str, str]]:
    """Distinct ``(key, kind, modality, payload)`` items, sorted by key (the same order on every process)."""
    items: dict[str, tuple[str, str, str, str]] = {}
    for dialogue in dialogues:
        for turn in dialogue.turns:
            for ref in turn.inputs:
                key = store.media_key(ref.modality, ref.path)
                items[key] = (key, "media", ref.modality, ref.path)
            for request in turn.outputs:
                key = store.target_key(request.modality, request.caption)
                items[key] = (key, "target", request.modality, request.caption)
    return [items[k] for k in sorted(items)]


def build_cache(pipe: Any, dialogues: Sequence[Dialogue], folder: str | Path, accelerator: Any, *,
                batch_size: int = 16, shard_size: int = 4096, overwrite: bool = False) -> dict[str, Any]:
    """Encode what is not cached yet and write shards plus the manifest.

    Args:
        pipe: the ``NextGPT`` whose frozen encoder/decoders produce the features.
        dialogues: dialogues with media paths already resolved.
        accelerator: an ``accelerate.Accelerator``; each process encodes its share of the items.
        overwrite: start afresh when the folder holds a cache of other frozen components.

    Returns:
        The manifest written.

    Raises:
        CacheMismatchError: the folder holds a cache made by other components (and ``overwrite`` is False).
    """
    folder = Path(folder)
    wanted = store.fingerprint(pipe)
    manifest = store.read_manifest(folder)
    if manifest is not None and manifest["fingerprint"] != wanted:
        if not overwrite:
            store.FeatureCache.open(folder, wanted)  # raises CacheMismatchError with the differences
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(folder / store.SHARDS, ignore_errors=True)
            (folder / store.MANIFEST).unlink()
        manifest = None
    accelerator.wait_for_everyone()
    existing = store.FeatureCache(folder, manifest) if manifest else None
    todo = [item for item in cache_items(dialogues) if existing is None or item[0] not in existing]
    source = FeatureSource(pipe, None, "cpu")
    mine = todo[accelerator.process_index::accelerator.num_processes]
    logger.info("feature cache %s: %d items to encode (%d on this process)", folder, len(todo), len(mine))
    pending: dict[str, Any] = {}
    groups: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {}
    for item in mine:
        groups.setdefault((item[1], item[2]), []).append(item)
    bar = tqdm(total=len(mine), desc="caching features", disable=not accelerator.is_local_main_process)
    for (kind, modality), items in groups.items():
        encode = source.encode_media if kind == "media" else source.encode_captions
        for batch in store.chunks(items, batch_size):
            tensors = encode(modality, [payload for *_, payload in batch]).cpu()
            for (key, *_), tensor in zip(batch, tensors):
                pending[key] = tensor.clone()
            if len(pending) >= shard_size:
                store.write_shard(folder, pending)
                pending = {}
            bar.update(len(batch))
    bar.close()
    if pending:
        store.write_shard(folder, pending)
    accelerator.wait_for_everyone()
    manifest = {
        "format": store.FORMAT, "version": store.VERSION, "fingerprint": wanted,
        "config": {"encoder": pipe.config.encoder.model_dump(mode="json", exclude={"limits"}),
                   "decoders": {s.name: s.decoder.model_dump(mode="json") for s in pipe.config.output_modalities}},
        "shards": store.list_shards(folder),
    }
    if accelerator.is_main_process:
        store.write_manifest(folder, manifest)
    accelerator.wait_for_everyone()
    return manifest
