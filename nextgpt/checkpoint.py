"""Saving and loading checkpoint folders, and safe reading of weight files.

Folder layout written by ``save_pretrained``::

    config.json         the NextGPTConfig (component paths relative to the folder where they live in it)
    tokenizer/          the LLM tokenizer with the added tokens
    model.safetensors   trainable weights: input/output projectors, added-token rows (and LoRA, when trained)
    llm/                full LLM weights — only when the LLM has no weights elsewhere (random init / toy models)
    encoder.safetensors encoder weights — likewise
    decoders/<name>/    diffusers pipeline folders — likewise
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from .model import NextGPTModel
    from .pipeline import NextGPT

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
EMBEDDINGS_NAME = "embeddings.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")  # read only with weights_only=True


def read_weights(path: str | Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a weight file. Safetensors always; pickle files only with ``allow_pickle`` and ``weights_only=True``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a pickle without opt-in, an unknown format, or a corrupt/truncated file — naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ValueError(
                f"{path} is a pickle checkpoint, refused by default (unpickling can run code); convert it to "
                "safetensors once, or opt in with allow_pickle=True (read with torch.load(weights_only=True))"
            )
        return _read_pickle(path)
    if suffix != ".safetensors":
        raise ValueError(f"{path}: unknown weights format {suffix!r}; use .safetensors (or a pickle with "
                         "allow_pickle=True)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a valid safetensors file (truncated or corrupt?): {error}") from None


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for non-tensor payloads, RuntimeError/EOFError for damage
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise ValueError(f"{path} cannot be loaded with torch.load(weights_only=True): {type(error).__name__}: "
                         f"{first_line}; it is corrupt or holds more than tensors") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors (name → tensor)")
    return state


def check_shapes(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], path: str | Path,
                 what: str, hint: str = "") -> None:
    """Compare a state dict with the shapes a model expects; one error lists wrong, missing and unexpected keys.

    Raises:
        ValueError: ``"<path> does not match <what>: ..."`` followed by ``hint``.
    """
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {shape}" for k, shape in expected.items()
             if k in state and tuple(state[k].shape) != tuple(shape)]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} tensors with the wrong shape (e.g. {'; '.join(wrong[:3])})")
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    if problems:
        raise ValueError(f"{path} does not match {what}: {', '.join(problems)}" + (f". {hint}" if hint else ""))


def write_weights(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors file atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, temp, metadata=metadata)
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes it owner-only; a plain file is what callers expect
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return path


def make_readable(folder: Path) -> None:
    """Give every file and folder under ``folder`` the modes a plain write would (``0o666``/``0o777`` minus the
    umask): safetensors writes its files owner-only (0600), through transformers' and diffusers' save_pretrained
    too, and a checkpoint that other users or a package installation read must not be."""
    mask = _umask()
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def trainable_state(model: "NextGPTModel") -> dict[str, torch.Tensor]:
    """The weights that are not available from the components' own sources."""
    state = {f"input_projectors.{k}": v for k, v in model.input_projectors.state_dict().items()}
    state.update({f"output_projectors.{k}": v for k, v in model.output_projectors.state_dict().items()})
    state.update(model.added_token_rows())
    state.update(lora_state(model))
    return state


def lora_state(model: "NextGPTModel") -> dict[str, torch.Tensor]:
    return {f"llm.{k}": v for k, v in model.llm.state_dict().items() if "lora_" in k}


def load_trainable(model: "NextGPTModel", folder: str | Path) -> None:
    """Load ``model.safetensors`` of a checkpoint folder into the model.

    Raises:
        FileNotFoundError / ValueError: a missing or corrupt file, missing keys or wrong shapes — all named.
    """
    path = Path(folder) / WEIGHTS_NAME
    state = read_weights(path)
    expected = {k: tuple(v.shape) for k, v in trainable_state(model).items()}
    check_shapes(expected, state, path, "this model's config",
                 "Load it with the config.json it was saved with")
    with torch.no_grad():
        model.input_projectors.load_state_dict(_strip(state, "input_projectors."))
        model.output_projectors.load_state_dict(_strip(state, "output_projectors."))
        model.load_added_token_rows(state)
        lora = _strip(state, "llm.")
        if lora:
            model.llm.load_state_dict(lora, strict=False)
        tables = Path(folder) / EMBEDDINGS_NAME
        if tables.is_file():  # full tables (converted legacy checkpoints trained all rows)
            full = read_weights(tables)
            layers = (("input", model.llm.get_input_embeddings()), ("output", model.llm.get_output_embeddings()))
            for name, layer in layers:
                if name in full:
                    if tuple(full[name].shape) != tuple(layer.weight.shape):
                        raise ValueError(f"{tables}: {name} table {tuple(full[name].shape)} != model's "
                                         f"{tuple(layer.weight.shape)}")
                    layer.weight.copy_(full[name].to(layer.weight.device, layer.weight.dtype))


def save_pretrained(pipe: "NextGPT", folder: str | Path) -> Path:
    """Write a complete checkpoint folder (see the module docstring). Written to a temp folder, then renamed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(temp, 0o777 & ~_umask())  # mkdtemp makes it owner-only; the checkpoint is a plain folder
    try:
        config = pipe.config.model_copy(deep=True)
        model = pipe.model
        model.tokenizer.save_pretrained(temp / "tokenizer")
        config.llm.tokenizer = "tokenizer"
        if _lives_in_checkpoint(config.llm.path, pipe.base_dir):
            base, state = _base_llm(model)
            base.save_pretrained(temp / "llm", state_dict=state, safe_serialization=True)
            config.llm.path = "llm"
        if _lives_in_checkpoint(config.encoder.path, pipe.base_dir):
            write_weights(model.encoder.state_dict(), temp / "encoder.safetensors")
            config.encoder.path = "encoder.safetensors"
        for spec in config.output_modalities:
            if _lives_in_checkpoint(spec.decoder.path, pipe.base_dir):
                target = Path("decoders") / spec.name
                pipe.decoders[spec.name].pipeline.save_pretrained(temp / target, safe_serialization=True)
                spec.decoder.path = target.as_posix()
        write_weights(trainable_state(model), temp / WEIGHTS_NAME)
        config.save(temp)
        make_readable(temp)
        if folder.exists():
            backup = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            folder.rename(backup)
            temp.rename(folder)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            temp.rename(folder)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    logger.info("saved %s", folder)
    return folder


def _lives_in_checkpoint(path: str | None, base_dir: Path | None) -> bool:
    """True when a component has no weights elsewhere: random init, or a relative path inside the checkpoint
    folder it was loaded from (absolute paths and hub ids are kept as references)."""
    if path is None:
        return True
    return base_dir is not None and not Path(path).is_absolute() and (base_dir / path).exists()


def _base_llm(model: "NextGPTModel") -> tuple[Any, dict[str, torch.Tensor]]:
    """The LLM without adapters and its weights under the plain model's names.

    With LoRA, peft wraps each target layer (``q_proj.base_layer.weight`` + ``q_proj.lora_A...``); the adapters
    are saved with the trainable weights, so the ``llm/`` folder gets the frozen base weights under the names
    ``from_pretrained`` expects (``q_proj.weight``) — saved as they are, they would be reported missing on load
    and re-initialised at random."""
    llm = model.llm
    if not hasattr(llm, "get_base_model"):
        return llm, llm.state_dict()
    base = llm.get_base_model()
    state = {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items() if "lora_" not in k}
    return base, state


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
