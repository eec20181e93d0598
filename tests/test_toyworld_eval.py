"""Attribute classifiers (train, judge any size, save/load) and ``evaluate_checkpoint`` on the tiny preset:
random weights give ~chance accuracy; the contract is a report with every field, written as JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nextgpt.eval.toyworld_eval import REPORT_NAME, report_name
from nextgpt.toyworld.classifiers import AttributeClassifier, AttributeClassifiers, train_classifier
from nextgpt.toyworld.dataset import DatasetSizes, build_dataset, build_validation
from nextgpt.toyworld.render import render
from nextgpt.toyworld.world import MODALITIES, Meaning, all_meanings


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return AttributeClassifiers({m: AttributeClassifier(m).eval() for m in MODALITIES})


def test_audio_classifier_learns_from_renderings_quickly():
    model, report = train_classifier("audio", train_size=1000, epochs=8, test_size=200)
    assert report.accuracy >= 0.9, report  # the shipped judges train longer: >= 98 % (docs/toyworld.md)
    judges = AttributeClassifiers({"audio": model.eval()})
    meaning = Meaning("audio", ("high", "sine", "beeping"))
    stereo_44k = np.repeat(np.interp(np.arange(44100) / 44100, np.arange(16000) / 16000, render(meaning)), 2)
    assert judges.predict("audio", [render(meaning)])[0]["pitch"] == "high"
    assert judges.predict("audio", [stereo_44k.reshape(-1, 2)], [44100])[0]["pitch"] == "high"


@pytest.mark.parametrize("fade", [0.0, 0.005, 0.01, 0.02])
def test_shipped_judges_read_a_beep_by_its_partials_however_its_edges_switch(fade):
    """Judges trained on hard switches only heard faded beeping squares as sines (the switch's splatter was their
    timbre cue); the shipped ones train on faded edges too."""
    from nextgpt.toyworld.build import shipped_judges
    from nextgpt.toyworld.render import render_audio

    judges = AttributeClassifiers.load(shipped_judges())
    beeping = [m for m in all_meanings("audio") if m["rhythm"] == "beeping"]
    rng = np.random.default_rng(5)
    tones = [render_audio(m, rng, fade_seconds=fade) for m in beeping for _ in range(3)]
    read = judges.predict("audio", tones)
    assert [Meaning.of("audio", r) for r in read] == [m for m in beeping for _ in range(3)]


def test_classifiers_save_load_round_trip_and_judge_any_size(untrained, tmp_path):
    untrained.save(tmp_path)
    loaded = AttributeClassifiers.load(tmp_path)
    items = {"image": [render(all_meanings("image")[7]), np.random.rand(64, 48, 3)],
             "video": [render(all_meanings("video")[3]), np.random.rand(13, 40, 40, 3)],
             "audio": [render(all_meanings("audio")[5]), np.random.rand(8000).astype(np.float32)]}
    for modality, arrays in items.items():
        assert untrained.predict(modality, arrays) == loaded.predict(modality, arrays)
    config = json.loads((tmp_path / "classifiers.json").read_text())
    config["modalities"]["image"]["attributes"]["colour"] = ["red"]
    (tmp_path / "classifiers.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="retrain"):
        AttributeClassifiers.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="nextgpt toyworld classifiers"):
        AttributeClassifiers.load(tmp_path / "nothing")
    with pytest.raises(KeyError, match="available"):
        untrained.predict("smell", [np.zeros(3)])


def test_evaluate_checkpoint_reports_every_field(tiny_pipe, untrained, tmp_path):
    from nextgpt.eval.toyworld_eval import evaluate_checkpoint, format_report

    data = tmp_path / "world"
    build_dataset(data, seed=0, sizes=DatasetSizes(pairs=1, instructions=1, dialogues=1, tools=1, eval=2))
    out = tmp_path / "ckpt" / "eval_toyworld.json"
    report = evaluate_checkpoint(tiny_pipe, data, untrained, limit=3, out_path=out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    for modality in MODALITIES:
        row = report["per_modality"][modality]
        assert set(row) == {"captioning", "generation", "routing", "conversion", "retrieval_at_1"}
        for key in ("captioning", "generation", "routing"):
            assert row[key] is not None and 0.0 <= row[key] <= 1.0, (modality, key)
    assert any(report["per_modality"][m]["conversion"] is not None for m in MODALITIES)
    for modality in MODALITIES:  # retrieval uses the whole generation file (2 captions per modality)
        assert 0.0 <= report["per_modality"][modality]["retrieval_at_1"] <= 1.0
    for key in ("routing_text", "multiturn", "multiturn_turns", "bleu4", "cider_d"):
        assert report[key] is not None and report[key] >= 0.0, key
    assert report["counts"]["per_kind"]["multiturn"] >= 3
    # per attribute: which links of the chain work, where the all-attributes accuracy cannot tell
    assert {"captioning", "generation", "conversion"} <= set(report["per_attribute"])
    assert set(report["per_attribute"]["captioning"]["image"]) == {"shape", "colour", "size", "position"}
    assert all(0.0 <= v <= 1.0 for targets in report["per_attribute"].values() for names in targets.values()
               for v in names.values())
    assert report["counts"]["per_kind"]["tools"] == 3  # one planned call per modality, judged field by field
    assert report["counts"]["per_kind"]["tool_retry"] == 3  # and one call after a failed one's error
    assert 0.0 <= report["tool_calls"] <= 1.0 and 0.0 <= report["tool_retries"] <= 1.0
    table = format_report(report)
    assert "retrieval_at_1" in table and "CIDEr-D" in table and "tool calls" in table and "retried" in table
    assert set(report["routing_by_phrasing"]) == {"trained", "held_out"} and "by request phrasing" in table
    assert report["tool_paths"] == "attached files" and "paths held to the attached files" in table
    # routing only: the outputs planned, not made; every routed turn (multi-turn history included) answers the same
    planned = evaluate_checkpoint(tiny_pipe, data, untrained, limit=3, routing_only=True)
    assert planned["routing_misses"] == report["routing_misses"] and planned["counts"] == report["counts"]
    assert report["counts"]["per_kind"]["multiturn"] > 0 and planned["routing_misses"]["count"] > 0
    assert [row["routing"] for row in planned["per_modality"].values()] == [
        row["routing"] for row in report["per_modality"].values()]
    assert planned["media_judged"] is False and planned["multiturn"] is None and "media_judged" not in report


def test_a_retry_is_judged_after_the_given_failed_call_and_its_error(tmp_path):
    """The failed call (train: false) is put in the history as the model's, the error is sent as the agent sends a
    tool result, and only the call after it is judged."""
    from types import SimpleNamespace

    from nextgpt.dialogs.tool_calls import parse_tool_calls, render_tool_call
    from nextgpt.eval.toyworld_eval import _run_dialogue, load_eval_set

    build_dataset(tmp_path, seed=0, sizes=DatasetSizes(pairs=1, instructions=1, dialogues=1, tools=1, eval=1))
    kind, dialogue, checks = next(item for item in load_eval_set(tmp_path) if item[0] == "tool_retry")
    failed, error = dialogue.turns[2], dialogue.turns[3]
    assert not failed.train and error.role == "tool" and "files there:" in error.text

    class Conversation:
        def __init__(self):
            self.messages, self.asked = [], []

        def say(self, text, media=()):
            self.asked.append(text)
            self.messages.append(SimpleNamespace(role="user", text=text))
            seen = "\n".join(m.text for m in self.messages)
            # answers with the file the error lists when it has seen the failed call and the error, else wrongly
            path = checks[0].attributes["path"] if failed.text in seen and "files there:" in text else "inputs/x.png"
            call = parse_tool_calls(failed.text).calls[0]
            return SimpleNamespace(text=render_tool_call(call.name, {**call.arguments, "path": path}), media=[])

    conversation = Conversation()
    pipe = SimpleNamespace(conversation=lambda system=None, options=None: conversation)
    (result,) = _run_dialogue(pipe, kind, dialogue, checks, None, None)
    assert result.correct and result.kind == "tool_retry"
    assert len(conversation.asked) == 1 and conversation.asked[0].startswith("<tool_result")
    assert [m.role for m in conversation.messages] == ["user", "assistant", "user"]
    # planned as the agent plans: the call's path held to the files the request attached (unless free_paths)
    from nextgpt.apps.agent.specs import attached_files
    from nextgpt.options import GenerationOptions

    attached = tuple(attached_files(dialogue.turns[1].text))
    assert attached == (checks[0].attributes["path"],)
    for free, expected in ((False, {"path": attached}), (True, {})):
        conversation = Conversation()
        conversation.options = GenerationOptions()
        _run_dialogue(pipe, kind, dialogue, checks, None, conversation.options, free_paths=free)
        assert conversation.options.string_choices == expected


def _call(name, **arguments):
    from nextgpt.dialogs.tool_calls import render_tool_call

    return "Sure. " + render_tool_call(name, arguments)


@pytest.mark.parametrize("text, right", [
    (_call("generate_image", description="a small red circle on the left"), True),
    (_call("generate_image", description="a small red circle on the right"), False),  # one attribute wrong
    (_call("generate_video", description="a small red circle on the left"), False),  # wrong tool
    ("I made a picture of a small red circle on the left.", False),  # no call at all
    ('<tool_call>{"name": "generate_image", "arguments": {"description": 3}}</tool_call>', False),
])
def test_planned_generate_calls_are_judged_on_the_description(text, right):
    from nextgpt.eval.toyworld_eval import _judge_tool_call
    from nextgpt.toyworld.dialogues import TOOL_CALL, Check

    attributes = {"shape": "circle", "colour": "red", "size": "small", "position": "left"}
    judged = _judge_tool_call(text, Check(2, TOOL_CALL, "image", {"tool": "generate_image", **attributes}))
    assert all(judged.values()) is right and set(judged) == {"tool", *attributes}


def test_planned_file_calls_must_name_the_file_and_target():
    from nextgpt.eval.toyworld_eval import _judge_tool_call
    from nextgpt.toyworld.dialogues import TOOL_CALL, Check

    check = Check(2, TOOL_CALL, "image", {"tool": "convert_media", "path": "inputs/a-picture-1.png", "to": "audio"})
    assert _judge_tool_call(_call("convert_media", path="inputs/a-picture-1.png", to="audio"), check) == {
        "tool": True, "path": True, "to": True}
    assert _judge_tool_call(_call("convert_media", path="inputs/a-picture-2.png", to="audio"), check) == {
        "tool": True, "path": False, "to": True}


def test_a_world_without_the_tool_eval_file_is_still_evaluated(tmp_path, caplog):
    from nextgpt.eval.toyworld_eval import load_eval_set

    build_dataset(tmp_path, seed=0, sizes=DatasetSizes(pairs=1, instructions=1, dialogues=1, tools=1, eval=1))
    assert {kind for kind, _, _ in load_eval_set(tmp_path)} >= {"tools", "captioning"}
    (tmp_path / "eval_tools.jsonl").unlink()  # a world written before tool calls were evaluated
    kinds = {kind for kind, _, _ in load_eval_set(tmp_path)}
    assert "tools" not in kinds and "captioning" in kinds
    assert "eval_tools.jsonl" in caplog.text


def test_cli_classifiers_then_eval_toyworld(tmp_path, capsys, monkeypatch):
    from nextgpt.cli import main
    from nextgpt.toyworld import classifiers

    quick = {"train_size": 64, "epochs": 1, "batch_size": 32}
    monkeypatch.setattr(classifiers, "TRAINING", dict.fromkeys(MODALITIES, quick))  # the contract, not the accuracy
    assert main(["toyworld", "classifiers", "--out", str(tmp_path / "judges")]) == 0
    assert "video: accuracy" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "judges").iterdir()} == {
        "classifiers.json", "image.safetensors", "audio.safetensors", "video.safetensors"}

    build_dataset(tmp_path / "world", seed=1, sizes=DatasetSizes(pairs=1, instructions=1, dialogues=1, tools=1, eval=1))
    assert main(["eval", "toyworld", "--data", str(tmp_path / "world"), "--classifiers", str(tmp_path / "judges"),
                 "--limit", "1", "--preset", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert "retrieval_at_1" in printed and "multi-turn" in printed and "set: held out" in printed
    report = json.loads((tmp_path / "world" / "eval_toyworld-tiny.json").read_text())
    assert report["limit"] == 1 and report["part"] == "held_out"
    # routing only (the outputs planned, not made): the same routing as the full run, media left unjudged
    assert main(["eval", "toyworld", "--data", str(tmp_path / "world"), "--classifiers", str(tmp_path / "judges"),
                 "--limit", "1", "--preset", "tiny", "--routing-only"]) == 0
    assert "routing only" in capsys.readouterr().out
    planned = json.loads((tmp_path / "world" / "eval_toyworld-tiny-routing.json").read_text())
    assert planned["media_judged"] is False and planned["multiturn"] is None
    for key in ("routing_misses", "routing_text", "routing_by_phrasing", "counts", "tool_calls", "bleu4"):
        assert planned[key] == report[key], key
    for modality, row in planned["per_modality"].items():
        assert row["generation"] is None and row["conversion"] is None
        assert row["routing"] == report["per_modality"][modality]["routing"]
        assert row["captioning"] == report["per_modality"][modality]["captioning"]
    # a validation set (training combinations) is evaluated the same way; its report has a name of its own
    build_validation(tmp_path / "val", per_modality=1)
    assert main(["eval", "toyworld", "--data", str(tmp_path / "val"), "--classifiers", str(tmp_path / "judges"),
                 "--limit", "1", "--preset", "tiny"]) == 0
    assert "set: validation" in capsys.readouterr().out
    assert json.loads((tmp_path / "val" / "eval_toyworld-tiny-validation.json").read_text())["part"] == "validation"
    assert len({report_name("validation"), REPORT_NAME, report_name("held_out", routing_only=True)}) == 3
    assert report_name("held_out") == REPORT_NAME
    misses = report["routing_misses"]  # random weights: the free answers (before the forced retry) of its misses
    assert misses["count"] == len(misses["listed"]) <= report["counts"]["turns"]
    for miss in misses["listed"]:
        assert miss["produced"] != ([] if miss["asked"] == "text" else [miss["asked"]]), miss
    assert main(["eval", "toyworld", "--data", str(tmp_path / "nothing"), "--classifiers", str(tmp_path / "judges"),
                 "--preset", "tiny"]) == 2
    assert "nextgpt toyworld data" in capsys.readouterr().err


def test_signal_retrieval_reads_prompts_with_input_media(tiny_pipe, tmp_path):
    """Conversion-style generation prompts carry an input item: its tokens are encoded and projected once
    (projecting them again, or passing them per item instead of per token, raised a shape error)."""
    from nextgpt.decoders import write_image
    from nextgpt.dialogs.schema import Dialogue
    from nextgpt.eval.toyworld_eval import signal_retrieval

    dialogues = []
    for i, colour in enumerate(("red", "blue", "green")):
        path = tmp_path / f"{colour}.png"
        write_image(render(Meaning("image", ("circle", colour, "large", "left"))), path)
        dialogues.append(Dialogue.from_dict({"id": str(i), "turns": [
            {"role": "user", "text": "<image>\nMake a sound for this picture.",
             "inputs": [{"modality": "image", "path": str(path)}]},
            {"role": "assistant", "text": "<output:audio>",
             "outputs": [{"modality": "audio", "caption": f"a {colour} sound"}]}]}))
    value = signal_retrieval(tiny_pipe, dialogues, "audio")
    assert 0.0 <= value <= 1.0


def test_routing_is_reported_by_request_phrasing_held_out_or_trained():
    from nextgpt.eval.toyworld_eval import TurnResult, held_out_phrasing, summarize
    from nextgpt.toyworld.dialogues import Check
    from nextgpt.toyworld.prompts import INSTRUCTIONS, polite, with_articles

    words = {"noun": "image", "caption": "a red circle on the left", "placeholder": "<audio>", "target": "tone",
             "target_phrase": "a sound", "modality": "image", "attribute": "colour"}
    for task, templates in INSTRUCTIONS.items():
        asked = [with_articles(t.format(**words)) for t in templates]
        assert [held_out_phrasing(text) for text in asked] == [False] * (len(templates) - 1) + [True], task
    assert held_out_phrasing(polite("Make a picture of a red circle.", 0)) is None  # "Please make …": no template
    assert held_out_phrasing(polite("Make a picture of a red circle.", 1)) is False  # the caption slot takes it
    assert held_out_phrasing("draw me something nice") is None

    def result(request, produced, produce="image"):
        return TurnResult("generation", Check(2, produce, "image", {}), produced, True, "", request=request)

    results = [result("Make a picture of a red circle.", ["image"]),
               result("Make a picture of a blue cross.", []),
               result("Please generate a picture with a red circle.", []),
               result("draw me something nice", ["image"])]  # no phrasing of the world: in neither
    report = summarize(results, {})
    assert report["routing_by_phrasing"] == {"trained": 0.5, "held_out": 0.0}


def test_the_report_lists_each_routing_miss_with_its_request_and_answer():
    from nextgpt.eval.toyworld_eval import TurnResult, format_report, summarize
    from nextgpt.toyworld.dialogues import Check

    def result(kind, produce, produced, answer="", attributes=None):
        return TurnResult(kind, Check(2, produce, "image", attributes or {}), produced, True, "",
                          request=f"ask {produce}", missed_answer=answer)

    results = [result("generation", "image", ["image"]),
               result("generation", "video", ["video", "audio"], "[VID0] square tone: [AUD0]"),
               result("multiturn", "text", ["image"], "It is red: [IMG0]"),
               result("tools", "tool_call", [], attributes={"tool": "generate_image"})]  # routing does not apply
    report = summarize(results, {})
    assert report["routing_misses"] == {"count": 2, "listed": [
        {"kind": "generation", "request": "ask video", "asked": "video", "produced": ["video", "audio"],
         "answer": "[VID0] square tone: [AUD0]"},
        {"kind": "multiturn", "request": "ask text", "asked": "text", "produced": ["image"],
         "answer": "It is red: [IMG0]"}]}
    assert "routing misses: 2" in format_report(report)


def test_captioning_and_generation_are_reported_per_held_out_combination():
    from nextgpt.eval.toyworld_eval import TurnResult, format_report, summarize
    from nextgpt.toyworld.dialogues import Check

    def result(kind, produce, about, meaning, correct):
        return TurnResult(kind, Check(1, produce, about, meaning), [produce], correct, "")

    low = {"pitch": "low", "timbre": "sawtooth", "rhythm": "beeping"}
    high = {"pitch": "high", "timbre": "sine", "rhythm": "steady"}
    results = [result("captioning", "text", "audio", low, True), result("captioning", "text", "audio", low, True),
               result("captioning", "text", "audio", low, False), result("captioning", "text", "audio", high, False),
               result("generation", "audio", "audio", high, True),
               result("conversion", "audio", "audio", {"pitch": "high"}, True)]  # judged on linked attributes only
    report = summarize(results, {})
    assert report["per_combination"] == {
        "captioning": {"audio": {"high-sine-steady": {"right": 0, "of": 1},
                                 "low-sawtooth-beeping": {"right": 2, "of": 3}}},
        "generation": {"audio": {"high-sine-steady": {"right": 1, "of": 1}}}}
    table = format_report(report)
    assert "captioning: held-out combinations right in most of their items: audio 1/2" in table
    assert "generation: held-out combinations right in most of their items: audio 1/1" in table
