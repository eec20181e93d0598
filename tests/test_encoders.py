"""The ImageBind encoder: tiny random model on every modality, fidelity to ImageBind's own code, weights I/O."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from test_media import write_video, write_wav

from nextgpt.config import EncoderConfig, MediaLimits
from nextgpt.encoders import (
    HUGE_ARCHITECTURE,
    TINY_ARCHITECTURE,
    ImageBindEncoder,
    MediaEncoder,
    MediaError,
    build_encoder,
    huge_config,
    tiny_config,
)
from nextgpt.encoders._imagebind_shims import import_imagebind
from nextgpt.encoders.imagebind import convert_pickle_checkpoint
from nextgpt.registry import ENCODERS

IMAGEBIND_HUGE_PARAMETERS = 1_200_781_057  # measured: ImageBindModel(**HUGE_ARCHITECTURE), all six towers
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def encoder() -> MediaEncoder:
    return build_encoder(tiny_config(), allow_random_init=True, seed=0)


def make_items(modality: str, tmp_path: Path) -> list:
    """Three items of ``modality`` in different input forms."""
    if modality == "image":
        path = tmp_path / "image.png"
        Image.fromarray(RNG.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(path)
        return [path, Image.fromarray(RNG.integers(0, 256, (300, 200, 3), dtype=np.uint8)),
                RNG.integers(0, 256, (224, 224, 3), dtype=np.uint8)]
    if modality == "audio":
        return [write_wav(tmp_path / "audio.wav", seconds=2.5, rate=22_050, channels=2),
                (0.1 * RNG.standard_normal(16_000 * 3).astype(np.float32), 16_000),
                (0.1 * RNG.standard_normal(4000).astype(np.float32), 8000)]
    if modality == "video":
        return [write_video(tmp_path / "video.mp4", frames=12, fps=6),
                RNG.integers(0, 256, (20, 48, 64, 3), dtype=np.uint8),
                (RNG.integers(0, 256, (5, 80, 60, 3), dtype=np.uint8), 2.0)]
    return ["a dog barking", "a photo of a cat".encode(), "ünïcode text " * 3]


MODALITIES = ["image", "audio", "video", "text"]


# ---- contract ------------------------------------------------------------------------------------------------
def test_registered_and_unknown_kind() -> None:
    assert ENCODERS.get("imagebind") is ImageBindEncoder
    bad = tiny_config().model_copy(update={"kind": "clap"})
    with pytest.raises(KeyError, match=r"unknown encoder 'clap'; available: \[.*'imagebind'.*\]"):
        build_encoder(bad, allow_random_init=True)


@pytest.mark.parametrize("modality", MODALITIES)
def test_unit_norm_embedding_per_item(encoder: MediaEncoder, modality: str, tmp_path: Path) -> None:
    items = make_items(modality, tmp_path)
    embeddings = encoder.encode(modality, items)
    assert embeddings.shape == (3, TINY_ARCHITECTURE["out_embed_dim"]) and encoder.embed_dim == 64
    assert embeddings.dtype == torch.float32 and torch.isfinite(embeddings).all()
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(embeddings[0], embeddings[1])
    # batched == one by one
    single = torch.cat([encoder.encode(modality, [item]) for item in items])
    assert torch.allclose(embeddings, single, atol=1e-5)


def test_frozen(encoder: MediaEncoder, tmp_path: Path) -> None:
    assert not any(p.requires_grad for p in encoder.parameters())
    parent = torch.nn.ModuleDict({"encoder": encoder}).train()
    assert not encoder.training and not any(m.training for m in encoder.modules())
    assert parent.training  # only the encoder refuses train mode
    embeddings = encoder.encode("image", make_items("image", tmp_path))
    assert not embeddings.requires_grad and embeddings.grad_fn is None
    assert encoder.encode("text", []).shape == (0, 64)
    with pytest.raises(KeyError, match=r"cannot encode 'depth'; it handles \('image', 'audio', 'video', 'text'\)"):
        encoder.encode("depth", ["x"])
    with pytest.raises(TypeError, match="wrap one item in a list"):
        encoder.encode("text", "a single string")


def test_same_media_in_different_forms(encoder: MediaEncoder, tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    forms = [tmp_path / "x.png", str(tmp_path / "x.png"), (tmp_path / "x.png").read_bytes(), Image.fromarray(pixels), pixels]
    embeddings = encoder.encode("image", forms)
    assert torch.allclose(embeddings, embeddings[:1].expand_as(embeddings), atol=1e-6)
    waveform = (0.1 * RNG.standard_normal(16_000)).astype(np.float32)
    import soundfile

    soundfile.write(tmp_path / "x.wav", waveform, 16_000, subtype="FLOAT")
    audio = encoder.encode("audio", [tmp_path / "x.wav", (waveform, 16_000)])
    assert torch.allclose(audio[0], audio[1], atol=1e-6)
    text = encoder.encode("text", ["héllo", "héllo".encode()])
    assert torch.equal(text[0], text[1])


def test_seeded_random_init_is_reproducible_and_leaves_global_rng_alone(encoder: MediaEncoder) -> None:
    state = torch.random.get_rng_state()
    again = build_encoder(tiny_config(), allow_random_init=True, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    other = build_encoder(tiny_config(), allow_random_init=True, seed=1)
    text = ["same text"]
    assert torch.equal(encoder.encode("text", text), again.encode("text", text))
    assert not torch.allclose(encoder.encode("text", text), other.encode("text", text))


# ---- preprocessing: shapes and fidelity to imagebind.data ----------------------------------------------------
def test_reference_preprocessing_shapes(tmp_path: Path) -> None:
    reference = build_encoder(tiny_config(**huge_config().options), allow_random_init=True)
    assert reference.options.audio_clips == 3 and reference.options.video_clips == 5
    assert reference.options.video_crops == 3
    shapes = {m: tuple(reference.preprocess(m, make_items(m, tmp_path)[:2]).shape) for m in MODALITIES}
    assert shapes == {
        "image": (2, 3, 224, 224),
        "audio": (2, 3, 1, 128, 204),
        "video": (2, 15, 3, 2, 224, 224),
        "text": (2, 77),
    }
    embeddings = reference.encode("video", make_items("video", tmp_path)[:2])
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_image_preprocessing_matches_imagebind(encoder: ImageBindEncoder, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(RNG.integers(0, 256, (180, 260, 3), dtype=np.uint8)).save(path)
    theirs = import_imagebind().data.load_and_transform_vision_data([str(path)], "cpu")
    assert torch.allclose(encoder.preprocess("image", [path]), theirs, atol=1e-6)


def test_text_tokens_match_imagebind(encoder: ImageBindEncoder) -> None:
    texts = ["A dog.", "two cats on a sofa, sleeping " * 20]  # the second is truncated to 77 tokens
    theirs = import_imagebind().data.load_and_transform_text(texts, "cpu")
    ours = encoder.preprocess("text", texts)
    assert ours.dtype == torch.long and torch.equal(ours, theirs)


def test_audio_preprocessing_matches_imagebind(tmp_path: Path) -> None:
    """Our melspec == imagebind.data.waveform2melspec, clips placed like load_and_transform_audio_data (which
    itself cannot run here: it calls torchaudio.load)."""
    ib = import_imagebind()
    encoder = build_encoder(tiny_config(audio_clips=3), allow_random_init=True)
    waveform = torch.from_numpy((0.1 * RNG.standard_normal(16_000 * 5)).astype(np.float32))[None]
    sampler = ib.clip_sampling.ConstantClipsPerVideoSampler(clip_duration=2, clips_per_video=3)
    clips = []
    for start, end in ib.data.get_clip_timepoints(sampler, waveform.shape[1] / 16_000):
        clip = waveform[:, int(start * 16_000) : int(end * 16_000)].clone()
        clips.append((ib.data.waveform2melspec(clip, 16_000, 128, 204) + 4.268) / 9.138)
    theirs = torch.stack(clips)[None]
    ours = encoder.preprocess("audio", [(waveform[0].numpy(), 16_000)])
    assert ours.shape == theirs.shape == (1, 3, 1, 128, 204)
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_video_clip_and_crop_sampling(tmp_path: Path) -> None:
    """5 clips × 2 frames at ImageBind's clip positions; each frame of a 20-frame video is filled with its index."""
    encoder = build_encoder(tiny_config(video_clips=5), allow_random_init=True)
    # duration 10 s, clip 2 s: starts 0, 1.6, 3.2, 4.8, 6.4 s at 2 fps → frames [0,4), [4,8), [7,11), [10,14), [13,17)
    assert encoder._select_video_frames(20, 10.0) == [0, 3, 4, 7, 7, 10, 10, 13, 13, 16]
    short = encoder._select_video_frames(3, 0.5)  # shorter than a clip: every clip is the whole video
    assert short == [0, 2] * 5
    frames = np.repeat(np.arange(20, dtype=np.uint8)[:, None, None, None] * 10, 224 * 224 * 3).reshape(20, 224, 224, 3)
    inputs = encoder.preprocess("video", [(frames, 2.0)])
    assert inputs.shape == (1, 5, 3, 2, 224, 224)
    mean, std = torch.tensor((0.48145466, 0.4578275, 0.40821073)), torch.tensor((0.26862954, 0.26130258, 0.27577711))
    red = inputs[0, :, 0, :, 0, 0] * std[0] + mean[0]  # [clips, 2] red values
    expected = torch.tensor([0, 3, 4, 7, 7, 10, 10, 13, 13, 16]).view(5, 2) * 10 / 255
    assert torch.allclose(red, expected, atol=1e-5)


def test_image_is_a_two_frame_video(encoder: ImageBindEncoder) -> None:
    """ImageBind's vision stem repeats an image to the 2 frames its (2, 14, 14) kernel needs: an image and a
    static video of it (already 224×224, so no resampling differs) give the same embedding."""
    pixels = RNG.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    image = encoder.encode("image", [pixels])
    video = encoder.encode("video", [np.stack([pixels] * 4)])
    assert torch.allclose(image, video, atol=1e-5)


def test_forward_matches_imagebind_model_without_logit_scales(tmp_path: Path) -> None:
    """Same weights in ``ImageBindModel``: vision equal; audio = 20 × ours; text = learned scale × ours (the
    postprocessors' logit scales, which we leave out); views averaged before our re-normalisation."""
    ib = import_imagebind()
    ours = build_encoder(tiny_config(audio_clips=3, renormalize=False), allow_random_init=True)
    model = ib.model.ImageBindModel(**TINY_ARCHITECTURE).eval()
    model.load_state_dict(ours.state_dict(), strict=True)
    items = {m: make_items(m, tmp_path)[:2] for m in ("image", "audio", "text")}
    with torch.no_grad():
        vision = model({"vision": ours.preprocess("image", items["image"])})["vision"]
        audio = model({"audio": ours.preprocess("audio", items["audio"])})["audio"]
        text = model({"text": ours.preprocess("text", items["text"])})["text"]
    text_scale = model.modality_postprocessors["text"][1].log_logit_scale.exp().clamp(max=100)
    assert torch.allclose(vision, ours.encode("image", items["image"]), atol=1e-5)
    assert torch.allclose(audio, 20.0 * ours.encode("audio", items["audio"]), atol=1e-4)
    assert torch.allclose(text, text_scale * ours.encode("text", items["text"]), atol=1e-4)
    raw = ours.encode("audio", items["audio"])
    assert (raw.norm(dim=-1) < 1).all()  # a mean of 3 different unit vectors
    renormalised = build_encoder(tiny_config(audio_clips=3), allow_random_init=True).encode("audio", items["audio"])
    assert torch.allclose(renormalised, torch.nn.functional.normalize(raw, dim=-1), atol=1e-5)


# ---- limits come from the server's config --------------------------------------------------------------------
def test_encoder_enforces_its_config_limits(tmp_path: Path) -> None:
    limits = MediaLimits(max_image_pixels=1000, max_prompt_chars=5, max_audio_seconds=1, max_video_frames=4)
    config = tiny_config().model_copy(update={"limits": limits})
    strict = build_encoder(config, allow_random_init=True)
    with pytest.raises(MediaError, match="max_image_pixels"):
        strict.encode("image", [RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)])
    with pytest.raises(MediaError, match=r"text item 1: text is too long .*max_prompt_chars"):
        strict.encode("text", ["ok", "far too long"])
    with pytest.raises(MediaError, match="max_audio_seconds"):
        strict.encode("audio", [write_wav(tmp_path / "a.wav", seconds=2)])
    with pytest.raises(MediaError, match=r"video\.mp4: video has more than 4 frames"):
        strict.encode("video", [write_video(tmp_path / "video.mp4", frames=12)])
    with pytest.raises(MediaError, match="must be a local file"):
        strict.encode("video", ["https://example.com/v.mp4"])


# ---- construction and weights --------------------------------------------------------------------------------
def test_huge_architecture_on_meta() -> None:
    ib = import_imagebind()
    huge = build_encoder(huge_config(), device="meta")
    assert sum(p.numel() for p in huge.parameters()) == IMAGEBIND_HUGE_PARAMETERS
    assert huge.embed_dim == 1024 and {p.device.type for p in huge.parameters()} == {"meta"}
    from accelerate import init_empty_weights

    with init_empty_weights():
        official = ib.model.imagebind_huge(pretrained=False)
    assert {k: v.shape for k, v in official.state_dict().items()} == {k: v.shape for k, v in huge.state_dict().items()}
    assert huge_config().options == {
        "audio_clips": 3, "audio_clip_seconds": 2.0, "audio_mean": -4.268, "audio_std": 9.138, "video_clips": 5,
        "video_clip_seconds": 2.0, "video_crops": 3, "video_array_fps": 30.0, "renormalize": True,
    }
    assert huge_config().path == "imagebind_huge.safetensors" and HUGE_ARCHITECTURE["out_embed_dim"] == 1024


def test_config_errors() -> None:
    with pytest.raises(ValueError, match=r"no weights path .* pass allow_random_init=True"):
        build_encoder(tiny_config())
    with pytest.raises(ValueError, match=r"invalid ImageBind encoder options .*valid keys: \[.*'audio_clips'"):
        build_encoder(tiny_config(audio_clipz=2), allow_random_init=True)
    with pytest.raises(ValueError, match="invalid ImageBind encoder options"):
        build_encoder(tiny_config(video_crops=2), allow_random_init=True)
    bad_arch = EncoderConfig(architecture={**TINY_ARCHITECTURE, "vision_layers": 3}, embed_dim=64)
    with pytest.raises(ValueError, match=r"unknown ImageBindModel arguments \['vision_layers'\]"):
        build_encoder(bad_arch, allow_random_init=True)
    with pytest.raises(ValueError, match=r"embed_dim=32 but the architecture's out_embed_dim is 64"):
        build_encoder(EncoderConfig(architecture=TINY_ARCHITECTURE, embed_dim=32), allow_random_init=True)


def test_safetensors_round_trip_relative_to_base_dir(encoder: MediaEncoder, tmp_path: Path) -> None:
    save_file(encoder.state_dict(), str(tmp_path / "encoder.safetensors"))
    config = tiny_config().model_copy(update={"path": "encoder.safetensors"})
    loaded = build_encoder(config, base_dir=tmp_path)
    text = ["round trip"]
    assert torch.equal(loaded.encode("text", text), encoder.encode("text", text))
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    half = build_encoder(config, base_dir=tmp_path, dtype=torch.bfloat16)
    assert half.encode("image", [np.zeros((32, 32, 3), np.uint8)]).dtype == torch.bfloat16


def test_weight_file_errors_name_the_file(encoder: MediaEncoder, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ImageBind weights .*nowhere\.safetensors not found"):
        build_encoder(tiny_config().model_copy(update={"path": str(tmp_path / "nowhere.safetensors")}))
    good = tmp_path / "good.safetensors"
    save_file(encoder.state_dict(), str(good))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"corrupt\.safetensors is not a valid safetensors file"):
        build_encoder(tiny_config().model_copy(update={"path": str(corrupt)}))
    other = EncoderConfig(path=str(good), architecture={**TINY_ARCHITECTURE, "vision_embed_dim": 32}, embed_dim=64)
    with pytest.raises(ValueError, match=r"good\.safetensors does not match encoder.architecture: \d+ tensors with the wrong shape \(e\.g\. .*file \(.*64.*\) vs model \(.*32"):
        build_encoder(other)
    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in encoder.state_dict().items() if "trunks.text" not in k}, str(partial))
    with pytest.raises(ValueError, match=r"partial\.safetensors does not match .*missing"):
        build_encoder(tiny_config().model_copy(update={"path": str(partial)}))
    unknown = tmp_path / "weights.npz"
    unknown.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"weights\.npz: unknown weights format '\.npz'"):
        build_encoder(tiny_config().model_copy(update={"path": str(unknown)}))


def test_pickle_needs_opt_in_and_loads_weights_only(encoder: MediaEncoder, tmp_path: Path) -> None:
    checkpoint = tmp_path / "imagebind_tiny.pth"
    torch.save(encoder.state_dict(), checkpoint)
    config = tiny_config().model_copy(update={"path": str(checkpoint)})
    with pytest.raises(ValueError, match=r"imagebind_tiny\.pth is a pickle checkpoint, refused by default.*allow_pickle=True"):
        build_encoder(config)
    loaded = build_encoder(config, allow_pickle=True)
    assert torch.equal(loaded.encode("text", ["x"]), encoder.encode("text", ["x"]))
    converted = convert_pickle_checkpoint(checkpoint, tmp_path / "imagebind_tiny.safetensors")
    from_safetensors = build_encoder(tiny_config().model_copy(update={"path": str(converted)}))
    assert torch.equal(from_safetensors.encode("text", ["x"]), encoder.encode("text", ["x"]))


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_malicious_pickle_never_executes(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    checkpoint = tmp_path / "evil.pth"
    with open(checkpoint, "wb") as handle:
        pickle.dump({"weight": _Exploit(marker)}, handle, protocol=2)
    config = tiny_config().model_copy(update={"path": str(checkpoint)})
    with pytest.raises(ValueError, match=r"evil\.pth cannot be loaded with torch\.load\(weights_only=True\)"):
        build_encoder(config, allow_pickle=True)
    with pytest.raises(ValueError, match=r"evil\.pth cannot be loaded"):
        convert_pickle_checkpoint(checkpoint, tmp_path / "evil.safetensors")
    assert not marker.exists()
