"""Loss definitions: the stage-2 distance is a mean per-token L2 norm (not MSE), min-SNR weights, the warmup/decay
schedule, and the optional denoising loss through the frozen tiny Stable Diffusion UNet."""
from __future__ import annotations

import json
import math

import pytest
import torch

from nextgpt.training import Trainer, load_train_config, synthetic
from nextgpt.training.config import OptimConfig
from nextgpt.training.losses import min_snr_weights, signal_distance
from nextgpt.training.optim import build_optimizer, lr_factor, param_groups


def test_signal_distance_is_the_mean_per_token_euclidean_norm():
    conditions = torch.zeros(2, 3, 4)
    targets = torch.zeros(2, 3, 4)
    targets[0, 0] = torch.tensor([3.0, 4.0, 0.0, 0.0])  # one token at distance 5
    assert signal_distance(conditions, targets).item() == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(2, 1, 4\)"):
        signal_distance(conditions, targets[:, :1])


def test_min_snr_weights():
    alphas = torch.tensor([0.99, 0.5, 0.01])
    weights = min_snr_weights(alphas, torch.tensor([0, 1, 2]), gamma=5.0)
    snr = alphas / (1 - alphas)
    assert torch.allclose(weights, torch.clamp(snr, max=5.0) / snr)
    assert torch.equal(min_snr_weights(alphas, torch.tensor([0, 1]), gamma=None), torch.ones(2))


def test_warmup_then_cosine_decay():
    config = OptimConfig(warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    factors = [lr_factor(step, 10, config) for step in range(10)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2] == pytest.approx(1.0) and all(a >= b for a, b in zip(factors[2:], factors[3:]))
    assert lr_factor(10, 10, config) == pytest.approx(0.1)
    assert lr_factor(6, 10, OptimConfig(warmup_steps=2, schedule="linear")) == pytest.approx(0.5)
    assert not math.isnan(lr_factor(0, 1, OptimConfig()))


def _named(**shapes: int) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name.replace("__", "."), torch.nn.Parameter(torch.zeros(n))) for name, n in shapes.items()]


def test_lr_scale_puts_matching_parameters_in_their_own_group_first_pattern_winning():
    named = _named(input_projectors__image=2, input_projectors__audio=3, output_projectors__image=4, lora__a=5)
    groups = param_groups(named, 0.01, 1e-3, {"input_projectors.audio": 0.5, "input_projectors.*": 0.1})
    by_lr = sorted((round(group["lr"], 9), sorted(p.numel() for p in group["params"])) for group in groups)
    assert by_lr == [(1e-4, [2]), (5e-4, [3]), (1e-3, [4, 5])]
    assert all(group["weight_decay"] == 0.01 for group in groups)
    assert len(param_groups(named, 0.01, 1e-3)) == 1  # no lr_scale: one group at the base lr


def test_lr_scale_keeps_masked_embedding_rows_out_of_weight_decay_and_refuses_patterns_that_match_nothing():
    named = _named(llm__embed=4, input_projectors__image=2)
    named[0][1]._nextgpt_row_mask = True
    groups = param_groups(named, 0.01, 1e-3, {"llm.*": 2.0})
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(1e-3, 0.01), (2e-3, 0.0)]  # decayed group first
    named.append(("output_projectors.frozen", torch.nn.Parameter(torch.zeros(1), requires_grad=False)))
    with pytest.raises(ValueError, match=r"'output_projectors\.\*'.*match no trained parameter.*input_projectors"):
        param_groups(named, 0.01, 1e-3, {"output_projectors.*": 0.1})  # matches only a frozen parameter
    with pytest.raises(ValueError, match="must be > 0.*trainable"):
        OptimConfig(lr_scale={"input_projectors.*": 0.0})


def test_lr_scale_trains_the_matching_parameters_at_the_scaled_rate_through_the_trainer(tmp_path):
    """The trainer's optimizer holds the input projectors at lr × 0.01 and the rest at lr, and an optimizer step
    moves them accordingly (Adam's update is about lr per weight whatever the gradient's size)."""
    torch.set_num_threads(1)
    data = synthetic.instruction_dialogues(tmp_path / "data", repeat=1)
    config = load_train_config("configs/tiny/stage3.yaml", [
        "model={preset: tiny}", f"data.train=[{data}]", f"output_dir={tmp_path / 'run'}", "max_steps=2",
        "progress_bar=false", "log_with=[]", "optim.warmup_steps=0", "optim.weight_decay=0", "optim.grad_clip=null",
        "optim.schedule=constant", "data.batch_size=8", 'optim.lr_scale={"input_projectors.*": 0.01}'])
    snapshots: list[dict[str, torch.Tensor]] = []
    lrs: dict[str, float] = {}

    def record(trainer: Trainer, step: int) -> None:
        named = [(n, p) for n, p in trainer.pipe.model.named_parameters() if p.requires_grad]
        snapshots.append({n: p.detach().clone() for n, p in named if "projectors." in n})
        group_of = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
        lrs.update({n: group_of[id(p)] for n, p in named})

    trainer = Trainer(config, callbacks=[record])
    trainer.train()
    base = config.optim.lr
    assert {round(lr / base, 6) for n, lr in lrs.items() if n.startswith("input_projectors.")} == {0.01}
    assert {round(lr / base, 6) for n, lr in lrs.items() if not n.startswith("input_projectors.")} == {1.0}
    assert [h["train/lr"] for h in trainer.history] == [pytest.approx(base)] * 2
    moved = {"input": [], "output": []}
    for name, after in snapshots[1].items():
        change = (after - snapshots[0][name]).abs()
        moved[name.split("_")[0]].append(change[change > 0])
    ratio = torch.cat(moved["input"]).median() / torch.cat(moved["output"]).median()
    assert 0.003 < ratio < 0.03, ratio  # 1 without lr_scale


def test_denoising_loss_trains_through_the_frozen_unet(tmp_path):
    torch.set_num_threads(1)
    images = synthetic.write_images(tmp_path / "media")
    lines = [{"turns": [{"role": "user", "text": f"draw {caption}"},
                        {"role": "assistant", "text": "<output:image>",
                         "outputs": [{"modality": "image", "caption": caption, "path": path}]}]}
             for caption, path in images.items()]
    data = tmp_path / "gen.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = load_train_config("configs/tiny/stage2.yaml", [
        "model={preset: tiny}", f"data.train=[{data}]", f"output_dir={tmp_path / 'run'}", "max_steps=4",
        "progress_bar=false", "log_with=[]", "loss.denoise.enabled=true", "loss.lm_weight=0",
        "loss.signal_weight=0", "optim.warmup_steps=0"])
    trainer = Trainer(config)
    trainer.train()
    history = trainer.history
    assert all("train/denoise/image" in h for h in history)
    assert all(math.isfinite(h["train/denoise/image"]) for h in history)
    unet = trainer.pipe.decoders["image"].pipeline.unet
    assert not any(p.requires_grad for p in unet.parameters())  # the decoder stays frozen
    # only the denoising loss was on: the output projector moved, so the gradient went through the UNet
    from nextgpt.pipeline import NextGPT

    fresh = NextGPT.from_preset("tiny").model.output_projectors["image"].state_dict()
    trained = trainer.pipe.model.output_projectors["image"].state_dict()
    assert any(not torch.equal(fresh[k], trained[k]) for k in fresh)


def test_token_loss_is_the_cross_entropy_of_each_trained_token_at_the_given_positions():
    from nextgpt.training.module import _token_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 10)
    input_ids = torch.randint(0, 10, (2, 6))
    labels = input_ids.clone()
    labels[1, :4] = -100  # row 1's first signal sequence sits in an untrained (history) turn
    rows, starts = torch.tensor([0, 1, 1]), torch.tensor([3, 2, 5])
    expected = torch.nn.functional.cross_entropy(logits[[0, 1], [2, 4]], input_ids[[0, 1], [3, 5]])
    assert torch.allclose(_token_loss(logits, input_ids, labels, rows, starts), expected)
    # made certain of the right token at those two positions, the loss vanishes
    logits[0, 2, input_ids[0, 3]] = logits[1, 4, input_ids[1, 5]] = 1e4
    assert float(_token_loss(logits, input_ids, labels, rows, starts)) < 1e-6
    assert _token_loss(logits, input_ids, labels, rows[1:2], starts[1:2]) is None  # only an untrained one
    assert _token_loss(logits, input_ids, labels, rows[:0], starts[:0]) is None  # no output in the batch
    # the token after an output that ends its row (no next token) or one at position 0 is left out, not an error
    assert _token_loss(logits, input_ids, labels, torch.tensor([0, 0]), torch.tensor([6, 0])) is None
    assert torch.allclose(_token_loss(logits, input_ids, labels, torch.tensor([0, 0]), torch.tensor([3, 6])),
                          torch.nn.functional.cross_entropy(logits[[0], [2]], input_ids[[0], [3]]))


@pytest.mark.parametrize(("loss", "weight"), [("route", 2.5), ("after_output", 1.5), ("answer_start", 0.5)])
def test_token_loss_weights_add_the_weighted_loss_to_the_total(tmp_path, loss, weight):
    """``loss.<name>_weight`` of each single-token loss: logged as ``train/<name>``, added to the total."""
    torch.set_num_threads(1)
    data = synthetic.instruction_dialogues(tmp_path / "data", repeat=1)
    config = load_train_config("configs/tiny/stage3.yaml", [
        "model={preset: tiny}", f"data.train=[{data}]", f"output_dir={tmp_path / 'run'}", "max_steps=3",
        "log_every=1", "progress_bar=false", "log_with=[]", f"loss.{loss}_weight={weight}", "optim.warmup_steps=0"])
    trainer = Trainer(config)
    trainer.train()
    logged = [h for h in trainer.history if f"train/{loss}" in h]
    assert logged, "no step had a trained output (followed by a token), the test data changed"
    for h in logged:
        signal = sum(value * (2.0 if key.endswith("/video") else 1.0)  # the tiny recipe scales video ×2
                     for key, value in h.items() if key.startswith("train/signal/"))
        weighted = sum(getattr(config.loss, f"{name}_weight") * h.get(f"train/{name}", 0.0)
                       for name in ("route", "after_output", "answer_start"))
        assert getattr(config.loss, f"{loss}_weight") == weight
        assert h["train/total"] == pytest.approx(h["train/lm"] + weighted + signal, rel=1e-4)
        assert h[f"train/{loss}"] > 0


def test_after_output_loss_reads_the_token_right_after_each_signal_sequence():
    from nextgpt.pipeline import NextGPT
    from nextgpt.training.module import TrainingModule

    torch.manual_seed(0)
    model = NextGPT.from_preset("tiny").model
    image, audio = model.signal_token_ids["image"], model.signal_token_ids["audio"]
    text = [5, 6, 7]
    ids = torch.tensor([text + image + [8, 9] + audio + [10]])  # image at 3, audio at 5 + len(image)
    labels = ids.clone()
    starts = torch.tensor([3, 5 + len(image)])
    rows = torch.zeros(2, dtype=torch.long)
    module = TrainingModule(model)
    with torch.no_grad():
        out = model(ids, attention_mask=torch.ones_like(ids), labels=labels)
        after = [3 + len(image), 5 + len(image) + len(audio)]  # the tokens 8 and 10
        expected = torch.nn.functional.cross_entropy(out.logits[0, [p - 1 for p in after]].float(), ids[0, after])
        zeros = {m: torch.zeros(1, len(model.signal_token_ids[m]), out.hidden_states[-1].shape[-1])
                 for m in ("image", "audio")}
        targets = {m: model.signal_conditions(m, z, z) for m, z in zeros.items()}  # any target of the right shape
        losses = module(ids, torch.ones_like(ids), labels, None, [], rows, starts, ["image", "audio"], targets)
    assert torch.allclose(losses["after_output"], expected, atol=1e-5)


def test_answer_start_loss_reads_the_first_token_of_each_trained_span():
    from nextgpt.pipeline import NextGPT
    from nextgpt.training.module import TrainingModule, answer_start_positions

    torch.manual_seed(0)
    model = NextGPT.from_preset("tiny").model
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 17, 18, 19, 20]])
    labels = torch.full_like(ids, -100)
    labels[0, 2:4] = ids[0, 2:4]  # answers at 2-3 and 6-7 of row 0
    labels[0, 6:] = ids[0, 6:]
    labels[1, 0:3] = ids[1, 0:3]  # a span at the row's start has no token before it: left out of the loss
    labels[1, 5] = ids[1, 5]
    rows, positions = answer_start_positions(labels)
    assert list(zip(rows.tolist(), positions.tolist())) == [(0, 2), (0, 6), (1, 0), (1, 5)]
    module = TrainingModule(model)
    none = torch.zeros(0, dtype=torch.long)
    with torch.no_grad():
        out = model(ids, attention_mask=torch.ones_like(ids), labels=labels)
        picked = [(0, 2), (0, 6), (1, 5)]
        expected = torch.nn.functional.cross_entropy(
            torch.stack([out.logits[r, p - 1] for r, p in picked]).float(), torch.stack([ids[r, p] for r, p in picked]))
        losses = module(ids, torch.ones_like(ids), labels, None, [], none, none, [], {})
    assert torch.allclose(losses["answer_start"], expected, atol=1e-5)
