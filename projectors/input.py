"""Input projectors: one encoder embedding ``[B, E]`` → ``num_tokens`` LLM input tokens ``[B, T, H]``."""
from __future__ import annotations

import torch
from torch import nn

from nextgpt.registry import PROJECTORS


@PROJECTORS.register("linear")
class LinearInputProjector(nn.Module):
    """``Linear(E → T·H)``; with T = 1 this is the reference ``llama_proj`` (1024 → 4096).

    Args:
        in_dim: encoder embedding size E.
        out_dim: LLM hidden size H.
        num_tokens: LLM tokens produced per media item T.
    """

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int = 1) -> None:
        super().__init__()
        self.num_tokens, self.out_dim = num_tokens, out_dim
        self.proj = nn.Linear(in_dim, out_dim * num_tokens)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, E]`` → ``[B, T, H]``."""
        return self.proj(embeddings).view(embeddings.shape[0], self.num_tokens, self.out_dim)


@PROJECTORS.register("mlp")
class MLPInputProjector(nn.Module):
    """Two-layer GELU MLP (LLaVA-1.5 style) from E to T·H tokens.

    Args:
        in_dim, out_dim, num_tokens: as for ``LinearInputProjector``.
        hidden_dim: width of the hidden layer (default ``out_dim``).
    """

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int = 1, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.num_tokens, self.out_dim = num_tokens, out_dim
        hidden_dim = hidden_dim or out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim * num_tokens))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, E]`` → ``[B, T, H]``."""
        return self.net(embeddings).view(embeddings.shape[0], self.num_tokens, self.out_dim)
