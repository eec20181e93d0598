"""The encoder interface: media items → one pooled embedding per item."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from nextgpt.config import EncoderConfig


class MediaEncoder(nn.Module):
    """A frozen encoder for several modalities.

    Subclasses set ``modalities`` and ``embed_dim``, implement ``preprocess`` and ``forward_preprocessed``, and
    build themselves in ``from_config`` (what ``nextgpt.encoders.build_encoder`` calls through the ``ENCODERS``
    registry). Items may be file paths, PIL images, numpy arrays or tensors (see the subclass); loading goes
    through ``nextgpt.encoders.media`` so that every limit of ``MediaLimits`` is enforced.

    Encoders are frozen: ``train()`` leaves them in eval mode and their parameters never require grad.
    """

    modalities: tuple[str, ...] = ()
    embed_dim: int = 0

    @classmethod
    def from_config(
        cls,
        config: EncoderConfig,
        *,
        base_dir: str | Path | None = None,
        allow_random_init: bool = False,
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        allow_pickle: bool = False,
    ) -> "MediaEncoder":
        """Build the encoder described by ``config`` (see ``nextgpt.encoders.build_encoder``)."""
        raise NotImplementedError

    def preprocess(self, modality: str, items: Sequence[Any]) -> torch.Tensor:
        """Load and turn ``items`` into the batched model input for ``modality`` (on the CPU)."""
        raise NotImplementedError

    def forward_preprocessed(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        """Embed a preprocessed batch. Returns ``[B, embed_dim]``."""
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, modality: str, items: Sequence[Any]) -> torch.Tensor:
        """Embed a batch of media items of one modality.

        Returns:
            ``[len(items), embed_dim]`` float tensor on the encoder's device.

        Raises:
            KeyError: for a modality this encoder does not handle.
            nextgpt.encoders.media.MediaError: for a file that is unreadable or over a limit.
        """
        self.check_modality(modality)
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise TypeError(f"encode() takes a sequence of {modality} items, got {type(items).__name__}; wrap one item in a list")
        if len(items) == 0:
            return torch.zeros(0, self.embed_dim, device=self.device, dtype=self.dtype)
        inputs = self.preprocess(modality, items)
        # Token ids stay integers; only floating inputs take the encoder's dtype.
        dtype = self.dtype if inputs.is_floating_point() else None
        return self.forward_preprocessed(modality, inputs.to(self.device, dtype))

    def forward(self, modality: str, items: Sequence[Any]) -> torch.Tensor:
        """Same as :meth:`encode`."""
        return self.encode(modality, items)

    def train(self, mode: bool = True) -> "MediaEncoder":
        """Frozen encoders stay in eval mode (no dropout / drop-path), whatever a parent module asks."""
        return super().train(False)

    def check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise KeyError(f"encoder {type(self).__name__} cannot encode {modality!r}; it handles {self.modalities}")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
