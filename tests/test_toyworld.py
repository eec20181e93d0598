"""The toy world: meanings and the cross-modal rule, captions and their parser, the held-out split, renderings."""
from __future__ import annotations

import numpy as np
import pytest

from nextgpt.toyworld.language import TEMPLATES, caption, parse_caption, parse_meaning
from nextgpt.toyworld.render import PITCH_HZ, SAMPLE_RATE, render
from nextgpt.toyworld.split import HELD_OUT_FRACTION, make_split, one_attribute_apart
from nextgpt.toyworld.world import (
    ATTRIBUTES,
    MODALITIES,
    Meaning,
    all_meanings,
    attribute_space,
    conversion_pairs,
    convert,
    linked_attributes,
    sample,
)


# ---- world -----------------------------------------------------------------------------------------------
def test_meanings_validate_and_round_trip():
    meaning = Meaning.of("image", {"shape": "circle", "colour": "red", "size": "small", "position": "left"})
    assert Meaning.from_key(meaning.key) == meaning and meaning["colour"] == "red"
    with pytest.raises(ValueError, match="unknown image colour 'pink'; allowed"):
        Meaning("image", ("circle", "pink", "small", "left"))
    with pytest.raises(ValueError, match="missing \\['position'\\]"):
        Meaning.of("image", {"shape": "circle", "colour": "red", "size": "small"})
    with pytest.raises(KeyError, match="available"):
        attribute_space("smell")


def test_rule_gives_one_answer_and_round_trips():
    picture = Meaning.of("image", {"shape": "triangle", "colour": "blue", "size": "small", "position": "top"})
    sound = convert(picture, "audio")
    assert sound == Meaning.of("audio", {"pitch": "high", "timbre": "sawtooth", "rhythm": "beeping"})
    back = convert(sound, "image")  # position is not linked to audio: the image default (centre)
    assert back.attributes == {**picture.attributes, "position": "centre"}
    assert convert(picture, "video").attributes == {"shape": "triangle", "colour": "blue", "direction": "up"}
    yellow = Meaning.of("image", {"shape": "circle", "colour": "yellow", "size": "small", "position": "top"})
    assert convert(yellow, "audio") is None  # yellow has no pitch
    assert set(linked_attributes("video", "audio")) == {"pitch", "timbre"}
    assert set(conversion_pairs()) == {(a, b) for a in MODALITIES for b in MODALITIES if a != b}


@pytest.mark.parametrize("source, target", sorted(conversion_pairs()))
def test_every_linked_attribute_is_judged_by_the_rule(source, target):
    converted = [convert(m, target) for m in all_meanings(source)]
    assert any(converted)
    for meaning in all_meanings(target):  # target → source → target keeps the linked attributes
        there = convert(meaning, source)
        if there is not None and convert(there, target) is not None:
            again = convert(there, target)
            assert all(again[a] == meaning[a] for a in linked_attributes(source, target))


def test_sampling_is_deterministic():
    meanings = all_meanings("audio")
    assert sample(meanings, 5, np.random.default_rng(3)) == sample(meanings, 5, np.random.default_rng(3))
    with pytest.raises(ValueError, match="empty"):
        sample([], 1, np.random.default_rng(0))


# ---- language --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("modality", MODALITIES)
def test_parser_reads_every_phrasing_and_word_choice(modality):
    rng = np.random.default_rng(0)
    for meaning in all_meanings(modality):
        texts = {caption(meaning, p, rng) for p in range(len(TEMPLATES[modality])) for _ in range(3)}
        assert len({caption(meaning, p) for p in range(len(TEMPLATES[modality]))}) == len(TEMPLATES[modality])
        for text in texts:
            assert parse_meaning(text, modality) == meaning, text


def test_parser_leaves_out_ambiguous_and_missing_attributes():
    assert parse_caption("a red or blue circle", "image") == {"shape": "circle"}
    assert parse_meaning("a red circle", "image") is None
    assert parse_caption("A Plus Sign, Violet!", "image") == {"shape": "cross", "colour": "purple"}
    with pytest.raises(IndexError, match="phrasings 0..4"):
        caption(all_meanings("video")[0], 9)


# ---- split -----------------------------------------------------------------------------------------------
def test_split_is_fixed_documented_and_keeps_every_value_in_training():
    split, again = make_split(), make_split()
    assert split.to_dict() == again.to_dict()
    for modality in MODALITIES:
        total = len(all_meanings(modality))
        held = split.meanings(modality, "eval")
        assert len(held) == max(1, round(HELD_OUT_FRACTION * total))
        train = split.meanings(modality, "train")
        assert len(train) + len(held) == total and not {m.key for m in train} & {m.key for m in held}
        for name, values in ATTRIBUTES[modality].items():
            assert {m[name] for m in train} == set(values)
        # every combination one attribute away from a held-out one is trained on (no confound like "low ⇒ steady")
        for meaning in held:
            neighbours = [m for m in all_meanings(modality) if one_attribute_apart(meaning, m)]
            assert neighbours and not any(split.is_held_out(m) for m in neighbours), meaning.key
        assert TEMPLATES[modality] and len(TEMPLATES[modality]) - 1 not in split.phrasings(modality, "train")
    with pytest.raises(ValueError, match="fraction"):
        make_split(0.9)
    with pytest.raises(ValueError, match="none one attribute from another"):
        make_split(0.3)  # more images than any draw can keep apart


# ---- renderings ------------------------------------------------------------------------------------------
def _centroid(frame: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(frame.sum(-1))
    return np.array([xs.mean(), ys.mean()])


def test_images_show_colour_size_position_and_distinct_shapes():
    base = {"colour": "red", "size": "large", "position": "left"}
    images = {s: render(Meaning.of("image", {**base, "shape": s})) for s in ATTRIBUTES["image"]["shape"]}
    assert all(im.shape == (32, 32, 3) and im.dtype == np.uint8 for im in images.values())
    masks = [im.sum(-1) > 0 for im in images.values()]
    assert all((a != b).sum() > 10 for i, a in enumerate(masks) for b in masks[i + 1:])  # shapes differ
    x, y = _centroid(images["square"]).astype(int)
    pixel = images["square"][y, x]
    assert pixel[0] > 150 and pixel[1] < 100  # red
    assert _centroid(images["circle"])[0] < 14  # left of the centre (16)
    small = render(Meaning.of("image", {**base, "shape": "circle", "size": "small"}))
    assert (small.sum(-1) > 0).sum() < 0.5 * (images["circle"].sum(-1) > 0).sum()


@pytest.mark.parametrize("pitch", ["low", "middle", "high"])
@pytest.mark.parametrize("timbre", ["sine", "square", "sawtooth"])
def test_audio_pitch_by_fft_and_timbre_by_harmonics(pitch, timbre):
    audio = render(Meaning("audio", (pitch, timbre, "steady")), np.random.default_rng(1))
    assert audio.shape == (SAMPLE_RATE,) and audio.dtype == np.float32 and np.abs(audio).max() <= 1.0
    spectrum = np.abs(np.fft.rfft(audio))
    fundamental = spectrum.argmax()  # 1 Hz per bin
    assert abs(fundamental - PITCH_HZ[pitch]) <= 0.035 * PITCH_HZ[pitch]
    second, third = (spectrum[k * fundamental - 5:k * fundamental + 6].max() / spectrum[fundamental] for k in (2, 3))
    assert (second > 0.3) == (timbre == "sawtooth")  # only the sawtooth has even harmonics
    assert (third > 0.2) == (timbre != "sine")


def test_beep_fades_ramp_the_switches_and_change_nothing_else():
    from nextgpt.toyworld.render import BEEP_SECONDS, render_audio

    beeping = Meaning.from_key("audio:middle-square-beeping")
    hard = render_audio(beeping, np.random.default_rng(3))
    assert np.array_equal(hard, render_audio(beeping, np.random.default_rng(3), fade_seconds=0.0))
    assert np.array_equal(hard, render(beeping, np.random.default_rng(3)))  # the world's renderings switch at once
    faded = render_audio(beeping, np.random.default_rng(3), fade_seconds=0.01)
    steady = render_audio(Meaning.from_key("audio:middle-square-steady"), np.random.default_rng(3))
    changed = np.abs(faded - hard) > 1e-6
    assert 0.03 < changed.mean() < 0.1  # only around the ≈ 8 switches, 10 ms each
    assert np.all(np.abs(faded) <= np.abs(steady) + 1e-6)  # a fade only scales the tone down, never adds to it
    assert np.array_equal(steady, render_audio(Meaning.from_key("audio:middle-square-steady"),
                                               np.random.default_rng(3), fade_seconds=0.01))
    for bad in (-0.001, BEEP_SECONDS):
        with pytest.raises(ValueError, match="fade_seconds must be in"):
            render_audio(beeping, fade_seconds=bad)


def test_audio_rhythm_beeps_and_video_moves_in_its_direction():
    beeping = render(Meaning("audio", ("middle", "sine", "beeping")))
    frames = np.abs(beeping).reshape(40, -1).max(1)
    assert (frames < 0.01).sum() >= 12 and (frames > 0.3).sum() >= 12
    for direction, axis, sign in [("left", 0, -1), ("right", 0, 1), ("up", 1, -1), ("down", 1, 1)]:
        video = render(Meaning("video", ("cross", "green", direction)), np.random.default_rng(2))
        assert video.shape == (8, 32, 32, 3)
        moved = _centroid(video[-1]) - _centroid(video[0])
        assert sign * moved[axis] > 10 and abs(moved[1 - axis]) < 1
