"""The official-checkpoint converter on synthetic state dicts, and the nextgpt-7b preset on the meta device."""
from __future__ import annotations

import pickle

import pytest
import torch

from nextgpt.checkpoint import read_weights
from nextgpt.config import LoRAConfig
from nextgpt.convert import convert_official, convert_state, map_official_key
from nextgpt.info import format_table, parameter_table
from nextgpt.model import NextGPTModel
from nextgpt.presets import get_preset

# Shapes from the reference doc's description of the released pytorch_model.pt.
OFFICIAL_7B_SHAPES = {
    "llama_proj.weight": (4096, 1024),
    "gen_text_hidden_fcs.0.fc.weight": (512, 4096),
    "gen_text_hidden_fcs.0.model.weight": (768, 512),
    "gen_text_hidden_fcs.0.query_embs": (1, 77, 512),
    "gen_text_hidden_fcs_video.0.model.weight": (1024, 512),
    "gen_text_hidden_fcs_video.0.query_embs": (1, 77, 512),
    "gen_text_hidden_fcs_audio.0.model.weight": (512, 512),
    "gen_text_hidden_fcs_audio.0.query_embs": (1, 1, 512),
    "gen_text_hidden_fcs.0.tfm.encoder.layers.0.self_attn.in_proj_weight": (1536, 512),
    "gen_text_hidden_fcs.0.tfm.decoder.layers.3.multihead_attn.out_proj.weight": (512, 512),
    "llama_model.base_model.model.model.layers.31.self_attn.q_proj.lora_A.default.weight": (32, 4096),
    "llama_model.base_model.model.model.layers.0.self_attn.o_proj.lora_B.default.weight": (4096, 32),
}


@pytest.fixture(scope="module")
def meta_7b():
    return NextGPTModel.build(get_preset("nextgpt-7b"), meta=True)


def test_7b_meta_shapes_match_the_released_checkpoint(meta_7b):
    from nextgpt.checkpoint import trainable_state

    ours = {k: tuple(v.shape) for k, v in trainable_state(meta_7b).items()}
    for key, shape in OFFICIAL_7B_SHAPES.items():
        assert ours[map_official_key(key)] == shape, key
    assert meta_7b.llm.get_input_embeddings().weight.shape == (32038, 4096)
    assert meta_7b.llm.get_output_embeddings().weight.shape == (32038, 4096)
    assert meta_7b.signal_token_ids["image"] == [32002, 32003, 32004, 32005]
    assert meta_7b.signal_token_ids["video"][0] == 32006 and meta_7b.signal_token_ids["audio"] == list(range(32030, 32038))


def test_7b_trainables_come_to_the_reference_133_6m():
    rows = parameter_table(get_preset("nextgpt-7b"), include_decoders=False)
    assert sum(r.trainable for r in rows) == 133_590_272
    by_name = {r.name: r.total for r in rows}
    assert by_name["input projector (shared)"] == 4_198_400
    assert by_name["lora (r=32)"] == 33_554_432
    assert by_name["encoder (imagebind)"] == 1_200_781_057
    assert "133,590,272" in format_table(rows)


def tiny_official_config():
    """The tiny preset with the released design's LoRA, so every official key family exists."""
    return get_preset("tiny").model_copy(update={"lora": LoRAConfig(r=4, alpha=4, dropout=0.0)})


def synthetic_official_state(config) -> dict[str, torch.Tensor]:
    """Official key names with the tiny model's shapes and random fp16 values."""
    from nextgpt.checkpoint import trainable_state

    model = NextGPTModel.build(config, meta=True)
    inverse = {}
    for key in trainable_state(model):
        if key.startswith("input_projectors.shared.proj."):
            inverse[key] = "llama_proj." + key.rsplit(".", 1)[1]
        elif key.startswith("output_projectors."):
            _, modality, rest = key.split(".", 2)
            prefix = {"image": "gen_text_hidden_fcs.0.", "video": "gen_text_hidden_fcs_video.0.",
                      "audio": "gen_text_hidden_fcs_audio.0."}[modality]
            for ours, theirs in (("in_proj.", "fc."), ("transformer.", "tfm."), ("out_proj.", "model."),
                                 ("queries", "query_embs")):
                if rest.startswith(ours):
                    inverse[key] = prefix + theirs + rest[len(ours):]
        elif key.startswith("llm."):
            inverse[key] = "llama_model." + key[len("llm."):]
    shapes = {k: tuple(v.shape) for k, v in trainable_state(model).items()}
    generator = torch.Generator().manual_seed(0)
    state = {inverse[k]: torch.randn(shapes[k], generator=generator).half() for k in inverse}
    vocab, hidden = model.llm.get_input_embeddings().weight.shape
    state["llama_model.base_model.model.model.embed_tokens.weight"] = torch.randn(vocab, hidden, generator=generator).half()
    state["llama_model.base_model.model.lm_head.weight"] = torch.randn(vocab, hidden, generator=generator).half()
    return state


def test_convert_official_round_trip(tmp_path):
    from nextgpt import NextGPT

    config = tiny_official_config()
    official = synthetic_official_state(config)
    source = tmp_path / "pytorch_model.pt"
    torch.save(official, source)
    out = convert_official(source, tmp_path / "converted", config)
    assert (out / "model.safetensors").is_file() and (out / "embeddings.safetensors").is_file()
    pipe = NextGPT.from_config(config)
    from nextgpt.checkpoint import load_trainable

    load_trainable(pipe.model, out)
    state = pipe.model.state_dict()
    torch.testing.assert_close(state["input_projectors.shared.proj.weight"], official["llama_proj.weight"].float())
    torch.testing.assert_close(state["output_projectors.audio.queries"],
                               official["gen_text_hidden_fcs_audio.0.query_embs"].float())
    lora_key = next(k for k in official if "lora_A" in k)
    torch.testing.assert_close(pipe.model.llm.state_dict()[lora_key[len("llama_model."):]], official[lora_key].float())
    torch.testing.assert_close(pipe.model.llm.get_input_embeddings().weight,
                               official["llama_model.base_model.model.model.embed_tokens.weight"].float())


def test_convert_rejects_wrong_shapes_and_unknown_keys():
    config = tiny_official_config()
    official = synthetic_official_state(config)
    official["llama_proj.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"input_projectors.shared.proj.weight: \(3, 3\) != expected"):
        convert_state(official, config)
    with pytest.raises(KeyError, match="unexpected key"):
        map_official_key("visual_encoder.blocks.0.weight")


class _Boom:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_malicious_pickle_never_executes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"llama_proj.weight": _Boom()}))
    with pytest.raises(ValueError, match="pickle checkpoint"):
        read_weights(path)  # refused without opt-in
    with pytest.raises(ValueError, match=r"cannot be loaded with torch.load\(weights_only=True\)"):
        read_weights(path, allow_pickle=True)  # opted in: weights_only refuses the payload
    assert not (tmp_path / "PWNED").exists()


def test_corrupt_or_mismatched_checkpoint_is_named(tmp_path, tiny_pipe):
    from nextgpt import NextGPT

    folder = tiny_pipe.save_pretrained(tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="model.safetensors is not a valid safetensors file"):
        NextGPT.from_pretrained(folder)
    folder = tiny_pipe.save_pretrained(tmp_path / "ckpt2")
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    state["input_projectors.shared.proj.weight"] = torch.zeros(2, 2)
    del state["output_projectors.image.queries"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"does not match this model's config: 1 tensors with the wrong shape.*"
                                         r"1 missing \(e.g. \['output_projectors.image.queries'\]\)"):
        NextGPT.from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="config.json"):
        NextGPT.from_pretrained(tmp_path / "nowhere")
