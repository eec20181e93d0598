"""Two CPU processes through Accelerate's own launcher: the feature cache is built in shards by both, training
runs data-parallel (gloo), and the output of ``nextgpt train`` loads with ``NextGPT.from_pretrained`` and chats.

Note: ``accelerate launch --cpu --num_processes 2`` starts ONE process in Accelerate 1.x (its simple launcher
only fans out through mpirun); ``--multi_gpu`` with ``ACCELERATE_USE_CPU=1`` uses torchrun and gives two CPU
processes (``DistributedType.MULTI_CPU``).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nextgpt.training import synthetic
from nextgpt.training.cache import read_manifest


def _launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "nextgpt", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_process_cpu_run_caches_trains_saves_and_chats(tmp_path):
    data = synthetic.instruction_dialogues(tmp_path / "data")
    common = ["--config", "configs/tiny/stage3.yaml", "--set", "model={preset: tiny}", "--set",
              f"data.train=[{data}]", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    _launch("data", "cache", *common)
    manifest = read_manifest(tmp_path / "cache")
    assert len(manifest["shards"]) == 2  # one per process

    result = _launch("train", *common, "--set", f"output_dir={tmp_path / 'run'}", "--set", "max_steps=4",
                     "--set", "save_every=2", "--set", "progress_bar=false")
    assert "2 process(es)" in result.stderr
    assert f"saved {tmp_path / 'run' / 'final'}" in result.stdout

    from nextgpt.pipeline import NextGPT

    pipe = NextGPT.from_pretrained(tmp_path / "run" / "final")
    response = pipe.chat("draw a red square", max_new_tokens=8, seed=0, force={"image"})
    assert [m.modality for m in response.media] == ["image"]
