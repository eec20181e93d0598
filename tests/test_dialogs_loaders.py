"""Loaders: every public format read into Dialogues with exact file:line sources; validation reports all at once."""
import json

import pytest

from nextgpt.dialogs.loaders import DatasetError, iter_loaded, load_dialogues
from nextgpt.dialogs.records import read_records
from nextgpt.dialogs.schema import Dialogue, MediaRef, OutputRequest, Turn
from nextgpt.dialogs.validate import validate

MODALITIES = ("image", "video", "audio")
SUFFIX = {"image": "jpg", "video": "mp4", "audio": "wav"}


def write_json(path, records):
    path.write_text(json.dumps(records, indent=4), encoding="utf-8")
    return path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def media(root, *names):
    for name in names:
        (root / name).write_bytes(b"x")


# ---- X-caption pairs ------------------------------------------------------------------------------------
PAIRS = {
    "image": {"caption": "a dog", "id": "7", "image_name": "7.jpg"},  # CC3M
    "audio": {"audio_id": 7, "audio_name": "7.wav", "caption": "a dog"},  # AudioCaps
    "video": {"caption": "a dog", "id": "7", "video_name": "7.mp4"},  # WebVid
}


@pytest.mark.parametrize("modality", MODALITIES)
def test_pairs_become_comprehension_and_generation(tmp_path, modality):
    data = write_json(tmp_path / "pairs.json", [PAIRS[modality]])
    path = str(tmp_path / f"7.{SUFFIX[modality]}")
    (stage1,) = load_dialogues([data], task="comprehension")
    assert stage1 == Dialogue([Turn("user", f"<{modality}>\ngenerate a caption", inputs=[MediaRef(modality, path)]),
                               Turn("assistant", "a dog")], id="7", source=f"{data}:2")
    (stage2,) = load_dialogues([data], task="generation")
    assert stage2.turns == [Turn("user", "a dog"),
                            Turn("assistant", f"<output:{modality}>", outputs=[OutputRequest(modality, "a dog", path)])]


def test_json_array_sources_are_the_element_lines(tmp_path):
    data = tmp_path / "cc3m.json"
    data.write_text('[\n  {"caption": "a", "id": "1", "image_name": "1.jpg"},\n\n  {"caption": "b",\n'
                    '   "id": "2", "image_name": "2.jpg"}, {"caption": "c", "id": "3", "image_name": "3.jpg"}\n]\n')
    assert [d.source for d in load_dialogues([data])] == [f"{data}:2", f"{data}:4", f"{data}:5"]


def test_jsonl_sources_are_the_record_lines(tmp_path):
    data = tmp_path / "cc3m.jsonl"
    data.write_text('{"caption": "a", "id": "1", "image_name": "1.jpg"}\n\n'
                    '{"caption": "b", "id": "2", "image_name": "2.jpg"}\n')
    assert [d.source for d in load_dialogues([data])] == [f"{data}:1", f"{data}:3"]


def test_media_paths_resolve_against_root(tmp_path):
    data = write_json(tmp_path / "pairs.json", [PAIRS["image"], {**PAIRS["image"], "image_name": "/abs/8.jpg"}])
    first, second = load_dialogues([data], root=tmp_path / "images")
    assert first.turns[0].inputs[0].path == str(tmp_path / "images" / "7.jpg")
    assert second.turns[0].inputs[0].path == "/abs/8.jpg"


# ---- instruction files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("modality", MODALITIES)
def test_comprehension_instruction_file(tmp_path, modality):
    record = {f"input_{modality}": f"x.{SUFFIX[modality]}", "conversations": [
        {"from": "human", "value": f"<{modality}>\nWhat is it?"}, {"from": "gpt", "value": "a dog"},
        {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "yes"}]}
    (dialogue,) = load_dialogues([write_jsonl(tmp_path / "c.jsonl", [record])], root=tmp_path)
    assert [t.role for t in dialogue.turns] == ["user", "assistant", "user", "assistant"]
    assert dialogue.turns[0].inputs == [MediaRef(modality, str(tmp_path / f"x.{SUFFIX[modality]}"))]
    assert dialogue.turns[0].text == f"<{modality}>\nWhat is it?" and dialogue.turns[2].inputs == []


@pytest.mark.parametrize("modality", MODALITIES)
def test_generation_instruction_file(tmp_path, modality):
    name = f"o.{SUFFIX[modality]}"
    record = {f"output_{modality}": name, f"{modality}_captions": "a red circle",
              f"{modality}_caption_embeddings": f"{name}.npy",
              "conversations": [{"from": "human", "value": "Can you make a red circle"},
                                {"from": "gpt", "value": f"Sure thing! <{modality}>"}]}
    (dialogue,) = load_dialogues([write_json(tmp_path / "g.json", [record])])
    assert dialogue.turns[1] == Turn("assistant", f"Sure thing! <output:{modality}>", outputs=[
        OutputRequest(modality, "a red circle", str(tmp_path / name), f"{name}.npy")])


def test_generation_file_with_caption_lists_and_per_turn_captions(tmp_path):
    record = {"audio_captions": ["engine and speech"], "audio_caption_embeddings": ["34706.wav.npy"],
              "conversations": [
                  {"from": "human", "value": "I need an engine sound", "input_modality": "text"},
                  {"from": "gpt", "value": "Absolutely! <audio>", "caption": "engine and speech",
                   "output_modality": "audio"}]}
    (dialogue,) = load_dialogues([write_json(tmp_path / "g.json", [record])])
    assert dialogue.turns[1].text == "Absolutely! <output:audio>"
    assert dialogue.turns[1].outputs == [OutputRequest("audio", "engine and speech", None, "34706.wav.npy")]


def test_legacy_t2m(tmp_path):
    record = {"conversation": [
        {"from": "human", "value": "Show me a sunset", "input_modality": "text"},
        {"from": "gpt", "value": "Here is one.", "caption": "a sunset over the sea", "output_modality": "image"},
        {"from": "human", "value": "Thanks", "input_modality": "text"},
        {"from": "gpt", "value": "You're welcome", "caption": "", "output_modality": "text"}],
        "mm_name": "it_img_0.jpg"}
    (dialogue,) = load_dialogues([write_json(tmp_path / "t2m.json", [record])])
    assert dialogue.id == "it_img_0" and [t.role for t in dialogue.turns] == ["user", "assistant"] * 2
    # the legacy code appends the signal tokens to the answer: no marker, so tokenisation appends them
    assert dialogue.turns[1] == Turn("assistant", "Here is one.", outputs=[
        OutputRequest("image", "a sunset over the sea", str(tmp_path / "it_img_0.jpg"), "it_img_0.jpg.npy")])
    assert dialogue.turns[3].outputs == []


def test_mosit_raw(tmp_path):
    record = {
        "image_list": [{"image_name": "clouds.jpg", "data_source": "coco", "caption": "dark storm clouds"}],
        "audio_list": [{"audio_name": "rain.wav", "data_source": "audiocaps", "caption": "thunder and rain"}],
        "video_list": [],
        "conversation": [
            {"from": "human", "value": "Did you hear it? <Audio>thunder and rain</Audio>"},
            {"from": "gpt", "value": "Quite a storm. <Image>dark storm clouds</Image>"},
            {"from": "human", "value": "Make a video"},
            {"from": "gpt", "value": "Sure. <Video>lightning at night</Video>"}]}
    (dialogue,) = load_dialogues([write_json(tmp_path / "mosit.json", [record])])
    user, answer, _, last = dialogue.turns
    assert user.text == "Did you hear it? <audio>" and user.inputs == [MediaRef("audio", str(tmp_path / "rain.wav"))]
    assert answer.text == "Quite a storm. <output:image>"
    assert answer.outputs == [OutputRequest("image", "dark storm clouds", str(tmp_path / "clouds.jpg"))]
    assert last.outputs == [OutputRequest("video", "lightning at night")]  # no file listed: caption from the tag


@pytest.mark.parametrize("writer", [write_json, write_jsonl])
def test_own_schema_round_trip(tmp_path, writer):
    dialogue = Dialogue([Turn("system", "be brief"), Turn("user", "<image> what?", inputs=[MediaRef("image", "a.jpg")]),
                         Turn("assistant", "<tool_call>{}</tool_call>"), Turn("tool", "ok", tool_name="draw"),
                         Turn("assistant", "done <output:audio>", outputs=[OutputRequest("audio", "beep")])], id="d1")
    data = writer(tmp_path / "own.data", [dialogue.to_dict()])
    (loaded,) = load_dialogues([data], root="/data")
    dialogue.turns[1].inputs[0].path = "/data/a.jpg"
    dialogue.source = f"{data}:{2 if writer is write_json else 1}"
    assert loaded == dialogue


def test_train_flag_round_trips_and_is_checked(tmp_path):
    dialogue = Dialogue([Turn("user", "draw"), Turn("assistant", "<tool_call>{}</tool_call>", train=False),
                         Turn("tool", "Error: no file", tool_name="draw"), Turn("assistant", "done")], id="t")
    written = dialogue.to_dict()
    assert written["turns"][1]["train"] is False and "train" not in written["turns"][3]  # the default is not written
    (loaded,) = load_dialogues([write_jsonl(tmp_path / "t.jsonl", [written])])
    assert [t.train for t in loaded.turns] == [True, False, True, True]
    bad = [{"turns": [{"role": "user", "text": "x", "train": False}, {"role": "assistant", "text": "y"}]},
           {"turns": [{"role": "user", "text": "x"}, {"role": "assistant", "text": "y", "train": "no"}]},
           {"turns": [{"role": "user", "text": "x"}, {"role": "assistant", "text": "y", "train": False}]}]
    problems = validate([write_jsonl(tmp_path / "bad.jsonl", bad)])
    messages = [f"{p.field}: {p.message}" for p in problems]
    assert any("turns[0].train: only an assistant turn can be left out of the loss" in m for m in messages)
    assert any("turns[1].train: expected true or false, got str" in m for m in messages)
    assert any("every assistant turn has train: false: nothing to learn" in m for m in messages)


def test_explicit_format_overrides_detection(tmp_path):
    data = write_json(tmp_path / "g.json", [{"output_image": "o.jpg", "image_captions": "c", "conversations": [
        {"from": "human", "value": "draw"}, {"from": "gpt", "value": "ok <image>"}]}])
    assert load_dialogues([data])[0].turns[1].outputs  # detected as generation
    with pytest.raises(ValueError, match="unknown data format 'csv'; supported"):
        load_dialogues([data], format="csv")
    unknown = write_json(tmp_path / "u.json", [{"text": "hello"}])
    with pytest.raises(DatasetError, match=r"u.json:2:record: unknown format .* pass --format"):
        load_dialogues([unknown])


# ---- bad data: every bad record at once -------------------------------------------------------------------
def test_validate_reports_every_bad_record_with_file_line_field(tmp_path):
    media(tmp_path, "ok.jpg", "a.jpg")
    comprehension = write_json(tmp_path / "comp.json", [
        {"input_image": "ok.jpg", "conversations": [{"from": "human", "value": "<image>\nq"},
                                                    {"from": "gpt", "value": "fine"}]},
        {"input_image": "gone.jpg", "conversations": [{"from": "human", "value": "<image>\nq"},
                                                      {"from": "gpt", "value": "a"}]},
        {"input_image": "a.jpg", "conversations": [{"from": "human", "value": "<image> <image> q"},
                                                   {"from": "gpt", "value": "a"}]},
        {"input_image": "a.jpg", "conversations": [{"from": "gpt", "value": "a"},
                                                   {"from": "human", "value": "<image> q"}]},
        {"input_image": "a.jpg", "conversations": [{"from": "robot", "value": 3}]},
        {"input_image": "a.jpg"},
    ])
    generation = tmp_path / "gen.jsonl"
    generation.write_text(
        '{"output_image": "ok.jpg", "image_captions": "", "conversations": [{"from": "human", "value": "x"}, '
        '{"from": "gpt", "value": "<image>"}]}\n'
        'not json\n'
        '{"output_image": "ok.jpg", "image_captions": "c", "conversations": [{"from": "human", "value": "x"}, '
        '{"from": "gpt", "value": "<output:image> <output:image>"}]}\n')
    dialogues = write_jsonl(tmp_path / "own.jsonl", [
        {"turns": [{"role": "user", "text": "hi", "inputs": [{"modality": "smell", "path": "ok.jpg"}]},
                   {"role": "assistant", "text": "ok"}]},
        {"turns": [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "x [IMG0]"}]},
    ])
    problems = [str(p) for p in validate([comprehension, generation, dialogues], tmp_path)]
    c, g, d = comprehension, generation, dialogues
    assert problems == [
        f"{c}:15:input_image: missing media file {tmp_path / 'gone.jpg'}",
        f"{c}:28:conversations[0].value: 2 <image> placeholder(s) but 1 image item(s) attached",
        f"{c}:41:conversations[0].from: role 'assistant' cannot come first; expected system or user",
        f"{c}:41:conversations[1]: the dialogue ends with a user turn (dropped in training: it has no answer)",
        f"{c}:54:conversations[0].value: expected str, got int",
        f"{c}:54:conversations[0].from: unknown speaker 'robot'; use one of "
        "['assistant', 'gpt', 'human', 'system', 'tool', 'user']",
        f"{c}:63:conversations: missing field",
        f"{g}:1:image_captions: empty caption of the image output",
        f"{g}:2:json: not valid JSON (Expecting value at column 1); a .jsonl file holds one JSON object per line",
        f"{g}:3:conversations[1].value: 2 <output:image> marker(s) but 1 image output(s)",
        f"{d}:1:turns[0].inputs[0]: unknown modality 'smell'; known: ['image', 'video', 'audio']",
        f"{d}:2:turns[1].text: raw signal tokens like [IMG0] in the text; write <output:MODALITY> instead",
    ]
    with pytest.raises(DatasetError) as caught:
        load_dialogues([comprehension, generation])
    assert len(caught.value.problems) == 4  # structural only: value type, speaker, missing field, json


def test_read_records_reports_broken_array_and_missing_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[\n {"a": 1},\n {"b": 2\n]\n')
    items = list(read_records(broken))
    assert items[0].source == f"{broken}:2" and str(items[1]).startswith(f"{broken}:4:json: not valid JSON")
    assert [str(p) for p in read_records(tmp_path / "none.json")] == [f"{tmp_path / 'none.json'}:0:file: no such file"]


def test_iter_loaded_keeps_field_names(tmp_path):
    data = write_json(tmp_path / "pairs.json", [PAIRS["audio"]])
    (loaded,) = list(iter_loaded([data]))
    item = loaded.dialogue.turns[0].inputs[0]
    assert loaded.format == "pairs" and loaded.item_fields[id(item)] == "audio_name"


def test_llava_style_image_key_and_text_only_instructions(tmp_path):
    data = write_json(tmp_path / "llava.json", [
        {"id": "l1", "image": "coco/1.jpg", "conversations": [{"from": "human", "value": "What is this?\n<image>"},
                                                              {"from": "gpt", "value": "A bus."}]},
        {"id": "l2", "conversations": [{"from": "human", "value": "Say hi"}, {"from": "gpt", "value": "hi"}]}])
    first, second = load_dialogues([data])
    assert first.turns[0].inputs == [MediaRef("image", str(tmp_path / "coco/1.jpg"))]
    assert second.turns[0].inputs == [] and second.id == "l2"


def test_mosit_problems_name_the_list_entries(tmp_path):
    media(tmp_path, "a.jpg", "b.jpg")
    data = write_json(tmp_path / "mosit.json", [{
        "image_list": [{"image_name": "a.jpg", "data_source": "x", "caption": "a"},
                       {"image_name": "b.jpg", "data_source": "x", "caption": "b"}],
        "conversation": [{"from": "human", "value": "look <image> and <Video>a clip</Video>"},
                         {"from": "gpt", "value": "nice"}]}])
    problems = [str(p) for p in validate([data])]
    assert problems == [f"{data}:2:conversation[0].value: '<Video>a clip</Video>' has no video_list entry left",
                        f"{data}:2:image_list[1]: not referenced by any <Image> tag in the conversation"]


def test_a_json_file_may_hold_one_object(tmp_path):
    data = tmp_path / "one.json"
    data.write_text('\n{\n  "caption": "a", "id": "1",\n  "image_name": "1.jpg"\n}\n')
    assert [d.source for d in load_dialogues([data])] == [f"{data}:2"]


def test_alpaca_text_only(tmp_path):
    data = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Add", "input": "2 + 2", "output": "4"}, {"instruction": "Greet", "input": "", "output": "hi"}])
    first, second = load_dialogues([data])
    assert first.turns == [Turn("user", "Add\n2 + 2"), Turn("assistant", "4")]
    assert second.turns[0].text == "Greet" and second.source == f"{data}:2"
