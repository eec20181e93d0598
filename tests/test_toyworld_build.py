"""The whole toy-world recipe, seconds long: data, judges, encoder, LLM, decoders, stages 1–3 through the Trainer,
fp16 storage, evaluation — so the recipe cannot silently rot. Learns nothing useful (a few steps of each)."""
from __future__ import annotations

import json
import os

import pytest

from nextgpt.pipeline import NextGPT
from nextgpt.toyworld.build import Recipe, ToyWorldBuild, toy_config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("toyworld")
    lines: list[str] = []
    old = os.umask(0o022)  # the usual umask: files written by the build must then be readable by others
    try:
        folder = ToyWorldBuild(out, Recipe.quick(), log=lines.append).run()
    finally:
        os.umask(old)
    return out, folder, lines


def test_quick_recipe_writes_an_evaluated_checkpoint(built):
    out, folder, _ = built
    for name in ("config.json", "model.safetensors", "encoder.safetensors", "eval_toyworld.json", "card.json",
                 "build.json", "judges/classifiers.json", "llm/config.json", "tokenizer/tokenizer.json"):
        assert (folder / name).is_file(), name
    build = json.loads((folder / "build.json").read_text())
    names = [step["name"] for step in build["steps"]]
    assert names == ["data", "judges", "encoder", "llm", "decoder-image", "decoder-video", "decoder-audio", "base",
                     "stage1", "stage2", "stage3"]
    stages = {step["name"]: step["summary"] for step in build["steps"] if step["name"].startswith("stage")}
    assert [stages[f"stage{n}"]["steps"] for n in (1, 2, 3)] == [3, 3, 3]
    # each stage trains what NExT-GPT trains: stage 3 adds LoRA, so it trains more than stage 2
    assert stages["stage3"]["trainable_parameters"] > stages["stage2"]["trainable_parameters"]
    report = json.loads((folder / "eval_toyworld.json").read_text())
    assert set(report["per_modality"]) == {"image", "audio", "video"}
    assert report["limit"] == 2 and report["part"] == "held_out"
    # and the validation set of training combinations, routed without the decoders
    validation = json.loads((folder / "eval_toyworld-validation-routing.json").read_text())
    assert validation["part"] == "validation" and validation["media_judged"] is False
    assert validation["eval_dir"] == "validation" and (out / "validation" / "targets.jsonl").is_file()
    assert validation["counts"]["per_kind"]["conversion"] == 3 and validation["counts"]["per_kind"]["tools"] == 3
    assert any(line.startswith("[validation]") for line in built[2])


def test_stage_3_keeps_the_input_projectors_stage_1_aligned_and_trains_the_output_projectors(built):
    # the recipe's stage 3 leaves the input projectors out of `trainable` (toyworld-recipe/stage3.yaml: moving them
    # re-fits them to the trained sounds and costs held-out captions)
    from safetensors.torch import load_file

    out, _, _ = built
    weights = {n: load_file(str(out / f"stage{n}" / "final" / "model.safetensors")) for n in (1, 3)}
    inputs = [k for k in weights[3] if k.startswith("input_projectors.")]
    outputs = [k for k in weights[3] if k.startswith("output_projectors.")]
    assert inputs and outputs
    assert all(weights[1][k].equal(weights[3][k]) for k in inputs)
    stage2 = load_file(str(out / "stage2" / "final" / "model.safetensors"))
    assert any(not stage2[k].equal(weights[3][k]) for k in outputs)


def test_the_checkpoint_is_stored_in_float16_and_loads_in_float32(built):
    from safetensors import safe_open

    _, folder, _ = built
    with safe_open(str(folder / "encoder.safetensors"), framework="pt") as handle:
        key = next(iter(handle.keys()))
        assert str(handle.get_tensor(key).dtype) == "torch.float16"
    unreadable = [f for f in folder.rglob("*") if f.is_file() and not f.stat().st_mode & 0o004]
    assert not unreadable, unreadable  # rewritten in float16 atomically, still readable by other users
    pipe = NextGPT.from_pretrained(folder)
    assert {p.dtype for p in pipe.model.parameters()} == {__import__("torch").float32}
    assert pipe.config.lora is not None  # stage 3's adapters travel with the model
    assert pipe.card["examples"]


def test_finished_steps_are_reused(built):
    out, _, _ = built
    lines: list[str] = []
    ToyWorldBuild(out, Recipe.quick(), log=lines.append).run()
    assert all("reusing" in line for line in lines if line.startswith("[")), lines


def test_toy_config_wires_the_parts_with_paths_relative_to_them(built):
    out, _, _ = built
    config = toy_config(out / "parts")
    assert config.llm.path == "llm/llm" and config.encoder.path.startswith("encoder/")
    assert {m.name: m.decoder.path for m in config.output_modalities} == {
        "image": "decoders/image", "video": "decoders/video", "audio": "decoders/audio"}


def test_a_world_written_by_another_version_is_refused_not_reused(tmp_path):
    """A world folder is reused when its manifest is this version's, seed and size; one of an older version (whose
    training files differ) stops the build with what to do, and nothing in it is touched."""
    from dataclasses import asdict

    from nextgpt.toyworld.dataset import WORLD_VERSION, get_sizes

    recipe = Recipe.quick()
    manifest = tmp_path / "world" / "manifest.json"
    manifest.parent.mkdir()
    written = {"world": WORLD_VERSION, "seed": recipe.seed, "sizes": asdict(get_sizes(recipe.data_size))}
    manifest.write_text(json.dumps(written))
    build = ToyWorldBuild(tmp_path, recipe, log=lambda line: None)
    assert build._same_world()
    manifest.write_text(json.dumps({**written, "world": "nextgpt-toyworld-v1"}))
    assert not build._same_world()
    with pytest.raises(ValueError, match=r"version 'nextgpt-toyworld-v1'.*Build into a new folder, or remove"):
        build.data()
    assert json.loads(manifest.read_text())["world"] == "nextgpt-toyworld-v1"
    assert sorted(p.name for p in (tmp_path / "world").iterdir()) == ["manifest.json"]


def test_missing_parts_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="train the toy encoder first"):
        toy_config(tmp_path)


def test_parts_trained_in_parallel_processes_equal_the_sequential_ones(built, tmp_path):
    """``jobs=2`` trains the encoder, LLM and decoders (and writes the world's data) in two spawned processes;
    every part comes out the same as in the one-process build (each part seeds itself), and the build records them
    as trained, not reused."""
    import shutil

    import torch
    from safetensors.torch import load_file

    out, _, _ = built
    shutil.copytree(out / "judges", tmp_path / "judges")
    recipe = Recipe.quick()
    recipe.jobs = 2
    lines: list[str] = []
    build = ToyWorldBuild(tmp_path, recipe, log=lines.append)
    ran = build._parts_in_parallel()
    assert ran == set(ToyWorldBuild.PART_STEPS) | {"data"}  # the world's data is written beside the parts
    assert (tmp_path / "world" / "manifest.json").read_text() == (out / "world" / "manifest.json").read_text()
    assert any(line.startswith("[parts] training") for line in lines)
    for weights in ("encoder/encoder.safetensors", "decoders/image/unet/diffusion_pytorch_model.safetensors",
                    "llm/llm/model.safetensors"):
        sequential, parallel = load_file(out / "parts" / weights), load_file(tmp_path / "parts" / weights)
        assert sequential.keys() == parallel.keys()
        assert all(torch.equal(sequential[k], parallel[k]) for k in sequential), weights
    build.part("encoder")  # complete: reused
    assert build.records[-1].reused and lines[-1].startswith("[encoder] reusing")
    with pytest.raises(ValueError, match="unknown part step"):
        build.part("vocoder")


def test_a_build_can_start_from_the_frozen_parts_of_a_finished_model(built, tmp_path):
    """``--parts-from``: the encoder, LLM, decoders and judges of a model come back as a build's parts, which the
    build then reuses; the base it wires from them carries the model's frozen weights exactly."""
    import re

    import torch

    from nextgpt.toyworld.parts import extract_parts

    _, folder, _ = built
    again = tmp_path / "again"
    record = extract_parts(folder, again)
    assert extract_parts(folder, again) == record  # the same command again (an interrupted build) resumes
    assert record["parts"] == ["encoder", "llm", "decoder-image", "decoder-video", "decoder-audio"]
    build = ToyWorldBuild(again, Recipe.quick(), log=lambda line: None)
    build.judges()
    for name in ToyWorldBuild.PART_STEPS:
        build.part(name)
    assert all(r.reused and r.summary["extracted_from"] == str(folder.resolve()) for r in build.records[1:])
    build.base()
    model = NextGPT.from_pretrained(folder).model.state_dict()
    model = {re.sub(r"base_model\.model\.|\.base_layer", "", k): v for k, v in model.items()}  # LoRA-wrapped LLM
    base = NextGPT.from_pretrained(again / "base").model.state_dict()
    frozen = [k for k in base if "projector" not in k]
    assert len(frozen) > 100 and all(k in model for k in frozen)
    vocabulary = record["llm_vocabulary"]
    for key in frozen:  # the added tokens' rows are new in the base, as in a build that trained its own LLM
        ours, theirs = (base[key][:vocabulary], model[key][:vocabulary]) if "embed_tokens" in key or "lm_head" in key \
            else (base[key], model[key])
        assert torch.equal(ours, theirs.to(ours.dtype)), key


def test_parts_from_refuses_a_folder_that_is_not_a_model_or_a_build_with_parts(built, tmp_path, capsys):
    from nextgpt.cli import main
    from nextgpt.toyworld.parts import extract_parts

    out, folder, _ = built
    with pytest.raises(FileExistsError, match="exists already"):
        extract_parts(folder, out)  # the build's own parts are never overwritten
    assert main(["toyworld", "build", "--out", str(tmp_path / "b"), "--parts-from", str(tmp_path)]) == 2
    assert "has no config.json: give the folder of a toy-world model" in capsys.readouterr().err
    assert not (tmp_path / "b" / "parts").exists()
    assert main(["toyworld", "build", "--out", str(tmp_path / "c"), "--quick", "--validation", "-1"]) == 2
    assert "--validation must be 0 (none) or more" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_the_stages_never_run_more_threads_than_the_machine_has_cores(monkeypatch):
    from nextgpt.toyworld.build import stage_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert stage_threads(Recipe(threads=2, jobs=2)) == 2  # 4 threads on 2 cores: stage 1 1.6× slower, measured
    assert stage_threads(Recipe(threads=1, jobs=2)) == 2
    assert stage_threads(Recipe(threads=1, jobs=1)) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert stage_threads(Recipe(threads=4, jobs=2)) == 1


def test_a_part_trained_elsewhere_is_recorded_with_its_own_budget(tmp_path):
    """A decoder dropped into ``parts/`` (say, trained on a GPU) keeps its report's time, budget and machine."""
    from nextgpt.toyworld.build import _part_report

    budget = {"steps": 3000, "vae_steps": 600, "batch_size": 8, "seed": 0, "device": "cuda"}
    (tmp_path / "decoder.json").write_text(json.dumps(
        {"seconds": {"vae": 17.5, "unet": 373.0, "eval": 5.4}, "budget": budget, "trained_on": "one GPU"}))
    assert _part_report(tmp_path) == {"seconds": 390.5, "trained_outside_the_build": True, "report": "decoder.json",
                                      "budget": budget, "trained_on": "one GPU"}
    assert _part_report(tmp_path / "missing") == {"trained_outside_the_build": True}


def test_the_fast_recipe_gives_every_part_its_budget(tmp_path, monkeypatch):
    """``Recipe.fast()`` reaches the trainers: each part on its smaller budget (the video decoder on 4 clips a step),
    the stages as in the full recipe."""
    from nextgpt.toyworld import train_decoders, train_encoder, train_llm

    calls: dict[str, dict] = {}

    class Report:
        accuracy: dict = {}
        retrieval_at_1: dict = {}
        attribute_accuracy: dict = {}

        def to_dict(self) -> dict:
            return {}

    def fake(name):
        def train(*args, **kwargs):
            calls[name if name != "decoder" else f"decoder-{args[0]}"] = kwargs
            return Report()
        return train

    monkeypatch.setattr(train_encoder, "train_toy_encoder", fake("encoder"))
    monkeypatch.setattr(train_llm, "train_toy_llm", fake("llm"))
    monkeypatch.setattr(train_decoders, "train_toy_decoder", fake("decoder"))
    fast, full = Recipe.fast(seed=3), Recipe(seed=3)
    build = ToyWorldBuild(tmp_path, fast, log=lambda line: None)
    build.encoder()
    build.llm()
    build.decoders()
    assert calls["encoder"]["steps"] == 500 and "steps" not in calls["llm"]  # the LLM of the full recipe
    video = calls["decoder-video"]
    assert (video["steps"], video["vae_steps"], video["batch_size"], video["eval_count"]) == (60, 100, 4, 10)
    assert (calls["decoder-image"]["steps"], calls["decoder-audio"]["steps"]) == (800, 70)
    assert calls["decoder-audio"]["vae_steps"] == 60
    assert calls["decoder-image"]["batch_size"] is None and calls["decoder-image"]["vae_steps"] is None  # the SPECS'
    assert all(call["seed"] == 3 for call in calls.values())
    assert fast.stage_overrides == full.stage_overrides == {} and fast.data_size == full.data_size
    assert fast.eval_limit == 30 and full.eval_limit is None
    assert build.part_order()[0] == "llm" and ToyWorldBuild(tmp_path, full).part_order() == build.PARALLEL_STEPS


def test_the_worker_processes_take_the_parts_up_in_the_recipes_order(tmp_path, monkeypatch):
    """``Recipe.part_order`` is the order the pool is handed the parts (the LLM first in the fast recipe, so the
    other parts fill the second process beside it); an order that leaves a step out or repeats one is refused
    before any step runs."""
    import concurrent.futures

    from nextgpt.toyworld import build as build_module

    submitted: list[str] = []

    class Pool:
        def __init__(self, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, function, out, recipe, judges, name):
            submitted.append(name)
            future = concurrent.futures.Future()
            future.set_result(None)
            return future

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Pool)
    build = ToyWorldBuild(tmp_path, Recipe.fast(), log=lambda line: None)
    assert build._parts_in_parallel() == set(build.PARALLEL_STEPS)
    assert submitted == list(Recipe.fast().part_order) and submitted[0] == "llm"
    for order in (("llm", "encoder"), (*build_module.ToyWorldBuild.PARALLEL_STEPS, "llm")):
        bad = ToyWorldBuild(tmp_path / "bad", Recipe(jobs=2, part_order=order), log=lambda line: None)
        with pytest.raises(ValueError, match="part_order must list each of .* exactly once"):
            bad.run()
        assert not (tmp_path / "bad").exists()  # refused before the judges (the first step) wrote anything


def test_the_build_command_picks_the_budget(tmp_path, monkeypatch, capsys):
    from nextgpt.cli import main

    seen: list[Recipe] = []

    def run(self):
        seen.append(self.recipe)
        return self.out / "model"

    monkeypatch.setattr(ToyWorldBuild, "run", run)
    assert main(["toyworld", "build", "--out", str(tmp_path / "a"), "--budget", "fast", "--seed", "2"]) == 0
    assert main(["toyworld", "build", "--out", str(tmp_path / "b"), "--budget", "fast", "--eval-limit", "60"]) == 0
    assert main(["toyworld", "build", "--out", str(tmp_path / "c"), "--quick"]) == 0
    assert main(["toyworld", "build", "--out", str(tmp_path / "d")]) == 0
    fast, fast60, quick, full = seen
    assert fast.encoder_steps == Recipe.fast().encoder_steps and fast.seed == 2 and fast.eval_limit == 30
    assert fast60.eval_limit == 60
    assert quick.encoder_steps == Recipe.quick().encoder_steps
    assert full.encoder_steps is None and full.eval_limit is None
    capsys.readouterr()
    assert main(["toyworld", "build", "--out", str(tmp_path / "e"), "--quick", "--budget", "fast"]) == 2
    assert "--quick is --budget quick" in capsys.readouterr().err and not (tmp_path / "e").exists()
    assert len(seen) == 4
