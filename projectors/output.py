"""Output projectors: signal-token hidden states ``[B, N, H]`` → decoder conditions ``[B, Q, D]``."""
from __future__ import annotations

import torch
from torch import nn

from nextgpt.registry import PROJECTORS


@PROJECTORS.register("transformer")
class TransformerOutputProjector(nn.Module):
    """The reference output projector: ``Linear(H→d)`` → ``nn.Transformer`` whose decoder reads ``Q`` learnable
    queries → ``Linear(d→D)``.

    The reference uses d_model 512, 4 heads, 4 encoder + 4 decoder layers, feed-forward 2048, dropout 0,
    pre-norm, batch-first (≈32M parameters for H = 4096).

    Args:
        in_dim: LLM hidden size H.  num_signal_tokens: N (unused by the layers; recorded for checks).
        out_dim: decoder condition width D.  num_queries: decoder condition length Q.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_queries: int,
        num_signal_tokens: int,
        d_model: int = 512,
        nhead: int = 4,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_signal_tokens = num_signal_tokens
        self.in_proj = nn.Linear(in_dim, d_model)
        layer_args = dict(
            d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward, dropout=dropout, norm_first=True,
            batch_first=True,
        )
        # Built explicitly only to pass enable_nested_tensor=False (no fast path exists for pre-norm layers, and
        # nn.Transformer's default warns about it); the module tree and state-dict keys equal nn.Transformer's.
        encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(**layer_args), num_encoder_layers, nn.LayerNorm(d_model),
            enable_nested_tensor=False,
        )
        self.transformer = nn.Transformer(
            **layer_args, num_encoder_layers=num_encoder_layers, num_decoder_layers=num_decoder_layers,
            custom_encoder=encoder,
        )
        self.out_proj = nn.Linear(d_model, out_dim)
        self.queries = nn.Parameter(torch.randn(1, num_queries, d_model) * 0.02)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, N, H]`` → ``[B, Q, D]``."""
        source = self.in_proj(hidden)
        queries = self.queries.expand(hidden.shape[0], -1, -1).to(source.dtype)
        return self.out_proj(self.transformer(source, queries))


class _TokenMixingOutputProjector(nn.Module):
    """Per-token map ``H → D`` followed by a learned mix of the N signal tokens into Q condition tokens."""

    def __init__(self, token_map: nn.Module, num_signal_tokens: int, num_queries: int) -> None:
        super().__init__()
        self.num_signal_tokens = num_signal_tokens
        self.token_map = token_map
        self.mix = nn.Linear(num_signal_tokens, num_queries)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, N, H]`` → ``[B, Q, D]``."""
        if hidden.shape[1] != self.num_signal_tokens:
            raise ValueError(f"expected {self.num_signal_tokens} signal tokens, got {hidden.shape[1]}")
        mapped = self.token_map(hidden)  # [B, N, D]
        return self.mix(mapped.transpose(1, 2)).transpose(1, 2)


@PROJECTORS.register("linear-output")
class LinearOutputProjector(_TokenMixingOutputProjector):
    """``Linear(H→D)`` per signal token, then a linear N → Q token mix."""

    def __init__(self, in_dim: int, out_dim: int, num_queries: int, num_signal_tokens: int) -> None:
        super().__init__(nn.Linear(in_dim, out_dim), num_signal_tokens, num_queries)


@PROJECTORS.register("mlp-output")
class MLPOutputProjector(_TokenMixingOutputProjector):
    """GELU MLP ``H→hidden→D`` per signal token, then a linear N → Q token mix."""

    def __init__(
        self, in_dim: int, out_dim: int, num_queries: int, num_signal_tokens: int, hidden_dim: int = 512
    ) -> None:
        token_map = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))
        super().__init__(token_map, num_signal_tokens, num_queries)
