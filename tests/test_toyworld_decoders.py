"""Toy-world decoders: a few dozen training steps lower the losses, the saved pipeline loads and generates."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nextgpt.decoders import build_decoder
from nextgpt.toyworld.render import render
from nextgpt.toyworld.train_decoders import (
    HARMONIC_VOCODER,
    evaluate_decoder,
    harmonic_frames,
    image_grid,
    set_harmonic_vocoder,
    train_toy_decoder,
)
from nextgpt.toyworld.world import Meaning, attribute_space

TINY = {"steps": 24, "vae_steps": 12, "batch_size": 8, "eval_count": 0}


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("image_decoder")
    return out, train_toy_decoder("image", out, seed=0, **TINY)


def test_losses_fall(image_run):
    _, report = image_run
    # VAE reconstruction MSE falls ≥ 2× in 12 steps; the UNet's ε-loss by ≥ 10 % in 24 steps (seeded: exact)
    assert report.vae_loss[-1] < report.vae_loss[0] / 2
    assert report.unet_loss[-1] < 0.9 * report.unet_loss[0]
    assert len(report.unet_loss) == 10 and all(np.isfinite(report.unet_loss))


def test_saved_pipeline_loads_and_generates(image_run):
    out, report = image_run
    assert (out / "model_index.json").is_file() and list(out.glob("unet/*.safetensors"))
    assert report.config.path == str(out.resolve()) and report.config.condition_dim == 32
    decoder = build_decoder("image", report.config)
    conditions = decoder.encode_text(["a small red circle on the left", "a big blue square at the top"])
    assert conditions.shape == (2, report.config.condition_tokens, 32)
    assert not np.allclose(conditions[0], conditions[1])  # the frozen random encoder tells captions apart
    media = decoder.generate(conditions, num_inference_steps=3, progress=False)
    assert [m.data.shape for m in media] == [(32, 32, 3)] * 2 and media[0].data.dtype == np.uint8
    saved = json.loads((out / "decoder.json").read_text(encoding="utf-8"))
    assert saved["budget"] == {"steps": 24, "vae_steps": 12, "batch_size": 8, "seed": 0, "device": "cpu"}


def test_same_seed_same_training(tmp_path):
    short = {**TINY, "steps": 3, "vae_steps": 2, "batch_size": 4}
    first = train_toy_decoder("image", tmp_path / "a", seed=0, **short)
    again = train_toy_decoder("image", tmp_path / "b", seed=0, **short)
    other = train_toy_decoder("image", tmp_path / "c", seed=1, **short)
    assert again.unet_loss == first.unet_loss and again.vae_loss == first.vae_loss
    assert other.vae_loss != first.vae_loss


def test_text_encoder_trains_only_when_asked(tmp_path):
    import torch

    short = {**TINY, "steps": 2, "vae_steps": 1, "batch_size": 2}
    frozen = train_toy_decoder("image", tmp_path / "a", train_text_encoder=False, **short)
    joint = train_toy_decoder("image", tmp_path / "b", **short)  # the recipe trains it jointly
    weights = [build_decoder("image", r.config).pipeline.text_encoder.get_input_embeddings().weight
               for r in (frozen, joint)]
    assert not torch.equal(*weights)


def test_video_decoder_shapes(tmp_path):
    report = train_toy_decoder("video", tmp_path, steps=2, vae_steps=1, batch_size=2, eval_count=0)
    media = build_decoder("video", report.config).generate(
        build_decoder("video", report.config).encode_text(["the red circle travels left"]), num_inference_steps=2,
        progress=False)
    assert media[0].data.shape == (8, 32, 32, 3) and media[0].rate == 8


@pytest.mark.parametrize("layout,width", [("linear", 72), ("log", 116)])
def test_harmonic_vocoder_inverts_harmonic_frames(layout, width):
    import torch

    from nextgpt.decoders.components import build_component
    from nextgpt.toyworld.train_decoders import harmonic_vocoder_config

    vocoder = build_component(harmonic_vocoder_config(layout=layout))
    set_harmonic_vocoder(vocoder, layout=layout)
    tone = render(Meaning.from_key("audio:middle-square-steady"))
    frames = harmonic_frames(tone, layout=layout)
    assert frames.shape == (20, width)
    with torch.no_grad():
        audio = vocoder(torch.from_numpy(frames)[None])[0].numpy()
    inner = slice(800, -800)  # the first and last half-hop have only one window
    # within 10 % of the signal level (the vocoder's final tanh compresses the peaks slightly)
    assert np.abs(audio - tone)[inner].mean() < 0.1 * np.abs(tone)[inner].mean()


@pytest.mark.parametrize("power", [0.0, 1.0])
def test_vocoder_without_dead_zone_inverts_weighted_frames_exactly(power):
    import torch

    from nextgpt.decoders.components import build_component
    from nextgpt.toyworld.train_decoders import harmonic_vocoder_config

    vocoder = build_component(harmonic_vocoder_config(dead_zone=0.0))
    set_harmonic_vocoder(vocoder, power=power, dead_zone=0.0)
    tone = render(Meaning.from_key("audio:high-sawtooth-steady"))
    with torch.no_grad():
        audio = vocoder(torch.from_numpy(harmonic_frames(tone, power))[None])[0].numpy()
    inner = slice(800, -800)
    assert np.abs(audio - tone)[inner].mean() < 0.1 * np.abs(tone)[inner].mean()


def test_dead_zone_silences_small_coefficients_and_keeps_the_tone():
    """The VAE's small errors on partials that should be silent are not played; the partials of a tone are."""
    import torch

    from nextgpt.decoders.components import build_component
    from nextgpt.toyworld.train_decoders import harmonic_vocoder_config

    vocoder = build_component(harmonic_vocoder_config(dead_zone=0.1))
    set_harmonic_vocoder(vocoder, power=1.0, dead_zone=0.1)
    noise = 0.09 * (2 * torch.rand(1, 20, 116, generator=torch.Generator().manual_seed(0)) - 1)  # |noise| < 0.1
    tone = render(Meaning.from_key("audio:low-sine-steady"))
    frames = torch.from_numpy(harmonic_frames(tone, 1.0))[None]
    with torch.no_grad():
        silent, played = vocoder(noise)[0].numpy(), vocoder(frames + noise)[0].numpy()
    assert np.abs(silent).max() == 0.0
    inner = slice(800, -800)
    # the tone's one coefficient (2.0 in frame units) loses the threshold (0.1) and carries up to ±0.09 of noise
    assert np.abs(played - tone)[inner].mean() < 0.12 * np.abs(tone)[inner].mean()
    with pytest.raises(ValueError, match="dead_zone=False"):
        set_harmonic_vocoder(vocoder, dead_zone=0.0)  # a threshold of 0 needs the plain layout


def test_the_default_vocoder_reads_the_default_layout():
    from nextgpt.toyworld.train_decoders import FRAME_LAYOUT, frame_layout

    assert HARMONIC_VOCODER["config"]["model_in_dim"] == frame_layout()[2] == harmonic_frames(
        render(Meaning.from_key("audio:low-sine-steady"))).shape[1]
    assert FRAME_LAYOUT == "log"


@pytest.mark.parametrize("timbre", ["sine", "square", "sawtooth"])
def test_log_frames_of_a_tone_an_octave_up_are_the_same_pattern_shifted(timbre):
    """What the log layout is for: pitch is a shift along the frame, so a convolution can draw a timbre at any pitch."""
    from nextgpt.toyworld.train_decoders import LOG_BINS_PER_OCTAVE, LOG_MARGIN, frame_layout

    _, columns, width = frame_layout("log")
    assert len(set(columns.tolist())) == len(columns) and width % 4 == 0  # one column per harmonic
    assert columns.min() == LOG_MARGIN and width - 1 - columns.max() >= LOG_MARGIN  # no partial in an edge column
    for low, high in (("low", "middle"), ("middle", "high")):
        lower = harmonic_frames(render(Meaning.from_key(f"audio:{low}-{timbre}-steady")), layout="log")
        upper = harmonic_frames(render(Meaning.from_key(f"audio:{high}-{timbre}-steady")), layout="log")
        shifted = np.zeros_like(lower)
        shifted[:, LOG_BINS_PER_OCTAVE:] = lower[:, :-LOG_BINS_PER_OCTAVE]
        played = np.abs(upper) > 0.05 * np.abs(upper).max()
        # the partials an octave up sit exactly where the lower tone's partials land, shifted by one octave
        assert played.any() and np.array_equal(played, played & (np.abs(shifted) > 0.05 * np.abs(shifted).max()))
        # and the tone has its partials there, not elsewhere: the linear layout does not shift this way
        linear_low = harmonic_frames(render(Meaning.from_key(f"audio:{low}-{timbre}-steady")), layout="linear")
        linear_high = harmonic_frames(render(Meaning.from_key(f"audio:{high}-{timbre}-steady")), layout="linear")
        if timbre != "sine":
            assert not any(np.allclose(np.roll(linear_low, s, axis=1), linear_high, atol=0.05) for s in range(1, 72))


@pytest.mark.parametrize("fixed", [True, False])
def test_training_beeps_start_on_when_the_beep_phase_is_fixed(monkeypatch, fixed):
    """Every training draw of a beeping tone beeps at the same times (only loudness varies) with the fixed phase, at
    times of its own without; the draws of the other attributes stay the same either way."""
    from nextgpt.toyworld import train_decoders

    monkeypatch.setattr(train_decoders, "FIXED_BEEP_PHASE", fixed)
    beeping = Meaning.from_key("audio:low-square-beeping")
    rng = np.random.default_rng(0)
    draws = [train_decoders._exact_pitch_audio(beeping, rng) for _ in range(6)]
    envelopes = [np.abs(d).reshape(-1, 100).max(axis=1) > 0 for d in draws]  # on/off per 6.25 ms
    assert all(e[0] for e in envelopes)  # on at 0 s (a random start only shortens the first beep)
    assert all(np.array_equal(e, envelopes[0]) for e in envelopes) == fixed
    assert 0.3 < np.mean(envelopes[0]) < 0.7  # still beeping: on about half the time
    after = rng.uniform()  # the stream is where it would be with the other setting
    monkeypatch.setattr(train_decoders, "FIXED_BEEP_PHASE", not fixed)
    rng = np.random.default_rng(0)
    [train_decoders._exact_pitch_audio(beeping, rng) for _ in range(6)]
    assert rng.uniform() == after


def test_a_frame_layout_that_does_not_fit_is_refused():
    from nextgpt.decoders.components import build_component
    from nextgpt.toyworld.train_decoders import frame_layout, harmonic_vocoder_config

    with pytest.raises(ValueError, match="unknown frame layout 'mel'.*linear"):
        frame_layout("mel")
    vocoder = build_component(harmonic_vocoder_config(layout="linear"))
    with pytest.raises(ValueError, match="reads frames 72 wide, the 'log' layout writes 116"):
        set_harmonic_vocoder(vocoder, layout="log")


def test_audio_decoder_shapes(tmp_path):
    report = train_toy_decoder("audio", tmp_path, steps=2, vae_steps=1, batch_size=2, eval_count=0)
    assert report.config.condition_tokens == 1
    decoder = build_decoder("audio", report.config)
    media = decoder.generate(decoder.encode_text(["a low sine tone, steady"]), num_inference_steps=2, progress=False)
    assert media[0].data.shape == (16000,) and media[0].rate == 16000


class _EveryoneSaysRed:
    def predict(self, modality, items, rates=None):
        return [{name: ("red" if name == "colour" else values[0]) for name, values in
                 attribute_space(modality).items()} for _ in items]


def test_evaluation_scores_with_the_judges(image_run):
    _, report = image_run
    accuracy, media, meanings = evaluate_decoder(build_decoder("image", report.config), "image", _EveryoneSaysRed(),
                                                 count=4, num_inference_steps=2)
    expected = np.mean([m["colour"] == "red" for m in meanings])
    assert accuracy["colour"] == expected and set(accuracy) == {*attribute_space("image"), "all"}
    assert image_grid(media, columns=2).shape == (64, 64, 3)


def test_unsupported_modality_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no toy decoder recipe for 'text'"):
        train_toy_decoder("text", tmp_path)


def test_unusable_device_is_a_clear_error_before_anything_is_written(tmp_path, capsys):
    from nextgpt.cli import main

    with pytest.raises(ValueError, match="device 'nowhere' is not usable here"):
        train_toy_decoder("image", tmp_path / "a", device="nowhere")
    assert main(["toyworld-train-decoder", "image", "--out", str(tmp_path / "b"), "--device", "nowhere"]) == 2
    assert "device 'nowhere' is not usable" in capsys.readouterr().out
    assert main(["toyworld", "build", "--out", str(tmp_path / "c"), "--quick", "--decoder-device", "nowhere"]) == 2
    assert "--decoder-device: device 'nowhere'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_schedule_reaches_zero_signal(image_run):
    """The recipe's scheduler ends at pure noise (no trace of the shape left at t = T) and generation starts there."""
    _, report = image_run
    scheduler = build_decoder("image", report.config).pipeline.scheduler
    assert scheduler.config.rescale_betas_zero_snr and scheduler.config.timestep_spacing == "trailing"
    assert float(scheduler.alphas_cumprod[-1]) == 0.0
    scheduler.set_timesteps(20)
    assert int(scheduler.timesteps[0]) == scheduler.config.num_train_timesteps - 1


def _position_spread(report) -> float:
    """How far apart the conditions of five captions that differ only in position are (mean squared deviation)."""
    decoder = build_decoder("image", report.config)
    places = ["on the left", "on the right", "at the top", "at the bottom", "in the centre"]
    conditions = decoder.encode_text([f"a large red circle {place}" for place in places])
    return float(((conditions - conditions.mean(0)) ** 2).mean())


def test_attribute_heads_make_position_words_heard(tmp_path):
    short = {**TINY, "steps": 30, "vae_steps": 2}
    without = train_toy_decoder("image", tmp_path / "a", attribute_weight=0.0, **short)
    with_heads = train_toy_decoder("image", tmp_path / "b", **short)  # the recipe's weight
    assert with_heads.recipe["attribute_weight"] > 0
    assert _position_spread(with_heads) > 3 * _position_spread(without)


def test_attribute_loss_skips_empty_captions():
    import torch

    from nextgpt.toyworld.train_decoders import _attribute_heads, _attribute_loss

    class Stub:  # what _attribute_heads asks of a decoder: conditions of a given width
        def _encode_prompts(self, captions):
            return torch.zeros(len(captions), 3, 16)

        def prepare_conditions(self, conditions):
            return conditions

    assert len(_attribute_heads("image", Stub(), 0.0)) == 0
    heads = _attribute_heads("image", Stub(), 1.0)
    assert set(heads) == set(attribute_space("image"))
    batch = [Meaning.of("image", {"shape": "circle", "colour": "red", "size": "small", "position": "left"})] * 2
    conditions = torch.randn(2, 3, 16)
    assert _attribute_loss(heads, conditions, batch, ["", ""]) is None
    one = _attribute_loss(heads, conditions, batch, ["a small red circle on the left", ""])
    only = _attribute_loss(heads, conditions[:1], batch[:1], ["a small red circle on the left"])
    assert torch.isfinite(one) and torch.allclose(one, only)  # the empty caption adds nothing


def test_a_decoder_made_for_another_frame_layout_is_refused(tmp_path, monkeypatch):
    """A decoder trained on linear frames (as the ones shipped before the log layout were): measuring or reusing it
    in the log layout would feed its VAE frames it never saw, so both are refused, naming the layout to set."""
    from nextgpt.toyworld import train_decoders
    from nextgpt.toyworld.train_decoders import vae_round_trip_accuracy

    monkeypatch.setattr(train_decoders, "FRAME_LAYOUT", "linear")
    linear = train_toy_decoder("audio", tmp_path / "linear", steps=1, vae_steps=1, batch_size=2, eval_count=0)
    assert linear.recipe["frame_layout"] == "linear"  # recorded in decoder.json
    assert linear.recipe["fixed_beep_phase"] is True
    pipeline = build_decoder("audio", linear.config).pipeline
    assert pipeline.vocoder.config.model_in_dim == 72
    monkeypatch.setattr(train_decoders, "FRAME_LAYOUT", "log")
    with pytest.raises(ValueError, match=r"72 wide \(the 'linear' layout\).*'log' layout, 116 wide.*FRAME_LAYOUT"):
        vae_round_trip_accuracy(pipeline, "audio", _EveryoneSaysRed(), count=2)
    with pytest.raises(ValueError, match=r"the decoder in .*72 wide"):
        train_toy_decoder("audio", tmp_path / "again", steps=1, batch_size=2, eval_count=0,
                          vae_from=tmp_path / "linear")
    monkeypatch.setattr(train_decoders, "FRAME_LAYOUT", "linear")
    accuracy = vae_round_trip_accuracy(pipeline, "audio", _EveryoneSaysRed(), count=2)  # its own layout: measured
    assert set(accuracy) == {*attribute_space("audio"), "all"}
