"""Decoder contracts, parametrized over the registered kinds, with tiny offline components (2 denoising steps)."""
from __future__ import annotations

import filecmp
import socket

import av
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from nextgpt.config import DecoderConfig
from nextgpt.decoders import (
    AudioLDMDecoder,
    DecodedMedia,
    Decoder,
    StableDiffusionDecoder,
    TextToVideoDecoder,
    build_components,
    build_decoder,
    count_parameters,
    write_media,
)
from nextgpt.decoders.architectures import STABLE_DIFFUSION_V1_5, ZEROSCOPE_V2_576W
from nextgpt.decoders.media_io import write_video
from nextgpt.decoders.tokenizers import build_tokenizer, builtin_tokenizer_dir, train_tiny_roberta_tokenizer
from nextgpt.registry import DECODERS

KINDS = {
    "stable-diffusion": ("image", StableDiffusionDecoder),
    "audioldm": ("audio", AudioLDMDecoder),
    "text-to-video": ("video", TextToVideoDecoder),
}
CAPTIONS = ["a dog barks in the park", "rain falls on a tin roof"]


def make_decoder(kind: str, **kwargs) -> Decoder:
    modality, cls = KINDS[kind]
    return build_decoder(modality, cls.tiny_config(), allow_random_init=True, **kwargs)


def assert_media_close(a: DecodedMedia, b: DecodedMedia) -> None:
    assert a.data.shape == b.data.shape and a.rate == b.rate
    if a.data.dtype == np.uint8:  # one rounding step of difference is allowed between batched and single runs
        assert np.abs(a.data.astype(int) - b.data.astype(int)).max() <= 1
    else:
        np.testing.assert_allclose(a.data, b.data, atol=1e-5)


@pytest.fixture(scope="module", params=list(KINDS))
def decoder(request) -> Decoder:
    return make_decoder(request.param)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a decoder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- registry and construction -------------------------------------------------------------------------
def test_registry_holds_the_three_kinds():
    assert set(KINDS) <= set(DECODERS.names())
    for kind, (_, cls) in KINDS.items():
        assert DECODERS.get(kind) is cls
        assert cls.tiny_config().kind == cls.real_config().kind == kind
    with pytest.raises(KeyError, match="unknown decoder 'sdxl'.*stable-diffusion"):
        build_decoder("image", DecoderConfig(kind="sdxl", condition_tokens=1, condition_dim=1))


@pytest.mark.parametrize("kind", list(KINDS))
def test_tiny_builds_offline_small_and_seeded(kind, no_network):
    rng_state = torch.get_rng_state()
    first, second, other = make_decoder(kind), make_decoder(kind), make_decoder(kind, seed=1)
    counts = first.num_parameters()
    assert 0 < sum(counts.values()) < 3_000_000, counts
    assert torch.equal(rng_state, torch.get_rng_state()), "building must not consume the caller's RNG"
    text = first.encode_text(["a cat"])
    assert torch.equal(text, second.encode_text(["a cat"]))
    assert not torch.equal(text, other.encode_text(["a cat"]))


def test_random_init_needs_permission():
    decoder = build_decoder("image", StableDiffusionDecoder.tiny_config())
    with pytest.raises(ValueError, match="allow_random_init=True"):
        decoder.encode_text(["a cat"])
    assert not decoder.loaded


@pytest.mark.parametrize("path", ["./no/such/pipeline", "/definitely/missing/pipeline"])
def test_missing_path_names_the_path(path, tmp_path):
    config = StableDiffusionDecoder.tiny_config().model_copy(update={"path": path})
    decoder = build_decoder("image", config, base_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=path.strip("./")):
        decoder.pipeline


def test_folder_without_model_index_is_refused(tmp_path):
    (tmp_path / "weights").mkdir()
    config = StableDiffusionDecoder.tiny_config().model_copy(update={"path": "weights"})
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        build_decoder("image", config, base_dir=tmp_path).pipeline


def test_save_pretrained_folder_loads_offline_with_relative_path(decoder, tmp_path, no_network):
    decoder.pipeline.save_pretrained(tmp_path / "pipeline")
    config = decoder.config.model_copy(update={"path": "pipeline"})
    loaded = build_decoder(decoder.modality, config, base_dir=tmp_path)
    assert torch.equal(loaded.encode_text(CAPTIONS), decoder.encode_text(CAPTIONS))
    a = loaded.generate(decoder.encode_text(CAPTIONS[:1]), generator=generator(0), progress=False)
    b = decoder.generate(decoder.encode_text(CAPTIONS[:1]), generator=generator(0), progress=False)
    np.testing.assert_array_equal(a[0].data, b[0].data)


# ---- conditioning ----------------------------------------------------------------------------------------
def test_encode_text_shape(decoder):
    embeddings = decoder.encode_text(CAPTIONS)
    assert embeddings.shape == (2, decoder.config.condition_tokens, decoder.config.condition_dim)
    assert not embeddings.requires_grad
    if isinstance(decoder, AudioLDMDecoder):  # CLAP projection, L2-normalised
        torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2, 1))
    assert decoder.negative_embedding().shape == (1, *embeddings.shape[1:])


def test_condition_tokens_are_configurable():
    config = StableDiffusionDecoder.tiny_config(condition_tokens=16)
    decoder = build_decoder("image", config, allow_random_init=True)
    embeddings = decoder.encode_text(["a photo of a cat"])
    assert embeddings.shape == (1, 16, 32)
    assert decoder.generate(embeddings, generator=generator(0), progress=False)[0].data.shape == (32, 32, 3)


def test_prompt_embeds_reproduce_the_pipelines_own_prompt_path(decoder):
    call, media = decoder.split_options()
    for captions in (CAPTIONS[:1], CAPTIONS):
        output = decoder.pipeline(prompt=captions, generator=generator(3), output_type="np", **call)
        expected = decoder.to_media(output, **media)
        got = decoder.generate(decoder.encode_text(captions), generator=generator(3), progress=False)
        assert len(got) == len(captions)
        if len(captions) == 1:  # same batch shapes → bit-identical
            np.testing.assert_array_equal(got[0].data, expected[0].data)
        else:  # the cached negative is encoded at batch 1, the pipeline's at batch 2: float rounding may differ
            for a, b in zip(got, expected):
                assert_media_close(a, b)


# ---- generation ----------------------------------------------------------------------------------------
def test_media_shapes_and_rates(decoder):
    media = decoder.generate(decoder.encode_text(CAPTIONS), generator=generator(0), progress=False)
    assert [m.modality for m in media] == [decoder.modality] * 2
    defaults = decoder.config.defaults
    if decoder.modality == "image":
        assert media[0].data.shape == (defaults["height"], defaults["width"], 3) and media[0].data.dtype == np.uint8
    elif decoder.modality == "video":
        assert media[0].data.shape == (defaults["num_frames"], defaults["height"], defaults["width"], 3)
        assert media[0].data.dtype == np.uint8 and media[0].rate == defaults["fps"]
    else:
        assert media[0].rate == 16000 and media[0].data.dtype == np.float32
        assert media[0].data.shape == (int(defaults["audio_length_in_s"] * 16000),)


def test_same_seed_same_media_other_seed_other_media(decoder):
    conditions = decoder.encode_text(CAPTIONS[:1])
    a, b, c = (decoder.generate(conditions, generator=generator(s), progress=False)[0] for s in (7, 7, 8))
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)


def test_batch_with_generator_list_equals_one_by_one(decoder):
    conditions = decoder.encode_text(CAPTIONS)
    batch = decoder.generate(conditions, generator=[generator(1), generator(2)], progress=False)
    singles = [decoder.generate(conditions[i : i + 1], generator=generator(i + 1), progress=False)[0] for i in (0, 1)]
    for a, b in zip(batch, singles):
        assert_media_close(a, b)


def test_projector_like_conditions_are_accepted(decoder):
    torch.manual_seed(0)  # raw projector output: any scale, not normalised
    conditions = 3 * torch.randn(1, decoder.config.condition_tokens, decoder.config.condition_dim)
    assert len(decoder.generate(conditions, generator=generator(0), progress=False)) == 1


def test_audio_conditions_are_squeezed_and_normalised():
    decoder = make_decoder("audioldm")
    text = decoder.encode_text(CAPTIONS[:1])  # [1, 1, D], unit length
    prepared = decoder.prepare_conditions(3 * text)
    assert prepared.shape == (1, decoder.config.condition_dim)
    torch.testing.assert_close(prepared, text[:, 0])
    scaled = decoder.generate(3 * text, generator=generator(0), progress=False)[0]
    assert_media_close(scaled, decoder.generate(text, generator=generator(0), progress=False)[0])


@pytest.mark.parametrize("kind", list(KINDS))
def test_pipeline_is_built_once_and_kept(kind, monkeypatch):
    decoder = make_decoder(kind)
    builds = []
    original = type(decoder).build_pipeline
    monkeypatch.setattr(type(decoder), "build_pipeline", lambda self: builds.append(1) or original(self))
    assert not decoder.loaded
    conditions = decoder.encode_text(CAPTIONS[:1])
    pipeline = decoder.pipeline
    decoder.generate(conditions, generator=generator(0), progress=False)
    decoder.generate(conditions, generator=generator(1), progress=False)
    assert builds == [1] and decoder.pipeline is pipeline
    negative = decoder.negative_embedding()
    assert decoder.to("cpu") is decoder and decoder.pipeline is pipeline
    assert torch.equal(decoder.negative_embedding(), negative) and builds == [1]
    decoder.unload()
    assert not decoder.loaded


def test_step_callback_sees_every_step(decoder):
    calls = []
    decoder.generate(
        decoder.encode_text(CAPTIONS[:1]), generator=generator(0), progress=False, callback=lambda *a: calls.append(a)
    )
    # one call per UNet step: DDIM runs num_inference_steps, PNDM (SD) one more
    total = len(decoder.pipeline.scheduler.timesteps)
    assert total >= decoder.config.defaults["num_inference_steps"]
    assert calls == [(step, total) for step in range(1, total + 1)]


def test_generate_validates_its_inputs(decoder):
    q, d = decoder.config.condition_tokens, decoder.config.condition_dim
    with pytest.raises(ValueError, match=rf"\[B, {q}, {d}\].*\(1, {q}, {d + 1}\)"):
        decoder.generate(torch.zeros(1, q, d + 1))
    with pytest.raises(ValueError, match="3 generators for a batch of 2"):
        decoder.generate(torch.zeros(2, q, d), generator=[generator(0)] * 3)
    with pytest.raises(TypeError, match="unknown generation option.*'steps'.*num_inference_steps"):
        decoder.generate(torch.zeros(1, q, d), steps=3)
    with pytest.raises(ValueError, match="output_type"):
        decoder.generate(torch.zeros(1, q, d), output_type="pil")
    with pytest.raises(ValueError, match="non-empty list of strings"):
        decoder.encode_text([])


# ---- saving ----------------------------------------------------------------------------------------------
def test_saved_files_are_valid(decoder, tmp_path):
    media = decoder.generate(decoder.encode_text(CAPTIONS[:1]), generator=generator(0), progress=False)[0]
    path = decoder.save(media, tmp_path / "out")
    assert path.suffix == decoder.file_extension and path.stat().st_size > 0
    defaults = decoder.config.defaults
    if decoder.modality == "image":
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert image.size == (defaults["width"], defaults["height"])
            np.testing.assert_array_equal(np.asarray(image), media.data)
    elif decoder.modality == "audio":
        info = soundfile.info(path)
        assert (info.samplerate, info.subtype, info.frames) == (16000, "PCM_16", media.data.shape[0])
        samples, _ = soundfile.read(path, dtype="float32")
        np.testing.assert_allclose(samples, np.clip(media.data, -1, 1), atol=1 / 2**15 + 1e-6)
    else:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
            assert stream.width % 2 == 0 and stream.height % 2 == 0 and min(stream.width, stream.height) >= 64
            assert float(stream.average_rate) == defaults["fps"]
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(frames) == defaults["num_frames"]
    with pytest.raises(ValueError, match=f"writes \\{decoder.file_extension} files"):
        decoder.save(media, tmp_path / "out.bin")


def test_video_writer_makes_small_and_odd_frames_playable(tmp_path):
    smooth = np.linspace(0, 255, 33, dtype=np.uint8)
    frames = np.broadcast_to(smooth[None, None, :, None], (3, 21, 33, 3)).copy()  # odd 21×33
    path = write_video(frames, 8, tmp_path / "odd.mp4")
    assert path.read_bytes()[4:8] == b"ftyp" and b"moov" in path.read_bytes()[:200]  # faststart: index first
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 3 and decoded[0].shape == (84, 132, 3)  # ×4 up to ≥ 64 px, already even
    # nearest-neighbour ×4 enlargement: the decoded frame matches the enlarged source closely
    enlarged = frames[0].repeat(4, axis=0).repeat(4, axis=1)
    assert np.abs(decoded[0].astype(int) - enlarged.astype(int)).mean() < 4


def test_write_media_dispatches_on_extension(tmp_path):
    image = DecodedMedia("image", np.zeros((8, 8, 3), np.uint8))
    assert write_media(image, tmp_path / "a.png").is_file()
    with pytest.raises(ValueError, match=r"supported extensions are \['.mp4', '.png', '.wav'\]"):
        write_media(image, tmp_path / "a.gif")
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        write_media(DecodedMedia("image", np.zeros((8, 8), np.uint8)), tmp_path / "b.png")
    with pytest.raises(ValueError, match="positive sample rate"):
        write_media(DecodedMedia("audio", np.zeros(10, np.float32)), tmp_path / "a.wav")


# ---- tokenizers ------------------------------------------------------------------------------------------
def test_real_clip_tokenizers_match_clip_ids(no_network):
    sd = build_tokenizer(STABLE_DIFFUSION_V1_5["tokenizer"]["tokenizer"])
    video = build_tokenizer(ZEROSCOPE_V2_576W["tokenizer"]["tokenizer"])
    assert len(sd) == 49408
    assert sd("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    padded = sd("a cat", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[:4] == [49406, 320, 2368, 49407] and set(padded[4:]) == {49407}
    assert video("a cat", padding="max_length", max_length=77).input_ids[4:] == [0] * 73  # "!" padding


def test_shipped_tiny_roberta_is_reproducible(tmp_path):
    shipped = builtin_tokenizer_dir("tiny-roberta")
    fresh = train_tiny_roberta_tokenizer(tmp_path)
    for name in ("vocab.json", "merges.txt"):
        assert filecmp.cmp(shipped / name, fresh / name, shallow=False), name
    with pytest.raises(FileNotFoundError, match="tiny-roberta"):
        builtin_tokenizer_dir("missing")


# ---- real presets on the meta device ---------------------------------------------------------------------
REAL_COUNTS = {
    "stable-diffusion": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "text-to-video": {"unet": 1_411_233_860, "vae": 83_653_863, "text_encoder": 340_387_840},
    "audioldm": {"unet": 739_139_080, "vae": 55_376_873, "text_encoder": 125_302_016, "vocoder": 55_264_897},
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_real_configs_instantiate_on_meta(kind, no_network):
    modality, cls = KINDS[kind]
    config = cls.real_config()
    components = build_components(config.architecture, device="meta", tokenizers=False)
    assert count_parameters(components) == REAL_COUNTS[kind]
    assert all(p.is_meta for p in components["unet"].parameters())
    # the condition shape is the one the real text encoder produces and the UNet consumes
    text = components["text_encoder"].config
    if kind == "audioldm":
        assert (config.condition_tokens, config.condition_dim) == (1, text.projection_dim) == (1, 512)
        assert components["unet"].config.projection_class_embeddings_input_dim == 512
        assert components["vocoder"].config.sampling_rate == 16000
    else:
        assert config.condition_dim == text.hidden_size == components["unet"].config.cross_attention_dim
        assert config.condition_tokens == text.max_position_embeddings == 77
    # the same through a Decoder: built on meta when no weights are named
    decoder = build_decoder(modality, config.model_copy(update={"path": None}), allow_random_init=True, device="meta")
    assert decoder.num_parameters() == REAL_COUNTS[kind]


def test_real_defaults_follow_nextgpt():
    image, video, audio = (KINDS[k][1].real_config() for k in ("stable-diffusion", "text-to-video", "audioldm"))
    assert (image.path, image.condition_tokens, image.condition_dim) == ("runwayml/stable-diffusion-v1-5", 77, 768)
    assert (video.path, video.condition_tokens, video.condition_dim) == ("cerspense/zeroscope_v2_576w", 77, 1024)
    assert (audio.path, audio.condition_tokens, audio.condition_dim) == ("cvssp/audioldm-l-full", 1, 512)
    for config in (image, video, audio):
        assert config.defaults["num_inference_steps"] == 50 and config.defaults["guidance_scale"] == 7.5
    assert {k: video.defaults[k] for k in ("height", "width", "num_frames", "fps")} == {
        "height": 320, "width": 576, "num_frames": 24, "fps": 8,
    }
    assert 5 <= audio.defaults["audio_length_in_s"] <= 9
    DecoderConfig.model_validate_json(image.model_dump_json())  # JSON-safe: saved in config.json


_WRITE_CLIPS = """
import sys, numpy as np
from nextgpt.decoders.media_io import write_video
rng = np.random.default_rng(0)
for i in range(int(sys.argv[2])):
    write_video((rng.random((8, 32, 32, 3)) > 0.97).astype(np.uint8) * 255, 8, f"{sys.argv[1]}/{i}.mp4")
"""


def test_video_writer_bytes_are_the_same_in_every_process(tmp_path):
    """The toy world's data (and features cached by file hash) must come out byte-identical from a seed: the same
    frames written by two processes give the same files (encode()'s implicit pixel conversion did not, for a few
    percent of clips)."""
    import subprocess
    import sys

    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
        subprocess.run([sys.executable, "-c", _WRITE_CLIPS, str(folder), "60"], check=True)
    differing = [p.name for p in folders[0].iterdir() if p.read_bytes() != (folders[1] / p.name).read_bytes()]
    assert not differing, f"{len(differing)} of 60 clips differ between two processes: {sorted(differing)[:5]}"
