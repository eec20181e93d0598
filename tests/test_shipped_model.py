"""The toy-world model the package ships (nextgpt/assets/toyworld): it loads, it is small, it is the default of the
CLI, and on a handful of held-out requests it does what its eval report says it does.

The thresholds are what the shipped model measurably reaches (docs/toyworld.md, eval_toyworld.json) with a
margin, per attribute where the all-attributes accuracy is low — so a regression in any link of the chain
(encoder → projector → LLM → signal tokens → output projector → decoder) fails here.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from nextgpt import GenerationOptions, Message, NextGPT
from nextgpt.toyworld.build import shipped_judges, shipped_model
from nextgpt.toyworld.language import caption, parse_caption
from nextgpt.toyworld.prompts import INSTRUCTIONS, NOUN
from nextgpt.toyworld.render import SAMPLE_RATE, VIDEO_FPS, render
from nextgpt.toyworld.split import make_split

OUTPUTS = {"image", "audio", "video"}

# Measured on the shipped model (4 held-out meanings each, greedy, seed 0): routing image, audio and video 4/4.
# Generation (of the routed ones) image shape 0.75, colour, size and position 1.00; audio rhythm 1.00, timbre 0.50,
# pitch 0.00; video colour 0.50, shape 0.25, direction 0.00. Description image shape 0.75, colour, size and position
# 1.00; audio pitch 0.75, timbre 1.00 (rhythm 0.25: the encoder reads held-out rhythm from the pitch,
# docs/toyworld.md); video colour 1.00, direction 1.00, shape 0.50. The audio and video decoders follow neither
# pitch nor direction yet (docs/toyworld.md). A floor is one miss below what was measured.
ROUTED_FLOORS = {"image": 4, "audio": 4, "video": 4}
GENERATION_FLOORS = {"image": {"shape": 0.5, "colour": 0.75, "size": 0.75, "position": 0.75},
                     "audio": {"rhythm": 0.75, "timbre": 0.25}, "video": {"colour": 0.25}}
CAPTION_FLOORS = {"image": {"shape": 0.5, "colour": 0.75, "size": 0.75, "position": 0.75},
                  "audio": {"pitch": 0.5, "timbre": 0.75}, "video": {"colour": 0.75, "direction": 0.75, "shape": 0.25}}


@pytest.fixture(scope="module")
def shipped():
    folder = shipped_model()
    assert folder is not None, "the package must ship its toy-world model (nextgpt toyworld ship OUT/model)"
    from nextgpt.toyworld.classifiers import AttributeClassifiers

    return NextGPT.from_pretrained(folder), AttributeClassifiers.load(shipped_judges())


def _held_out(modality: str, count: int) -> list:
    meanings = make_split().meanings(modality, "eval")
    return [meanings[i] for i in np.linspace(0, len(meanings) - 1, count).round().astype(int)]


def test_shipped_folder_is_small_complete_and_the_cli_default():
    from nextgpt.cli import build_parser, load_pipeline

    folder = shipped_model()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 30 * 2**20, f"{size / 2**20:.1f} MiB"
    report = json.loads((folder / "eval_toyworld.json").read_text())
    assert set(report["per_modality"]) == OUTPUTS
    assert json.loads((folder / "card.json").read_text())["examples"]
    pipe = load_pipeline(build_parser().parse_args(["generate", "hi"]))
    assert pipe.config.name == "toyworld" and pipe.base_dir.resolve() == folder.resolve()


@pytest.mark.parametrize("modality", sorted(OUTPUTS))
def test_held_out_generation_requests_are_routed_and_judged(shipped, modality, tmp_path):
    pipe, judges = shipped
    template = INSTRUCTIONS["generate"][-1]  # the held-out phrasing
    right: dict[str, list[bool]] = {}
    routes = []
    for meaning in _held_out(modality, 4):
        prompt = template.format(noun=NOUN[modality], caption=caption(meaning, 0))
        response = pipe.chat(prompt, GenerationOptions(seed=0, max_new_tokens=48, output_dir=None))
        routes.append((prompt, response.raw_text, [m.modality for m in response.media]))
        if routes[-1][2] != [modality]:
            continue
        read = judges.predict(modality, [response.media[0].data], [response.media[0].rate])[0]
        for name, value in meaning.attributes.items():
            right.setdefault(name, []).append(read[name] == value)
    assert sum(made == [modality] for *_, made in routes) >= ROUTED_FLOORS[modality], routes
    assert all(made in ([], [modality]) for *_, made in routes), routes  # never another modality
    accuracy = {name: float(np.mean(hits)) for name, hits in right.items()}
    for name, floor in GENERATION_FLOORS[modality].items():
        assert accuracy[name] >= floor, (modality, accuracy)


@pytest.mark.parametrize("modality", sorted(OUTPUTS))
def test_held_out_media_are_described_in_text(shipped, modality, tmp_path):
    from nextgpt.types import Media

    pipe, _ = shipped
    right: dict[str, list[bool]] = {}
    for meaning in _held_out(modality, 4):
        media = render(meaning)
        item = Media(modality, media, {"audio": SAMPLE_RATE, "video": VIDEO_FPS}.get(modality))
        response = pipe.chat([Message.user(f"What is in this {NOUN[modality]}?", media=[item])],
                             GenerationOptions(max_new_tokens=48, output_dir=None))
        assert not response.media, response.raw_text  # a question about media is answered in text
        parsed = parse_caption(response.text, modality)
        for name, value in meaning.attributes.items():
            right.setdefault(name, []).append(parsed.get(name) == value)
    accuracy = {name: float(np.mean(hits)) for name, hits in right.items()}
    for name, floor in CAPTION_FLOORS[modality].items():
        assert accuracy[name] >= floor, (modality, accuracy)
