"""Projectors: shapes, the reference parameter counts, registry errors."""
import pytest
import torch

from nextgpt.config import ProjectorConfig
from nextgpt.projectors import build_input_projector, build_output_projector


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("tokens", [1, 3])
def test_input_projector_shapes(kind, tokens):
    projector = build_input_projector(ProjectorConfig(kind=kind, params={"num_tokens": tokens}), 16, 32)
    assert projector(torch.randn(5, 16)).shape == (5, tokens, 32)


@pytest.mark.parametrize("kind,params", [
    ("transformer", {"d_model": 16, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 32}),
    ("linear-output", {}),
    ("mlp-output", {"hidden_dim": 8}),
])
def test_output_projector_shapes(kind, params):
    projector = build_output_projector(ProjectorConfig(kind=kind, params=params), 32, 12, num_queries=7, num_signal_tokens=4)
    out = projector(torch.randn(3, 4, 32))
    assert out.shape == (3, 7, 12)
    out.sum().backward()
    assert all(p.grad is not None for p in projector.parameters())


@pytest.mark.parametrize("queries,dim,expected", [(77, 768, 31_958_784), (77, 1024, 32_090_112), (1, 512, 31_788_544)])
def test_reference_output_projector_parameter_counts(queries, dim, expected):
    with torch.device("meta"):
        projector = build_output_projector(ProjectorConfig(kind="transformer"), 4096, dim, queries, 4)
    assert sum(p.numel() for p in projector.parameters()) == expected


def test_reference_input_projector_parameter_count():
    with torch.device("meta"):
        projector = build_input_projector(ProjectorConfig(kind="linear"), 1024, 4096)
    assert sum(p.numel() for p in projector.parameters()) == 4_198_400


def test_unknown_kind_and_derived_params_are_explained():
    with pytest.raises(KeyError, match="available"):
        build_input_projector(ProjectorConfig(kind="qformer"), 4, 4)
    with pytest.raises(KeyError, match="available"):
        build_output_projector(ProjectorConfig(kind="linear"), 4, 4, 1, 1)
    with pytest.raises(ValueError, match="derived"):
        build_input_projector(ProjectorConfig(kind="linear", params={"in_dim": 3}), 4, 4)
    with pytest.raises(ValueError, match="bad params"):
        build_input_projector(ProjectorConfig(kind="linear", params={"layers": 3}), 4, 4)
