"""The feature cache: same features as live encoding, used by training (falling back live for what it lacks),
and refused for a model whose frozen parts differ."""
from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator

from nextgpt.training import Trainer, load_train_config, synthetic
from nextgpt.training.cache import CacheMismatchError, FeatureCache, fingerprint, read_manifest
from nextgpt.training.cache_build import build_cache
from nextgpt.training.data import read_dialogues
from nextgpt.training.features import FeatureSource


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_pipe):
    root = tmp_path_factory.mktemp("cache")
    files = [synthetic.caption_pairs(root), synthetic.generation_pairs(root)]
    dialogues = read_dialogues(files, [m.name for m in tiny_pipe.config.modalities])
    manifest = build_cache(tiny_pipe, dialogues, root / "cache", Accelerator(cpu=True), batch_size=3)
    return root, files, dialogues, manifest


def test_cache_holds_the_live_features(setup, tiny_pipe):
    root, _, dialogues, manifest = setup
    assert manifest["fingerprint"] == fingerprint(tiny_pipe)
    assert read_manifest(root / "cache")["shards"] == manifest["shards"]
    cache = FeatureCache.open(root / "cache", fingerprint(tiny_pipe))
    assert len(cache) == 4 + 4  # four distinct images, four distinct captions
    refs = [ref for d in dialogues for t in d.turns for ref in t.inputs]
    requests = [req for d in dialogues for t in d.turns for req in t.outputs]
    cached, live = FeatureSource(tiny_pipe, cache, "cpu"), FeatureSource(tiny_pipe, None, "cpu")
    # equal up to float rounding (the cache was encoded in other batch sizes and thread counts)
    torch.testing.assert_close(cached.media_embeddings(refs), live.media_embeddings(refs), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached.targets(requests)["image"], live.targets(requests)["image"], rtol=1e-4,
                               atol=1e-5)
    assert cached.misses == 0 and cached.hits == len(refs) + len(requests)


def test_rebuilding_encodes_nothing_new(setup, tiny_pipe):
    root, _, dialogues, manifest = setup
    again = build_cache(tiny_pipe, dialogues, root / "cache", Accelerator(cpu=True))
    assert again["shards"] == manifest["shards"]


def test_cache_of_other_frozen_parts_is_refused(setup):
    from nextgpt.pipeline import NextGPT

    root, _, dialogues, _ = setup
    other = NextGPT.from_preset("tiny", seed=1)
    with pytest.raises(CacheMismatchError, match="encoder.weights") as caught:
        FeatureCache.open(root / "cache", fingerprint(other))
    assert "nextgpt data cache --overwrite" in str(caught.value)
    with pytest.raises(CacheMismatchError, match="encoder.weights"):
        FeatureCache.open_for(root / "cache", other)
    with pytest.raises(CacheMismatchError):
        build_cache(other, dialogues, root / "cache", Accelerator(cpu=True))


def test_training_reads_the_cache_and_falls_back_live(setup, tmp_path):
    root, files, _, _ = setup
    mixed = synthetic.instruction_dialogues(root)  # audio captions are not in the cache

    def run(cache_dir):
        sets = ["model={preset: tiny}", f"data.train=[{mixed}]", f"output_dir={tmp_path / str(cache_dir)[-5:]}",
                "progress_bar=false", "log_with=[]", "max_steps=3", f"data.cache_dir={cache_dir}"]
        trainer = Trainer(load_train_config("configs/tiny/stage3.yaml", sets))
        trainer.train()
        return trainer

    with_cache, live = run(root / "cache"), run("null")
    assert with_cache.features.hits > 0 and with_cache.features.misses > 0
    assert live.features.cache is None
    assert [h["train/total"] for h in with_cache.history] == pytest.approx(
        [h["train/total"] for h in live.history], rel=1e-4)


def test_stage1_with_a_cache_never_loads_the_decoders(setup, tmp_path):
    root, files, _, _ = setup
    sets = ["model={preset: tiny}", f"data.train=[{files[0]}]", f"output_dir={tmp_path / 'run'}", "max_steps=2",
            "progress_bar=false", "log_with=[]", f"data.cache_dir={root / 'cache'}"]
    loaded = []
    trainer = Trainer(load_train_config("configs/tiny/stage1.yaml", sets), callbacks=[
        lambda trainer, step: loaded.append(any(d.loaded for d in trainer.pipe.decoders.values()))])
    trainer.train()  # (saving the tiny model's final folder then writes its random decoders)
    assert trainer.features.misses == 0
    assert loaded == [False, False]


def test_a_folder_without_manifest_means_live_encoding(tmp_path, tiny_pipe):
    assert read_manifest(tmp_path) is None
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a nextgpt feature-cache manifest"):
        read_manifest(tmp_path)
