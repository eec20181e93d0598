"""The toy world's datasets: our schema through our loaders and validator, determinism, the held-out split, the
checks of the eval set, ``nextgpt toyworld data``."""
from __future__ import annotations

import ast
import json
import re

import pytest

from nextgpt.apps.agent.specs import SYSTEM_PROMPT, attachment_note, media_tool_specs, missing_file, tool_failure
from nextgpt.apps.agent.workspace import mime_type
from nextgpt.dialogs.loaders import load_dialogues
from nextgpt.dialogs.tool_calls import parse_tool_calls, render_tool_specs
from nextgpt.dialogs.validate import validate
from nextgpt.toyworld.dataset import EVAL_FILES, DatasetSizes, build_dataset, build_validation
from nextgpt.toyworld.language import parse_meaning
from nextgpt.toyworld.prompts import MODEL_MODALITIES
from nextgpt.toyworld.split import HELD_OUT_FRACTION, make_split
from nextgpt.toyworld.world import Meaning, linked_attributes

SIZES = DatasetSizes(pairs=4, instructions=24, dialogues=10, tools=9, eval=3, tool_retries=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("toyworld")
    return out, build_dataset(out, seed=3, sizes=SIZES)


def _files(out, part):
    return sorted(out.glob(f"{part}_*.jsonl"))


def test_files_validate_and_counts_match_the_manifest(world):
    out, manifest = world
    files = _files(out, "train") + _files(out, "eval")
    assert {f.name for f in files} == set(manifest["files"])
    assert validate(files, None, ("image", "video", "audio")) == []
    for file in files:
        assert len(load_dialogues([file], format="dialogue")) == manifest["files"][file.name]
    assert manifest["files"]["train_comprehension.jsonl"] == 3 * SIZES.pairs
    assert manifest["split"]["fraction"] == HELD_OUT_FRACTION and manifest["seed"] == 3
    assert sum(1 for _ in (out / "media" / "video").iterdir()) == manifest["media"]["video"]


def test_same_seed_same_files(world, tmp_path):
    out, _ = world
    build_dataset(tmp_path, seed=3, sizes=SIZES)
    for file in _files(out, "train") + _files(out, "eval") + [out / "targets.jsonl"]:
        assert (tmp_path / file.name).read_text() == file.read_text(), file.name
    assert (tmp_path / "media/audio/000000.wav").read_bytes() == (out / "media/audio/000000.wav").read_bytes()


def test_training_never_sees_held_out_combinations_and_eval_always_does(world):
    out, _ = world
    split = make_split()
    for part in ("train", "eval"):
        for dialogue in load_dialogues(_files(out, part), format="dialogue"):
            requests = [o for t in dialogue.turns for o in t.outputs]
            for request in requests:
                meaning = parse_meaning(request.caption, request.modality)
                assert meaning is not None, request.caption
                if part == "train":
                    assert not split.is_held_out(meaning), (dialogue.id, request.caption)
    targets = [json.loads(line) for line in (out / "targets.jsonl").read_text().splitlines()]
    sources = {d.id: d.turns[0].inputs[0].modality for d in load_dialogues([out / "eval_conversion.jsonl"])}
    for row in targets:
        check = row["checks"][0]
        if row["kind"] in ("captioning", "generation"):
            assert split.is_held_out(Meaning.of(check["about"], check["attributes"]))
        if row["kind"] == "conversion":  # judged on the attributes the rule links, nothing else
            assert list(check["attributes"]) == linked_attributes(sources[row["id"]], check["about"])


def test_eval_checks_point_at_assistant_turns_and_match_the_answers(world):
    out, _ = world
    targets = {json.loads(line)["id"]: json.loads(line) for line in (out / "targets.jsonl").read_text().splitlines()}
    dialogues = load_dialogues([out / f"eval_{name}.jsonl" for name in EVAL_FILES], format="dialogue")
    assert len(dialogues) == len(targets)
    switches = 0
    for dialogue in dialogues:
        row = targets[dialogue.id]
        for check in row["checks"]:
            turn = dialogue.turns[check["turn"]]
            assert turn.role == "assistant"
            produced = [o.modality for o in turn.outputs]
            assert produced == ([] if check["produce"] in ("text", "tool_call") else [check["produce"]])
            if check["produce"] == "tool_call":  # the answer is the call the check describes
                call = parse_tool_calls(turn.text).calls[0]
                assert call.name == check["attributes"]["tool"]
                assert {k: v for k, v in call.arguments.items() if k != "description"} == {
                    k: v for k, v in check["attributes"].items() if k in ("path", "to")}
        if row["kind"] == "multiturn":
            switches += len({c["produce"] for c in row["checks"]}) > 1
    assert switches > 0  # multi-turn dialogues switch modalities


def test_tool_dialogues_use_the_agent_format(world):
    out, _ = world
    retries = 0
    for dialogue in load_dialogues([out / "train_tools.jsonl"], format="dialogue"):
        roles = [t.role for t in dialogue.turns]
        if len(roles) == 7:  # a failed call (context only, never a target), the agent's error, then the retry
            retries += 1
            failed, error = parse_tool_calls(dialogue.turns[2].text).calls[0], dialogue.turns[3]
            right = parse_tool_calls(dialogue.turns[4].text).calls[0]
            assert not dialogue.turns[2].train and all(t.train for t in dialogue.turns[3:])
            assert failed.name == right.name == error.tool_name and failed.arguments["path"] != right.arguments["path"]
            assert {**failed.arguments, "path": right.arguments["path"]} == right.arguments
            listed = ast.literal_eval(re.search(r"files there: (\[.*\])$", error.text).group(1))
            assert error.text == tool_failure(failed.name, missing_file(failed.arguments["path"], listed))
            assert right.arguments["path"] in listed
            dialogue.turns[2:4] = []
        roles = [t.role for t in dialogue.turns]
        assert roles == ["system", "user", "assistant", "tool", "assistant"]
        calls = parse_tool_calls(dialogue.turns[2].text)
        assert len(calls.calls) == 1 and not calls.errors
        assert calls.calls[0].name == dialogue.turns[3].tool_name
        # exactly what `nextgpt agent` sends the toy model (tests/test_agent_format.py pins the agent to specs.py)
        assert dialogue.turns[0].text == SYSTEM_PROMPT + "\n\n" + render_tool_specs(
            media_tool_specs(MODEL_MODALITIES, MODEL_MODALITIES))
        path = calls.calls[0].arguments.get("path")
        if path is not None:  # a file the user attached, named as the agent names attachments
            assert dialogue.turns[1].text.endswith(attachment_note([(path, mime_type(path))]))
    assert retries > 0


def _tool_modality(call) -> str:
    """The modality a planned call works on: the tool's own (describe_/generate_), or its input file's."""
    if call.name == "convert_media":
        return mime_type(call.arguments["path"]).split("/")[0]
    return call.name.split("_", 1)[1]


def test_training_tool_dialogues_are_a_third_of_each_modality(tmp_path):
    """Drawn from all training meanings at once, the tool dialogues were mostly pictures (170 of 200 meanings; 15
    sounds): the shipped planner had seen 9 sound generations in 800 dialogues. Each modality gets its third now
    (±1), of the plain dialogues and of the retries alike."""
    sizes = DatasetSizes(pairs=1, instructions=1, dialogues=1, tools=31, eval=1, tool_retries=14)
    build_dataset(tmp_path, seed=5, sizes=sizes)
    counts = {"plain": dict.fromkeys(MODEL_MODALITIES, 0), "retry": dict.fromkeys(MODEL_MODALITIES, 0)}
    for dialogue in load_dialogues([tmp_path / "train_tools.jsonl"], format="dialogue"):
        calls = [parse_tool_calls(t.text).calls[0] for t in dialogue.turns if t.role == "assistant" and t.train
                 and "<tool_call>" in t.text]
        counts["retry" if len(dialogue.turns) == 7 else "plain"][_tool_modality(calls[0])] += 1
    assert counts == {"plain": {"image": 11, "audio": 10, "video": 10}, "retry": {"image": 5, "audio": 5, "video": 4}}


def test_attached_file_names_are_not_guessable_and_a_wrong_name_is_another_file():
    """The planner must copy the name it is given: names vary (usual stems, other words, random letters, camera
    numbers), and the wrong name of a retry is never the right one and keeps the file's kind."""
    import numpy as np

    from nextgpt.toyworld.dialogues import _FILE_STEMS, Builder

    builder = Builder(make_split(), "train", lambda meaning: meaning.key, np.random.default_rng(0))
    for modality, stems in _FILE_STEMS.items():
        names = [builder._attachment(modality) for _ in range(400)]
        assert all(re.fullmatch(r"inputs/[A-Za-z0-9_-]+\.(png|wav|mp4)", name) for name in names), names[:5]
        assert len({name.rsplit(".", 1)[1] for name in names}) == 1
        usual = [name for name in names if re.fullmatch(rf"inputs/({'|'.join(stems)})([-_]\d+)?\.\w+", name)]
        assert 0.15 < len(usual) / len(names) < 0.4  # a quarter keep the usual stems
        assert len(set(names)) > 0.8 * len(names)
        for name in names[:50]:
            wrong = builder._wrong_path(name)
            assert wrong != name and wrong.startswith("inputs/") and wrong.rsplit(".", 1)[1] == name.rsplit(".", 1)[1]


def test_a_file_question_is_answered_with_the_name_of_the_file_of_the_asked_kind():
    import numpy as np

    from nextgpt.toyworld.dialogues import _EXTENSIONS, Builder
    from nextgpt.toyworld.prompts import NOUNS

    builder = Builder(make_split(), "train", lambda meaning: meaning.key, np.random.default_rng(1))
    counts = set()
    for _ in range(60):
        example = builder.file_question()
        user, answer = example.dialogue.turns
        assert (user.role, answer.role, example.checks) == ("user", "assistant", [])
        attached = re.findall(r"(inputs/\S+) \(", user.text.split("\n\n", 1)[1])
        counts.add(len(attached))
        named = re.findall(r"inputs/[\w-]+\.\w+", answer.text)
        assert len(named) == 1 and named[0] in attached
        kind = next(m for m, ext in _EXTENSIONS.items() if named[0].endswith(ext))
        assert any(f" {noun}" in user.text.split("\n")[0] for noun in NOUNS[kind]), (user.text, answer.text)
        assert user.text.endswith(attachment_note([(path, mime_type(path)) for path in attached]))
    assert counts == {1, 2, 3}


def test_cli_toyworld_data(tmp_path, capsys, monkeypatch):
    from nextgpt.cli import main
    from nextgpt.toyworld import dataset

    monkeypatch.setitem(dataset.SIZES, "small", SIZES)  # keep the CLI test small
    assert main(["toyworld", "data", "--out", str(tmp_path), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train_instructions.jsonl: 24 dialogue(s)" in printed and (tmp_path / "manifest.json").is_file()
    assert main(["data", "validate", *map(str, sorted(tmp_path.glob("*_*.jsonl")))]) == 0


def test_validation_set_draws_training_combinations_and_phrasings_only(tmp_path):
    """`build_validation`: eval-style files that the eval reads unchanged, with no held-out combination and no
    held-out phrasing anywhere — choosing a recipe on it does not read the held-out split."""
    from nextgpt.eval.toyworld_eval import eval_part, held_out_phrasing, load_eval_set

    manifest = build_validation(tmp_path, seed=11, per_modality=4)
    assert manifest["part"] == "validation" and eval_part(tmp_path) == "validation"
    assert manifest["files"] == {f"eval_{name}.jsonl": 12 for name in EVAL_FILES}
    files = sorted(tmp_path.glob("eval_*.jsonl"))
    assert validate(files, None, ("image", "video", "audio")) == []
    split = make_split()
    phrasings = 0
    for dialogue in load_dialogues(files, format="dialogue"):
        for turn in dialogue.turns:
            for output in turn.outputs:
                meaning = parse_meaning(output.caption, output.modality)
                assert meaning is not None and not split.is_held_out(meaning), (dialogue.id, output.caption)
            if turn.role == "user":
                held = held_out_phrasing(turn.text)
                phrasings += held is not None
                assert held is not True, (dialogue.id, turn.text)
    assert phrasings > 30  # the check above read the requests' phrasings
    items = load_eval_set(tmp_path)
    assert len(items) == 6 * 12
    for kind, _, checks in items:
        for check in checks:
            if kind in ("captioning", "generation"):
                assert not split.is_held_out(Meaning.of(check.about, check.attributes))
    again = tmp_path / "again"
    build_validation(again, seed=11, per_modality=4)
    assert (again / "targets.jsonl").read_text() == (tmp_path / "targets.jsonl").read_text()
    with pytest.raises(ValueError, match="per_modality must be at least 1"):
        build_validation(tmp_path / "none", per_modality=0)


def test_cli_toyworld_validation(tmp_path, capsys):
    from nextgpt.cli import main

    assert main(["toyworld", "validation", "--out", str(tmp_path / "val"), "--per-modality", "1"]) == 0
    assert "eval_conversion.jsonl: 3 dialogue(s)" in capsys.readouterr().out
    assert json.loads((tmp_path / "val" / "manifest.json").read_text())["part"] == "validation"
    assert main(["toyworld", "validation", "--out", str(tmp_path / "bad"), "--per-modality", "0"]) == 2
    assert "per_modality must be at least 1" in capsys.readouterr().err


def _requests(rate, part="train", count=300):
    """User requests of every task from one seeded builder, with courtesy at ``rate``."""
    import numpy as np

    from nextgpt.toyworld import dialogues

    split = make_split()
    builder = dialogues.Builder(split, part, lambda meaning: meaning.key, np.random.default_rng(5), courtesy_rate=rate)
    image, sound = split.meanings("image", part)[0], split.meanings("audio", part)[0]
    return {
        "generate": [builder.generation(image).dialogue for _ in range(count)],
        "describe": [builder.captioning(sound).dialogue for _ in range(count)],
        "convert": [builder.conversion(image, "audio").dialogue for _ in range(count)],
    }


def test_courtesy_is_spread_over_every_task_and_leaves_other_draws_alone():
    from nextgpt.toyworld.prompts import COURTESY_RATE, polite

    polite_ones = _requests(COURTESY_RATE)
    plain = _requests(0.0)
    for task, dialogues_ in polite_ones.items():
        said = [d.turns[0].text for d in dialogues_]
        rate = sum("please" in text.lower() for text in said) / len(said)
        # "please" no longer tells a describe request from a generate or convert one (the templates alone: only
        # one describe phrasing of 8 says it, no generate or convert phrasing does)
        assert COURTESY_RATE - 0.1 < rate < COURTESY_RATE + 0.2, (task, rate)
        for with_courtesy, without in zip(dialogues_, plain[task]):
            # its own random stream: captions, answers and files are those of the world without courtesy
            assert [t.text for t in with_courtesy.turns[1:]] == [t.text for t in without.turns[1:]]
            assert with_courtesy.turns[0].text in (without.turns[0].text, polite(without.turns[0].text, 0),
                                                   polite(without.turns[0].text, 1))
    evaluation = _requests(COURTESY_RATE, part="eval", count=60)
    assert evaluation["generate"][0].turns[0].text == _requests(0.0, "eval", 60)["generate"][0].turns[0].text
    assert not any("please" in d.turns[0].text.lower() and not d.turns[0].text.startswith("Please generate")
                   for d in evaluation["generate"])  # eval requests are the templates as written


def test_the_llm_pretraining_text_has_no_courtesy_and_a_bad_rate_is_refused():
    import numpy as np

    from nextgpt.toyworld.dialogues import Builder
    from nextgpt.toyworld.train_llm import dialogue_texts

    texts = [t.text for t in dialogue_texts("train", 400, seed=3)]
    # the templates' own "please" (one describe phrasing) only: courtesy is for the stages' data, not the LLM's
    own = re.compile(r"Caption this (picture|image|drawing|sound|audio clip|tone|video|animation|movie), please\.")
    assert not [t for t in texts if "please" in own.sub("", t).lower()]
    assert any(own.search(t) for t in texts)  # the template's "please" is there, so the check can see one
    with pytest.raises(ValueError, match="courtesy_rate must be a share between 0 and 1"):
        Builder(make_split(), "train", lambda meaning: meaning.key, np.random.default_rng(0), courtesy_rate=30)


@pytest.mark.parametrize(("request_", "form", "expected"), [
    ("Make a picture of a red circle.", 0, "Please make a picture of a red circle."),
    ("Make a picture of a red circle.", 1, "Make a picture of a red circle, please."),
    ("<image>\nWhat is in this picture?", 0, "<image>\nWhat is in this picture, please?"),
    ("<image>\nDescribe this picture.", 0, "<image>\nPlease describe this picture."),
    ("I would like a sound of a low tone.", 0, "I would like a sound of a low tone, please."),
    ("<image>\nCaption this picture, please.", 0, "<image>\nCaption this picture, please."),
])
def test_polite_requests_read_naturally(request_, form, expected):
    from nextgpt.toyworld.prompts import polite

    assert polite(request_, form) == expected


def test_conversion_requests_ask_in_the_agents_words_with_a_noun_phrase_for_the_output():
    from nextgpt.apps.agent.specs import convert_prompt

    asked = {d.turns[0].text.split("\n")[-1] for d in _requests(0.0, count=200)["convert"]}
    # the convert_media phrasing is one of the world's: a model trained on it reads what the agent sends
    assert convert_prompt("audio", "image") == "Make a sound that matches this image." and \
        convert_prompt("audio", "image") in asked
    # no request names its output by a bare modality word ("Make audio that ..." routed to video a third of the time)
    assert not [text for text in asked if re.match(r"Make (audio|image|video)\b", text)]
