"""The frozen parts of a finished toy-world model, taken back out as a build's ``parts/`` and ``judges/``.

``nextgpt toyworld build --parts-from MODEL`` starts a build from them: the encoder, LLM and decoders of ``MODEL``
(the shipped one by default) are written where the build's part steps would write them, so the build reuses them
and runs only the world's data, the base, stages 1–3 and the evaluation (≈ 30 min on 2 cores instead of ≈ 70). That
is how to try a change to the stage recipes, the data or the prompts without retraining what they do not touch.

What comes back is what the model runs, not bit for bit what its build trained: the model stores its weights in
float16 (``Recipe.storage_dtype``), and the LLM's embeddings lose the rows of the tokens the pipeline adds (media
and signal tokens), which the base step adds again with fresh rows, as it does for parts it trained itself.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nextgpt.config import NextGPTConfig

from .build import DONE, JUDGES_SUBDIR, SHIPPED_MODEL_DIR, ToyWorldBuild

EXTRACTED = "extracted.json"
"""Written in ``parts/``: where the parts came from, and what the source model's build recorded about them."""


def _source_steps(model: Path) -> dict[str, dict[str, Any]]:
    path = model / "build.json"
    if not path.is_file():
        return {}
    return {step["name"]: step for step in json.loads(path.read_text(encoding="utf-8")).get("steps", [])}


def _report(step: dict[str, Any] | None, model: Path) -> dict[str, Any]:
    """A part's report file: the source build's record of the step (its time and summary), and where it came from."""
    step = step or {}
    return {"seconds": step.get("seconds", 0.0), "extracted_from": str(model.resolve()),
            "summary_in_source_build": step.get("summary", {})}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _extract_llm(model: Path, config: NextGPTConfig, folder: Path) -> int:
    """The LLM and tokenizer without the pipeline's added tokens; returns the vocabulary size."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = json.loads((model / config.llm.tokenizer / "tokenizer.json").read_text(encoding="utf-8"))
    added = set(config.added_tokens)
    base_size = len(tokenizer["model"]["vocab"])
    ours = [t for t in tokenizer["added_tokens"] if t["content"] in added]
    if sorted(t["id"] for t in ours) != list(range(base_size, base_size + len(added))):
        raise ValueError(f"{model}: the tokenizer's media and signal tokens are not the last {len(added)} ids after "
                         f"its {base_size}-token vocabulary; this is not a model the toy-world build wrote")
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["content"] not in added]
    (folder / "tokenizer").mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer" / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    shutil.copy2(model / config.llm.tokenizer / "tokenizer_config.json", folder / "tokenizer" / "tokenizer_config.json")
    llm = AutoModelForCausalLM.from_pretrained(model / config.llm.path, dtype=torch.float32)
    llm.resize_token_embeddings(base_size, mean_resizing=False)
    llm.save_pretrained(folder / "llm", safe_serialization=True)
    return base_size


def extract_parts(model: str | Path | None, out: str | Path) -> dict[str, Any]:
    """Write the encoder, LLM, decoders and judges of the toy-world ``model`` (``None``: the shipped one) into the
    build folder ``out`` (``out/parts/…``, ``out/judges``) as the build's part steps write them; returns the record
    written to ``out/parts/extracted.json``.

    Raises:
        FileNotFoundError: ``model`` is not a toy-world model folder (no config.json, or no judges).
        FileExistsError: ``out`` holds parts or judges already (a build's own, or extracted from another model;
            parts extracted from ``model`` before are kept, so the same command resumes an interrupted build).
    """
    from .train_encoder import CONFIG_FILE, ENCODER_FILE

    model = Path(model) if model is not None else SHIPPED_MODEL_DIR
    out = Path(out)
    if not (model / "config.json").is_file():
        raise FileNotFoundError(f"{model} has no config.json: give the folder of a toy-world model (OUT/model of a "
                                "finished build, or the shipped nextgpt/assets/toyworld)")
    if not (model / JUDGES_SUBDIR / "classifiers.json").is_file():
        raise FileNotFoundError(f"{model} has no {JUDGES_SUBDIR}/classifiers.json: not a toy-world model folder")
    build = ToyWorldBuild(out)
    done = build.parts / EXTRACTED
    if done.is_file():  # the same command again, e.g. after an interrupted build: resume, do not refuse
        record = json.loads(done.read_text(encoding="utf-8"))
        if record.get("from") == str(model.resolve()):
            return record
    for folder in (build.parts, build.judges_dir):
        if folder.exists():
            raise FileExistsError(f"{folder} exists already: extract parts into a new build folder")
    config = NextGPTConfig.load(model)
    steps = _source_steps(model)

    encoder = build.parts / "encoder"
    encoder.mkdir(parents=True)
    shutil.copy2(model / config.encoder.path, encoder / ENCODER_FILE)
    saved = config.encoder.model_copy(update={"path": ENCODER_FILE})
    _write_json(encoder / CONFIG_FILE, saved.model_dump(mode="json"))
    _write_json(encoder / "encoder_report.json", _report(steps.get("encoder"), model))

    vocabulary = _extract_llm(model, config, build.parts / "llm")
    _write_json(build.parts / "llm" / "llm_report.json", {**_report(steps.get("llm"), model), "vocabulary": vocabulary})

    for spec in config.output_modalities:
        folder = build.parts / "decoders" / spec.name
        shutil.copytree(model / spec.decoder.path, folder, ignore=shutil.ignore_patterns(DONE))
        decoder = spec.decoder.model_copy(update={"path": str(folder.resolve())})
        _write_json(folder / "decoder.json", {"modality": spec.name, "config": decoder.model_dump(mode="json"),
                                              **_report(steps.get(f"decoder-{spec.name}"), model)})

    shutil.copytree(model / JUDGES_SUBDIR, build.judges_dir)
    record = {"from": str(model.resolve()), "parts": ["encoder", "llm",
                                                      *(f"decoder-{s.name}" for s in config.output_modalities)],
              "judges": True, "llm_vocabulary": vocabulary}
    _write_json(build.parts / EXTRACTED, record)
    return record
