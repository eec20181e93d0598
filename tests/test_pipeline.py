"""End-to-end contracts of the Python API on the tiny preset (random weights, CPU, offline)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from PIL import Image

from nextgpt import GenerationOptions, Message, NextGPT
from nextgpt.encoders.media import MediaError
from nextgpt.events import DecodeProgress, Finished, MediaReady, MediaStarted, TextDelta
from nextgpt.types import Media

OUTPUTS = ["image", "audio", "video"]
INPUTS = ["text", "image", "audio", "video"]


def request(media_files, modality: str) -> Message:
    if modality == "text":
        return Message.user("tell me something")
    return Message.user(f"what is in this <{modality}>?", media=[Media(modality, media_files[modality])])


def check_file(item):
    assert item.path is not None and item.path.is_file()
    if item.modality == "image":
        assert Image.open(item.path).size == (item.data.shape[1], item.data.shape[0])
    elif item.modality == "audio":
        data, rate = soundfile.read(item.path)
        assert rate == item.rate and len(data) == len(item.data)
    else:
        import av

        with av.open(str(item.path)) as container:
            assert sum(1 for _ in container.decode(video=0)) == item.data.shape[0]


@pytest.mark.parametrize("source", INPUTS)
@pytest.mark.parametrize("target", ["text"] + OUTPUTS)
def test_every_input_to_every_output(tiny_pipe, media_files, tmp_path, source, target):
    force = set() if target == "text" else {target}
    forbid = set(OUTPUTS) - force
    response = tiny_pipe.chat([request(media_files, source)],
                              GenerationOptions(force=force, forbid=forbid, max_new_tokens=6, output_dir=tmp_path))
    assert [m.modality for m in response.media] == ([] if target == "text" else [target])
    assert "[IMG" not in response.text and "<media>" not in response.text
    for item in response.media:
        check_file(item)
    if source != "text":
        assert response.prompt_tokens > 0


def test_several_media_outputs_in_one_answer(tiny_pipe, tmp_path):
    response = tiny_pipe.chat("everything please", force={"image", "audio"}, max_new_tokens=4, output_dir=tmp_path)
    assert sorted(m.modality for m in response.media) == ["audio", "image"]
    assert response.raw_text.count("[IMG0]") == 1 and response.raw_text.count("[AUD0]") == 1


def test_decode_false_plans_the_outputs_without_running_the_decoders(tiny_pipe, tmp_path, monkeypatch):
    made = tiny_pipe.chat("everything please", force={"image", "audio"}, max_new_tokens=6, output_dir=None)
    for decoder in tiny_pipe.decoders.values():
        monkeypatch.setattr(decoder, "generate", lambda *a, **k: pytest.fail("a decoder ran with decode=False"))
    planned = tiny_pipe.chat("everything please", force={"image", "audio"}, max_new_tokens=6, output_dir=tmp_path,
                             decode=False)
    assert planned.raw_text == made.raw_text  # the same answer, the same outputs in the same order
    assert [m.modality for m in planned.media] == [m.modality for m in made.media] and planned.media
    assert all(m.data.size == 0 and m.path is None for m in planned.media) and not list(tmp_path.iterdir())
    assert [m.seed for m in planned.media] == [m.seed for m in made.media]


def test_forbid_and_force_are_validated(tiny_pipe):
    with pytest.raises(ValueError, match="both forced and forbidden"):
        GenerationOptions(force={"image"}, forbid={"image"})
    with pytest.raises(ValueError, match="cannot generate"):
        tiny_pipe.chat("hi", force={"smell"})


def test_seed_reproduces_media_and_another_seed_changes_it(tiny_pipe):
    options = dict(force={"image"}, max_new_tokens=3, output_dir=None)
    a = tiny_pipe.chat("a picture", seed=7, **options).media[0]
    b = tiny_pipe.chat("a picture", seed=7, **options).media[0]
    c = tiny_pipe.chat("a picture", seed=8, **options).media[0]
    assert a.seed == b.seed == 7 and np.array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)


def test_batch_equals_one_by_one(tiny_pipe, media_files):
    conversations = [[request(media_files, "image")], [Message.user("a much longer request that pads the other")]]
    options = [GenerationOptions(force={"image"}, max_new_tokens=5, seed=1, output_dir=None),
               GenerationOptions(force={"audio"}, max_new_tokens=7, seed=2, output_dir=None)]
    batched = tiny_pipe.chat_batch(conversations, options)
    for conversation, option, together in zip(conversations, options, batched):
        alone = tiny_pipe.chat(conversation, option)
        assert alone.text == together.text and alone.raw_text == together.raw_text
        assert len(alone.media) == len(together.media) == 1
        np.testing.assert_allclose(alone.media[0].data.astype(float), together.media[0].data.astype(float), atol=2)


def test_stream_yields_text_progress_and_media(tiny_pipe, tmp_path):
    events = list(tiny_pipe.stream("show me", GenerationOptions(force={"image"}, max_new_tokens=8, output_dir=tmp_path)))
    final = events[-1]
    assert isinstance(final, Finished)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == final.response.text
    kinds = [type(e) for e in events]
    assert kinds.index(MediaStarted) < kinds.index(DecodeProgress) < kinds.index(MediaReady)
    steps = [e for e in events if isinstance(e, DecodeProgress)]
    assert steps[-1].step == steps[-1].total
    assert [e.media.path for e in events if isinstance(e, MediaReady)] == [m.path for m in final.response.media]


def test_closing_a_stream_cancels_generation(tiny_pipe):
    stream = tiny_pipe.stream("talk a lot", GenerationOptions(max_new_tokens=500, forbid=set(OUTPUTS)))
    next(stream)
    stream.close()  # joins the worker: returns only once the generation stopped
    response = tiny_pipe.chat("again", max_new_tokens=2, forbid=set(OUTPUTS))
    assert response.completion_tokens <= 2


def test_conversation_feeds_generated_media_back_in(tiny_pipe, tmp_path):
    conversation = tiny_pipe.conversation(options=GenerationOptions(max_new_tokens=4, output_dir=tmp_path))
    first = conversation.say("draw", force={"image"})
    assert first.media and first.media[0].path.is_file()
    second = conversation.say("now describe it", media=[first.media[0].as_input()], forbid=set(OUTPUTS))
    assert second.prompt_tokens > first.prompt_tokens
    assert "[IMG0][IMG1][IMG2][IMG3]" in conversation.messages[1].text
    conversation.undo()
    assert len(conversation.messages) == 2


def test_partial_signal_sequence_in_history_is_repaired_not_fatal(tiny_pipe):
    history = [Message.user("draw"), Message("assistant", "here [IMG0][IMG1]"), Message.user("again")]
    response = tiny_pipe.chat(history, max_new_tokens=2, forbid=set(OUTPUTS))
    assert any("partial image signal sequence" in w for w in response.warnings)


def test_user_text_cannot_inject_reserved_tokens(tiny_pipe):
    response = tiny_pipe.chat("sneaky <media> [IMG0][IMG1][IMG2][IMG3]", max_new_tokens=2, forbid=set(OUTPUTS))
    assert response.media == []


def test_placeholder_count_must_match_attached_media(tiny_pipe, media_files):
    message = Message.user("<image> and <image>", media=[Media("image", media_files["image"])])
    with pytest.raises(ValueError, match="2 <image> placeholder.*1 image item"):
        tiny_pipe.chat([message])


@pytest.mark.parametrize("modality,content", [("image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20), ("audio", b"RIFFjunk"),
                                              ("video", b"not a video at all")])
def test_corrupt_media_gives_a_clear_error(tiny_pipe, tmp_path, modality, content):
    path = tmp_path / f"bad.{ {'image': 'png', 'audio': 'wav', 'video': 'mp4'}[modality] }"
    path.write_bytes(content)
    with pytest.raises(MediaError, match="bad"):
        tiny_pipe.chat([Message.user("look", media=[Media(modality, path)])])


def test_oversize_prompt_is_refused_with_the_limit(tiny_pipe):
    with pytest.raises(ValueError, match="max_prompt_chars"):
        tiny_pipe.chat("x" * (tiny_pipe.config.encoder.limits.max_prompt_chars + 1))
    with pytest.raises(ValueError, match="context of 2048 tokens"):
        tiny_pipe.chat("hello", max_new_tokens=5000)


def test_decoders_are_built_once_and_kept(tiny_pipe):
    tiny_pipe.chat("x", force={"image"}, max_new_tokens=2, output_dir=None)
    pipeline = tiny_pipe.decoders["image"].pipeline
    tiny_pipe.chat("y", force={"image"}, max_new_tokens=2, output_dir=None)
    assert tiny_pipe.decoders["image"].pipeline is pipeline


def test_save_load_gives_identical_outputs(tiny_pipe, tmp_path, media_files):
    folder = tiny_pipe.save_pretrained(tmp_path / "ckpt")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    loaded = NextGPT.from_pretrained(folder)
    options = GenerationOptions(force={"image", "audio"}, max_new_tokens=5, seed=3, output_dir=None)
    message = [request(media_files, "audio")]
    a, b = tiny_pipe.chat(message, options), loaded.chat(message, options)
    assert a.raw_text == b.raw_text
    for x, y in zip(a.media, b.media):
        # Equal weights; loaded tensors may take other CPU kernel paths, so allow float32 rounding only:
        # one level where it is quantised to uint8 (image/video), 1e-4 of the range for float audio.
        scale = float(np.abs(x.data.astype(np.float64)).max()) or 1.0
        tolerance = 1.0 if x.data.dtype == np.uint8 else 1e-4 * scale
        np.testing.assert_allclose(x.data.astype(np.float64), y.data.astype(np.float64), rtol=0, atol=tolerance)
    # a second save of the loaded checkpoint (components now live inside a folder) round-trips too
    again = NextGPT.from_pretrained(loaded.save_pretrained(tmp_path / "ckpt2"))
    assert again.chat(message, options).raw_text == a.raw_text


def test_save_load_keeps_the_llm_base_weights_under_lora(tmp_path):
    """A LoRA'd LLM that lives in the checkpoint is saved without adapters under the plain names: loading gives
    the same base weights, adapters and logits (saved with peft's names, they were re-initialised at random)."""
    import torch

    from nextgpt.config import LoRAConfig
    from nextgpt.model import apply_lora

    pipe = NextGPT.from_preset("tiny")
    lora = LoRAConfig(r=2, alpha=4, dropout=0.0, target_modules=["q_proj", "v_proj"])
    pipe.model.llm = apply_lora(pipe.model.llm, lora)
    pipe.config.lora = lora
    with torch.no_grad():
        for name, parameter in pipe.model.llm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    loaded = NextGPT.from_pretrained(pipe.save_pretrained(tmp_path / "ckpt"))
    before, after = pipe.model.llm.state_dict(), loaded.model.llm.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.equal(pipe.model.llm(input_ids=ids).logits, loaded.model.llm(input_ids=ids).logits)


def test_saved_checkpoint_files_are_readable_by_others(tiny_pipe, tmp_path):
    """Atomic writes go through mkstemp/mkdtemp (owner-only); the result must be a normal folder and files
    (a checkpoint installed as package data or shared on a cluster is read by other users)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        folder = tiny_pipe.save_pretrained(tmp_path / "ckpt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    for path in folder.rglob("*"):  # ours, and the llm/ and decoders/ files transformers and diffusers write
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path


def test_in_memory_audio_and_video_with_their_rate_are_inputs(tiny_pipe):
    """``Media(modality, array, rate)`` — as documented, and as ``MediaOutput.as_input()`` builds for an output that
    was not saved — reaches the encoder as an ``(array, rate)`` pair (the array alone was refused)."""
    from nextgpt.types import MediaOutput

    options = GenerationOptions(max_new_tokens=3, output_dir=None, forbid={"image", "audio", "video"})
    wave = (0.3 * np.sin(np.linspace(0, 440 * 2 * np.pi, 16000))).astype(np.float32)
    frames = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    for media in (Media("audio", wave, 16000), Media("video", frames, 8),
                  MediaOutput("audio", wave, rate=16000).as_input()):
        response = tiny_pipe.chat([Message.user("what is this?", media=[media])], options)
        assert response.finish_reason in ("stop", "length")


def test_a_prompt_past_the_context_is_refused_before_generating(tiny_pipe):
    from nextgpt.pipeline import ContextOverflow

    context = tiny_pipe.model.llm.config.max_position_embeddings
    with pytest.raises(ContextOverflow, match=rf"\+ max_new_tokens \({context}\) exceed the model's context of {context}"):
        tiny_pipe.chat("hello", GenerationOptions(max_new_tokens=context, output_dir=None))
    assert issubclass(ContextOverflow, ValueError)  # callers that catch bad input as ValueError still do
