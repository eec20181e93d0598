"""Reliability of training runs: bit-exact resume, atomic checkpoints, NaN/Inf stop, all-at-once data errors,
and refusal to resume from folders the trainer did not write."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from nextgpt.training import NonFiniteLossError, Trainer, checkpoints, load_train_config, synthetic
from nextgpt.training.data import DatasetError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic.instruction_dialogues(tmp_path_factory.mktemp("resume-data"))


def _config(data, out, **overrides):
    """Stage 3 on the tiny preset: LoRA dropout (RNG), both projectors, mixed batches, epochs crossed."""
    sets = ["model={preset: tiny}", f"data.train=[{data}]", f"output_dir={out}", "progress_bar=false",
            "log_with=[]", "max_steps=10", "save_every=5", "keep_checkpoints=3", "optim.warmup_steps=3"]
    sets += [f"{k}={v}" for k, v in overrides.items()]
    return load_train_config("configs/tiny/stage3.yaml", sets)


class Crash(RuntimeError):
    pass


def _crash_at(step):
    def callback(trainer, current):
        if current == step:
            raise Crash(f"simulated crash after step {step}")
    return callback


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("accumulation", [1, 2])
def test_ten_steps_equal_five_crash_resume_five(data, tmp_path, accumulation):
    options = {"gradient_accumulation_steps": accumulation, "data.batch_size": 4 // accumulation}
    straight = Trainer(_config(data, tmp_path / "straight", **options)).train()
    with pytest.raises(Crash):
        Trainer(_config(data, tmp_path / "resumed", **options), callbacks=[_crash_at(5)]).train()
    assert checkpoints.latest_checkpoint(tmp_path / "resumed").name == "step-00000005"
    resumed_trainer = Trainer(_config(data, tmp_path / "resumed", **options))
    resumed = resumed_trainer.train(resume="auto")
    assert resumed_trainer.history[0]["step"] == 6
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"resumed run differs in {different[:5]}"


def test_crash_during_checkpoint_save_keeps_the_previous_one(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real, calls = checkpoints.write_marker, []

    def failing(folder, payload):
        calls.append(payload["step"])
        if payload["step"] == 10:
            raise OSError("disk full (simulated) while writing the checkpoint")
        real(folder, payload)

    monkeypatch.setattr(checkpoints, "write_marker", failing)
    with pytest.raises(OSError, match="disk full"):
        Trainer(_config(data, out)).train()
    latest = checkpoints.latest_checkpoint(out)
    assert latest.name == "step-00000005"
    assert checkpoints.read_marker(latest)["step"] == 5
    assert (out / "checkpoints" / ".step-00000010.tmp").exists()  # the broken one stays a temp folder
    monkeypatch.setattr(checkpoints, "write_marker", real)
    trainer = Trainer(_config(data, out))
    trainer.train(resume="auto")
    assert trainer.history[0]["step"] == 6 and trainer.step == 10


def test_injected_inf_stops_at_that_step_without_a_bad_checkpoint(data, tmp_path):
    def poison(trainer, step):
        if step == 3:
            with torch.no_grad():
                next(trainer.pipe.model.input_projectors.parameters()).fill_(float("inf"))

    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="at step 4"):
        Trainer(_config(data, out, save_every=1), callbacks=[poison]).train()
    latest = checkpoints.latest_checkpoint(out)
    assert latest.name == "step-00000003"
    assert not (out / "final").exists()


def test_bad_dataset_reports_every_bad_record_before_step_zero(tmp_path):
    good = synthetic.caption_pairs(tmp_path)
    lines = good.read_text().splitlines()
    bad = json.loads(lines[0])
    missing = json.loads(lines[1])
    missing["turns"][0]["inputs"][0]["path"] = "media/nowhere.png"
    unknown = json.loads(lines[2])
    unknown["turns"][0]["inputs"][0]["modality"] = "smell"
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text("\n".join([lines[0], "{not json", json.dumps(missing), json.dumps(unknown), lines[3]]) + "\n")
    config = _config(bad_file, tmp_path / "out", **{"data.train": f"[{bad_file}]"})
    with pytest.raises(DatasetError) as caught:
        Trainer(config).train()
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) >= 3, problems
    for line in (2, 3, 4):
        assert any(p.startswith(f"{bad_file}:{line}:") for p in problems), (line, problems)
    assert not (tmp_path / "out" / "checkpoints").exists()
    del bad


def test_resume_refuses_folders_it_did_not_write(data, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "optimizer.bin").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="not a nextgpt training checkpoint"):
        Trainer(_config(data, tmp_path / "out")).train(resume=str(foreign))


def test_checkpoints_hold_only_what_trains(data, tmp_path):
    """Frozen weights come back from the model's sources: a 7B checkpoint must not carry the whole LLM."""
    trainer = Trainer(_config(data, tmp_path / "run", max_steps=5, save_every=5))
    trainer.train()
    saved = load_file(str(checkpoints.latest_checkpoint(tmp_path / "run") / "model.safetensors"))
    module = trainer.accelerator.unwrap_model(trainer.module)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    assert frozen and trainable <= set(saved) and not (frozen & set(saved))
    assert any("lora_" in k for k in saved)
