"""The one place that makes ``imagebind-unofficial`` (and the pytorchvideo it pulls in) importable today.

ImageBind's packaging lags its dependencies. Every work-around lives here, each with the reason, so that the
rest of ``nextgpt.encoders`` imports ImageBind through :func:`import_imagebind` and nothing else patches
anything. What we deliberately do *not* use from ImageBind (and why) is listed too, because those are
shims by omission:

- ``imagebind.data.load_and_transform_audio_data`` calls ``torchaudio.load``, which in torchaudio ≥ 2.9 needs
  torchcodec and a system ffmpeg. We read audio with soundfile (``nextgpt.encoders.media``) and call only
  ``imagebind.data.waveform2melspec``.
- ``imagebind.data.load_and_transform_video_data`` passes ``sample_rate=`` to ``EncodedVideo.from_path``,
  which the PyPI pytorchvideo rejects, and decodes with decord without any limit. We decode with PyAV under
  ``MediaLimits`` and reuse only ImageBind's clip sampling, cropping and normalisation pieces.
- ``imagebind_model.imagebind_huge(pretrained=True)`` downloads from the internet into ``.checkpoints/``;
  we build ``ImageBindModel(**HUGE_ARCHITECTURE)`` and load weights ourselves.
"""
from __future__ import annotations

import functools
import importlib
import sys
import warnings
from types import ModuleType, SimpleNamespace

__all__ = ["import_imagebind"]


def _alias_torchvision_functional_tensor() -> None:
    """pytorchvideo 0.1.5 does ``import torchvision.transforms.functional_tensor``.

    torchvision 0.17 renamed that private module to ``_functional_tensor`` (and later removed the old name), so
    the import fails. Registering the new module under the old name in ``sys.modules`` is the narrowest fix: it
    touches no torchvision code and only adds a name that no longer exists. If torchvision ever ships the old
    name again, the real module wins.
    """
    legacy = "torchvision.transforms.functional_tensor"
    if legacy in sys.modules:
        return
    try:
        importlib.import_module(legacy)
    except ImportError:
        sys.modules[legacy] = importlib.import_module("torchvision.transforms._functional_tensor")


@functools.lru_cache(maxsize=1)
def import_imagebind() -> SimpleNamespace:
    """Import ImageBind once, with the shims applied, and return the pieces this package uses.

    Returns:
        A namespace with ``data`` (``imagebind.data``), ``model`` (``imagebind.models.imagebind_model``),
        ``preprocessors`` (``imagebind.models.multimodal_preprocessors``), ``clip_sampling``
        (``pytorchvideo.data.clip_sampling``) and ``video_transforms`` (``pytorchvideo.transforms``).

    Raises:
        ImportError: with the install hint when ``imagebind-unofficial`` or one of its undeclared dependencies
            (``einops``, ``setuptools<81`` for ``pkg_resources``) is missing.
    """
    _alias_torchvision_functional_tensor()
    with warnings.catch_warnings():
        # imagebind/data.py does ``import pkg_resources`` (only for the path of its BPE vocabulary); setuptools
        # warns that the API is deprecated. The project pins setuptools<81, where it still exists.
        warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
        # pytorchvideo.transforms decorates two methods with torch.jit.script_method, which torch deprecates;
        # harmless for us (we never script them) and not ours to fix.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is deprecated", category=FutureWarning)
        try:
            data: ModuleType = importlib.import_module("imagebind.data")
            model = importlib.import_module("imagebind.models.imagebind_model")
            preprocessors = importlib.import_module("imagebind.models.multimodal_preprocessors")
            clip_sampling = importlib.import_module("pytorchvideo.data.clip_sampling")
            video_transforms = importlib.import_module("pytorchvideo.transforms")
        except ImportError as error:
            raise ImportError(
                f"cannot import ImageBind ({error}). Install it with "
                "`pip install imagebind-unofficial einops 'setuptools<81'` (nextgpt's dependencies include them)."
            ) from error
    return SimpleNamespace(
        data=data,
        model=model,
        preprocessors=preprocessors,
        clip_sampling=clip_sampling,
        video_transforms=video_transforms,
    )
