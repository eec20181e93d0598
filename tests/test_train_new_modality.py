"""docs/adding-a-modality.md, executed: ImageBind's depth branch becomes an input modality through the encoder
registry and a ModalitySpec, then a stage-1 run aligns it — nothing in the model, trainer or CLI changes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nextgpt.config import NextGPTConfig
from nextgpt.encoders import ImageBindEncoder, load_image
from nextgpt.presets import get_preset
from nextgpt.registry import ENCODERS


# ---- 1. the encoder: ImageBind plus its depth branch, registered under a new kind ---------------------------
class ImageBindWithDepth(ImageBindEncoder):
    """ImageBind for image/audio/video/text and depth maps (single-channel images, near = bright)."""

    modalities = (*ImageBindEncoder.modalities, "depth")

    def _prepare_depth(self, item):
        gray = load_image(item, self.limits).convert("L").resize((224, 224))
        return torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0).unsqueeze(0)  # [1, 224, 224]

    @torch.no_grad()
    def forward_preprocessed(self, modality, inputs):
        if modality != "depth":
            return super().forward_preprocessed(modality, inputs)
        tokens = self.modality_preprocessors["depth"](depth=inputs)
        hidden = self.modality_trunks["depth"](**tokens["trunk"])
        return F.normalize(self.modality_heads["depth"](hidden, **tokens["head"]), dim=-1)


if "imagebind_depth" not in ENCODERS:
    ENCODERS.add("imagebind_depth", ImageBindWithDepth)


# ---- 2. the spec: an input-only modality with its placeholder and wrap text ---------------------------------
def depth_config() -> NextGPTConfig:
    data = get_preset("tiny").model_dump()
    data["encoder"]["kind"] = "imagebind_depth"
    data["modalities"].append({"name": "depth", "wrap": ["<Depth>", "</Depth>"],
                               "input_projector": {"kind": "linear"}})
    return NextGPTConfig.model_validate(data)


# ---- 3. data: depth maps with captions ---------------------------------------------------------------------
def depth_pairs(folder: Path) -> Path:
    from PIL import Image

    (folder / "media").mkdir(parents=True)
    lines = []
    for name, level in (("near", 230), ("far", 40)):
        Image.fromarray(np.full((64, 64), level, dtype=np.uint8)).save(folder / "media" / f"{name}.png")
        lines.append({"turns": [
            {"role": "user", "text": "<depth> how far is the wall?",
             "inputs": [{"modality": "depth", "path": f"media/{name}.png"}]},
            {"role": "assistant", "text": f"the wall is {name}"}]})
    path = folder / "depth.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines * 2))
    return path



def test_depth_becomes_an_input_modality_with_a_stage1_run(tmp_path):
    from nextgpt.pipeline import NextGPT
    from nextgpt.training import Trainer, load_train_config

    config = depth_config()
    assert [m.name for m in config.input_modalities][-1] == "depth"
    base = NextGPT.from_config(config).save_pretrained(tmp_path / "base")
    data = depth_pairs(tmp_path / "data")
    train = load_train_config("configs/tiny/stage1.yaml", [
        f"model={{checkpoint: {base}}}", f"data.train=[{data}]", f"output_dir={tmp_path / 'run'}",
        "max_steps=8", "progress_bar=false", "log_with=[]", "data.batch_size=2"])
    trainer = Trainer(train)
    final = trainer.train()
    losses = [h["train/total"] for h in trainer.history]
    assert all(np.isfinite(losses)) and trainer.features.misses == 8 * 2  # every depth map encoded live

    pipe = NextGPT.from_pretrained(final)
    assert pipe.config.modality("depth").wrap == ("<Depth>", "</Depth>")
    from nextgpt.types import Media, Message

    message = Message("user", "<depth> how far is the wall?", [Media("depth", str(tmp_path / "data/media/near.png"))])
    response = pipe.chat([message], max_new_tokens=6, seed=0)
    assert isinstance(response.text, str) and response.prompt_tokens > 0
