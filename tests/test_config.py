"""Config validation, presets by name, JSON round trip."""
import json

import pytest

from nextgpt.config import DecoderConfig, ModalitySpec, NextGPTConfig, ProjectorConfig
from nextgpt.presets import get_preset, preset_names


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(KeyError) as error:
        get_preset("nextgpt-13b")
    message = str(error.value)
    assert "nextgpt-13b" in message and "tiny" in message and "nextgpt-7b" in message


def test_presets_round_trip_through_json(tmp_path):
    for name in preset_names():
        config = get_preset(name)
        config.save(tmp_path / name)
        assert NextGPTConfig.load(tmp_path / name) == config


def test_reference_token_layout():
    config = get_preset("nextgpt-7b")
    assert [m.name for m in config.modalities] == ["image", "video", "audio"]
    assert [m.num_signal_tokens for m in config.modalities] == [4, 24, 8]
    added = config.added_tokens
    assert len(added) == 38  # ids 32000..32037 on top of the 32000-token LLaMA vocabulary
    assert added[2:6] == ["[IMG0]", "[IMG1]", "[IMG2]", "[IMG3]"]
    assert added[6] == "[VID0]" and added[29] == "[VID23]" and added[30] == "[AUD0]" and added[-1] == "[AUD7]"
    conditions = {m.name: (m.decoder.condition_tokens, m.decoder.condition_dim) for m in config.modalities}
    assert conditions == {"image": (77, 768), "video": (77, 1024), "audio": (1, 512)}


def _spec(**kwargs):
    base = dict(name="image", num_signal_tokens=2, input_projector=ProjectorConfig(kind="linear"),
                output_projector=ProjectorConfig(kind="linear-output"),
                decoder=DecoderConfig(kind="stable-diffusion", condition_tokens=4, condition_dim=8))
    base.update(kwargs)
    return ModalitySpec(**base)


def test_spec_defaults_and_signal_tokens():
    spec = _spec()
    assert spec.placeholder == "<image>" and spec.signal_tokens == ["[IMAGE0]", "[IMAGE1]"]


def test_generated_modality_needs_projector_and_decoder():
    with pytest.raises(ValueError, match="needs all three"):
        _spec(decoder=None)
    with pytest.raises(ValueError, match="needs all three"):
        _spec(num_signal_tokens=0)


def test_duplicate_modalities_and_unknown_fields_are_rejected():
    config = get_preset("tiny")
    data = json.loads(config.model_dump_json())
    data["modalities"].append(data["modalities"][0])
    with pytest.raises(ValueError, match="distinct names"):
        NextGPTConfig.model_validate(data)
    data = json.loads(config.model_dump_json())
    data["llm"]["hidden"] = 3
    with pytest.raises(ValueError, match="hidden"):
        NextGPTConfig.model_validate(data)


def test_load_reports_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        NextGPTConfig.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        NextGPTConfig.load(tmp_path)
    (tmp_path / "config.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="not a valid NextGPT config"):
        NextGPTConfig.load(tmp_path)
