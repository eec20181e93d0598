"""Each NExT-GPT stage, run with the shipped tiny recipe on synthetic data, halves its loss on the CPU; the
stages chain (stage 2 starts from stage 1's output, stage 3 from stage 2's) and the result loads and chats."""
from __future__ import annotations

import pytest
import torch

from nextgpt.training import Trainer, load_train_config, synthetic


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    torch.set_num_threads(1)
    base = synthetic.pretrained_tiny(root / "base")
    files = {1: synthetic.caption_pairs(root / "data"), 2: synthetic.generation_pairs(root / "data"),
             3: synthetic.instruction_dialogues(root / "data")}
    return root, base, files


def _run(stage: int, source, files, root, *extra: str) -> tuple[Trainer, object]:
    config = load_train_config(f"configs/tiny/stage{stage}.yaml", [
        f"model={{checkpoint: {source}}}", f"data.train=[{files[stage]}]", f"output_dir={root / f'stage{stage}'}",
        "progress_bar=false", "log_with=[]", *extra,
    ])
    trainer = Trainer(config)
    return trainer, trainer.train()


def _falls_by_half(trainer: Trainer) -> tuple[float, float]:
    losses = [h["train/total"] for h in trainer.history]
    first, last = losses[0], sum(losses[-3:]) / 3
    assert last <= 0.5 * first, f"loss {first:.4f} → {last:.4f} did not halve: {[round(x, 3) for x in losses]}"
    return first, last


def test_stages_halve_their_loss_and_chain(workdir):
    root, base, files = workdir
    trainer1, final1 = _run(1, base, files, root)
    _falls_by_half(trainer1)
    assert trainer1.trainable_count == sum(
        p.numel() for n, p in trainer1.pipe.model.named_parameters() if n.startswith("input_projectors."))

    trainer2, final2 = _run(2, final1, files, root, f"data.eval=[{files[2]}]", "eval_every=10")
    _falls_by_half(trainer2)
    evals = trainer2.eval_history  # every 10 steps (the end is step 20: not evaluated twice)
    assert [e["step"] for e in evals] == [10, 20]
    assert evals[-1]["eval/total"] < evals[0]["eval/total"]
    assert "train/signal/image" in trainer2.history[-1]
    # only the added rows of the embedding tables moved
    from nextgpt.pipeline import NextGPT
    before, after = NextGPT.from_pretrained(final1).model, NextGPT.from_pretrained(final2).model
    table_before = before.llm.get_input_embeddings().weight
    table_after = after.llm.get_input_embeddings().weight
    added = sorted(after.added_token_ids.values())
    others = torch.ones(table_after.shape[0], dtype=torch.bool)
    others[added] = False
    assert torch.equal(table_before[others], table_after[others])
    assert not torch.equal(table_before[added], table_after[added])

    trainer3, final3 = _run(3, final2, files, root)
    _falls_by_half(trainer3)
    assert {"train/signal/image", "train/signal/audio"} <= set(trainer3.history[0]) | set(trainer3.history[-1])
    pipe = NextGPT.from_pretrained(final3)
    assert pipe.config.lora is not None and pipe.config.lora.r == 4
    assert any("lora_" in name for name, _ in pipe.model.llm.named_parameters())
    response = pipe.chat("draw a red square", max_new_tokens=12, seed=0)
    assert isinstance(response.text, str)
