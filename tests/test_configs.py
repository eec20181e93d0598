"""Every shipped training config validates, its trainable patterns match the model it trains, and the
nextgpt-7b recipes train exactly the parameter counts of the released NExT-GPT (reference facts)."""
from __future__ import annotations

from pathlib import Path

import pytest

from nextgpt.model import NextGPTModel, apply_lora
from nextgpt.presets import get_preset
from nextgpt.training.config import TrainConfig, load_train_config
from nextgpt.training.trainables import select_trainable

CONFIGS = sorted(Path("configs").glob("**/*.yaml"))

# input projection 4,198,400; output projectors 31,958,784 + 32,090,112 + 31,788,544; LoRA 33,554,432;
# added-token rows: 38 tokens × 4096 × (input + output table).
REFERENCE_7B = {1: 4_198_400, 2: 95_837_440 + 38 * 4096 * 2, 3: 4_198_400 + 95_837_440 + 33_554_432}


def _meta_model(path: Path, config: TrainConfig) -> NextGPTModel:
    """The model a config trains, on the meta device: stage 1's preset for the whole recipe family."""
    source = config.model
    if source.checkpoint is not None:
        source = load_train_config(path.parent / "stage1.yaml").model
    model = NextGPTModel.build(get_preset(source.preset), meta=True)
    if config.lora is not None and model.config.lora is None:
        model.llm = apply_lora(model.llm, config.lora)
    return model


def test_configs_are_shipped():
    names = {p.relative_to("configs").as_posix() for p in CONFIGS}
    for family in ("tiny", "nextgpt-7b"):
        assert {f"{family}/stage{i}.yaml" for i in (1, 2, 3)} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to("configs").as_posix())
def test_shipped_config_validates_and_its_patterns_match(path):
    config = load_train_config(path)
    assert f"stage{config.stage}" in path.stem
    model = _meta_model(path, config)
    report = select_trainable(model, config.trainable, config.train_token_rows)
    assert report.count > 0
    assert not any(name.startswith("encoder.") for name in report.names)
    if path.parent.name == "nextgpt-7b":
        assert report.count == REFERENCE_7B[config.stage]
        assert config.optim.betas == (0.9, 0.95) and config.optim.weight_decay == 1e-3
        assert config.optim.grad_clip == 1.0 and config.data.max_length == 512
    if config.stage == 3:
        assert config.loss.signal_scale.get("video") == 2.0


def test_overrides_and_errors_that_teach(tmp_path):
    config = load_train_config("configs/tiny/stage1.yaml", ["optim.lr=1e-4", "data.batch_size=2", "max_steps=3"])
    assert (config.optim.lr, config.data.batch_size, config.max_steps) == (1e-4, 2, 3)
    with pytest.raises(ValueError, match="optim.lrr"):
        load_train_config("configs/tiny/stage1.yaml", ["optim.lrr=1"])
    with pytest.raises(ValueError, match="key.sub=value"):
        load_train_config("configs/tiny/stage1.yaml", ["optim.lr"])
    with pytest.raises(ValueError, match="exactly one of 'preset'"):
        load_train_config("configs/tiny/stage1.yaml", ["model.checkpoint=somewhere"])
    with pytest.raises(FileNotFoundError, match="configs/"):
        load_train_config(tmp_path / "missing.yaml")
    model = NextGPTModel.build(get_preset("tiny"), meta=True)
    with pytest.raises(ValueError, match="matches no parameter"):
        select_trainable(model, ["output_projector.*"])
    with pytest.raises(ValueError, match="frozen encoder"):
        select_trainable(model, ["encoder.*"])
