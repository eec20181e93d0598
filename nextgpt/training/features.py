"""The frozen features a training batch needs — input-media embeddings and caption targets — read from the
feature cache when it has them and computed live (frozen encoder, decoder text encoders) otherwise."""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Sequence

import torch

from nextgpt.dialogs.schema import MediaRef, OutputRequest

from .cache import FeatureCache, media_key, target_key

logger = logging.getLogger(__name__)


class FeatureSource:
    """Looks features up by content hash in ``cache`` (optional) and encodes the rest live.

    Args:
        pipe: the ``NextGPT`` being trained (its frozen encoder and decoders are used for live encoding).
        cache: an opened ``FeatureCache`` or None.
        device: where the returned tensors are put.
    """

    def __init__(self, pipe: Any, cache: FeatureCache | None, device: torch.device | str) -> None:
        self.pipe = pipe
        self.cache = cache
        self.device = torch.device(device)
        self.hits = 0
        self.misses = 0

    def media_embeddings(self, refs: Sequence[MediaRef]) -> torch.Tensor | None:
        """Encoder embeddings of ``refs`` in order: ``[len(refs), E]`` (None for no refs)."""
        if not refs:
            return None
        keys = [media_key(r.modality, r.path) for r in refs]
        return self._lookup(keys, [(r.modality, r.path) for r in refs], self.encode_media)

    def targets(self, requests: Sequence[OutputRequest]) -> dict[str, torch.Tensor]:
        """Decoder text-encoder targets per modality, each ``[n_m, Q, D]`` in the order of ``requests``."""
        out: dict[str, torch.Tensor] = {}
        by_modality: dict[str, list[OutputRequest]] = defaultdict(list)
        for request in requests:
            by_modality[request.modality].append(request)
        for modality, items in by_modality.items():
            if self.cache is not None:
                self.cache.check_decoder(modality)
            keys = [target_key(modality, r.caption) for r in items]
            out[modality] = self._lookup(keys, [(modality, r.caption) for r in items], self.encode_captions)
        return out

    # ---- live encoding (also what the cache builder stores) ------------------------------------------
    def encode_media(self, modality: str, paths: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.pipe.model.encoder.encode(modality, list(paths)).float()

    def encode_captions(self, modality: str, captions: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.pipe.decoders[modality].encode_text(list(captions)).float()

    def _lookup(self, keys: list[str], items: list[tuple[str, Any]], encode: Any) -> torch.Tensor:
        found: list[torch.Tensor | None] = [self.cache.get(k) if self.cache is not None else None for k in keys]
        missing: dict[str, list[int]] = defaultdict(list)
        for index, tensor in enumerate(found):
            if tensor is None:
                missing[items[index][0]].append(index)
        self.hits += len(keys) - sum(len(v) for v in missing.values())
        for modality, indices in missing.items():
            self.misses += len(indices)
            encoded = encode(modality, [items[i][1] for i in indices])
            for index, tensor in zip(indices, encoded):
                found[index] = tensor
        return torch.stack([t.to(self.device, torch.float32) for t in found])
