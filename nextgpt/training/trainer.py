"""The trainer: Accelerate-driven loop over the three NExT-GPT stages (what trains and which losses apply come
from the ``TrainConfig`` and the data — the loop is the same for every stage).

Per optimizer step: frozen features (cache or live) → ``TrainingModule`` losses → non-finite check (stop with
the step named, before anything is applied) → backward with accumulation → clipping → optimizer and schedule
step → logging, eval, atomic checkpoints. The result is a ``save_pretrained`` folder at ``output_dir/final``.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from nextgpt.dialogs.layout import TokenLayout
from nextgpt.options import RuntimeOptions

from . import cache as cache_store
from .checkpoints import latest_checkpoint, read_marker, save_checkpoint
from .config import TrainConfig
from .data import Batch, Collator, DialogueDataset, EpochSampler, load_examples
from .denoise import Denoiser
from .features import FeatureSource
from .module import TOKEN_LOSSES, TrainingModule
from .optim import build_optimizer, build_scheduler
from .trainables import select_trainable

logger = logging.getLogger(__name__)

Callback = Callable[["Trainer", int], None]


class NonFiniteLossError(RuntimeError):
    """A loss or gradient norm was NaN/Inf; training stopped before applying that step."""


def load_pipeline(config: TrainConfig, device: str) -> Any:
    """The ``NextGPT`` to train: a preset or a previous stage's folder, with LoRA added when configured."""
    from nextgpt.model import apply_lora
    from nextgpt.pipeline import NextGPT

    runtime = RuntimeOptions(device=device)
    source = config.model
    if source.checkpoint is not None:
        pipe = NextGPT.from_pretrained(source.checkpoint, runtime=runtime)
    else:
        pipe = NextGPT.from_preset(source.preset, runtime=runtime, **source.preset_args)
    if config.lora is not None:
        if pipe.config.lora is None:
            pipe.model.llm = apply_lora(pipe.model.llm, config.lora)
            pipe.config.lora = config.lora  # saved with the model: it loads with its adapters
        elif pipe.config.lora != config.lora:
            raise ValueError(f"the model already has LoRA {pipe.config.lora.model_dump()} but the training config "
                             f"asks for {config.lora.model_dump()}; remove 'lora' from the training config to keep "
                             "training the existing adapters")
    pipe.model.to(device)
    return pipe


class Trainer:
    """Runs one ``TrainConfig``.

    Args:
        config: the training config.
        callbacks: ``callback(trainer, step)`` after each optimizer step (and its checkpoint); for tests/hooks.
    """

    def __init__(self, config: TrainConfig, callbacks: Sequence[Callback] = ()) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.output_dir = Path(config.output_dir)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision=config.mixed_precision,
            log_with=_trackers(config.log_with),
            project_dir=str(self.output_dir),
            # A batch may lack a modality: its output projector then gets no gradient in that step.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        self.step = 0
        self.history: list[dict[str, float]] = []  # per optimizer step: train/* losses and lr
        self.eval_history: list[dict[str, float]] = []
        self.step_times: list[float] = []  # perf_counter at the end of each optimizer step (benchmarks)

    # ---- setup ---------------------------------------------------------------------------------------
    def _setup(self) -> None:
        config, accelerator = self.config, self.accelerator
        set_seed(config.seed)
        self.pipe = load_pipeline(config, str(accelerator.device))
        model = self.pipe.model
        if config.gradient_checkpointing:
            model.llm.gradient_checkpointing_enable()
            model.llm.enable_input_require_grads()
        report = select_trainable(model, config.trainable, config.train_token_rows)
        logger.info("stage %d: %s trainable parameters of %s (%d tensors)", config.stage, f"{report.count:,}",
                    f"{report.total:,}", len(report.names))
        self.trainable_count = report.count
        layout = TokenLayout.from_model(model)
        data = config.data
        options = {"root": data.root, "format": data.format, "task": data.task}
        train = load_examples(data.train, layout, data.max_length, **options)
        evals = load_examples(data.eval, layout, data.max_length, **options) if data.eval else []
        self.features = FeatureSource(self.pipe, self._open_cache(), accelerator.device)
        denoise = config.loss.denoise
        self.denoiser = Denoiser(self.pipe.decoders, denoise.snr_gamma) if denoise.enabled else None
        pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
        collate = Collator(pad)
        lengths = [len(example) for example in train] if data.group_by_length else None
        self.sampler = EpochSampler(len(train), config.seed, data.shuffle, lengths, data.batch_size)
        # Its own generator: creating an iterator must not draw from the global RNG (bit-exact resume).
        loader = DataLoader(DialogueDataset(train), batch_size=config.data.batch_size, sampler=self.sampler,
                            collate_fn=collate, num_workers=config.data.num_workers,
                            generator=torch.Generator().manual_seed(config.seed))
        eval_loader = DataLoader(DialogueDataset(evals), batch_size=config.data.eval_batch_size or
                                 config.data.batch_size, collate_fn=collate,
                                 generator=torch.Generator().manual_seed(config.seed)) if evals else None
        self.module = TrainingModule(model, config.loss.signal_scale)
        self.optimizer = build_optimizer(model, config.optim)  # names as 'trainable' matches them
        self.module, self.optimizer, self.loader = accelerator.prepare(self.module, self.optimizer, loader)
        self.eval_loader = accelerator.prepare(eval_loader) if eval_loader is not None else None
        per_epoch = math.ceil(len(self.loader) / config.gradient_accumulation_steps)
        self.total_steps = config.max_steps or per_epoch * config.epochs
        # Stepped once per optimizer step by us (not prepared: Accelerate would step it once per process).
        self.scheduler = build_scheduler(self.optimizer, config.optim, self.total_steps)
        accelerator.register_for_checkpointing(self.scheduler)
        if accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            accelerator.register_save_state_pre_hook(keep_trainable_weights)
        logger.info("%d examples, %d optimizer steps, %d process(es)", len(train), self.total_steps,
                    accelerator.num_processes)

    def _open_cache(self) -> cache_store.FeatureCache | None:
        folder = self.config.data.cache_dir
        if folder is None:
            return None
        if cache_store.read_manifest(folder) is None:
            logger.warning("no feature cache in %s: encoding live (build one with 'nextgpt data cache')", folder)
            return None
        cache = cache_store.FeatureCache.open_for(folder, self.pipe)
        logger.info("feature cache %s: %d entries", folder, len(cache))
        return cache

    # ---- the loop ------------------------------------------------------------------------------------
    def train(self, resume: str | None = None) -> Path:
        """Train to ``max_steps`` (or ``epochs``) and write ``output_dir/final`` (a ``save_pretrained`` folder).

        Args:
            resume: a checkpoint folder, or ``"auto"`` for the latest one in ``output_dir`` (none: start fresh).

        Raises:
            NonFiniteLossError: a NaN/Inf loss or gradient; no checkpoint of that step is written.
            nextgpt.training.data.DatasetError: bad records (all of them), before step 0.
        """
        self._setup()
        config, accelerator = self.config, self.accelerator
        epoch, skip = self._resume(resume)
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "train_config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
        accelerator.init_trackers("nextgpt", config=_flat_scalars(config.model_dump(mode="json")))
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"stage {config.stage}",
                   disable=not (config.progress_bar and accelerator.is_local_main_process))
        self.module.train()
        running: dict[str, float] = {}
        started = time.perf_counter()
        while self.step < self.total_steps:
            loader = accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
            loader.set_epoch(epoch)  # Accelerate's loader sets the sampler's epoch from its own counter
            position = skip
            for batch in loader:
                position += 1
                with accelerator.accumulate(self.module):
                    losses = self._losses(batch)
                    total = losses["total"]
                    self._check_finite(total, "loss", losses)
                    accelerator.backward(total)
                    if accelerator.sync_gradients:  # the norm is checked even without clipping (max inf)
                        limit = config.optim.grad_clip if config.optim.grad_clip is not None else float("inf")
                        norm = accelerator.clip_grad_norm_(self.module.parameters(), limit)
                        self._check_finite(norm, "gradient norm", losses)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                for key, value in losses.items():
                    running[key] = running.get(key, 0.0) + float(value.detach()) / config.gradient_accumulation_steps
                if not accelerator.sync_gradients:
                    continue
                self.scheduler.step()
                self.step += 1
                self.step_times.append(time.perf_counter())
                bar.update(1)
                self._log(running, bar)
                running = {}
                if config.eval_every and self.step % config.eval_every == 0 and self.eval_loader is not None:
                    self.evaluate()
                if config.save_every and self.step % config.save_every == 0:
                    save_checkpoint(accelerator, self.output_dir, self.step,
                                    {"epoch": epoch, "batch_in_epoch": position}, config.keep_checkpoints)
                for callback in self.callbacks:
                    callback(self, self.step)
                if self.step >= self.total_steps:
                    break
            else:
                epoch, skip = epoch + 1, 0
                continue
            break
        bar.close()
        self.loop_seconds = time.perf_counter() - started  # the optimizer steps only (no setup, eval, save)
        if self.eval_loader is not None and not (self.eval_history and self.eval_history[-1]["step"] == self.step):
            self.evaluate()
        final = self._save_final()
        accelerator.end_training()
        return final

    def _losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Features for the batch, the module's losses, and the weighted total."""
        config = self.config
        device = self.accelerator.device
        media = self.features.media_embeddings(batch.inputs)
        targets = self.features.targets(batch.outputs)
        out = self.module(
            batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device),
            media, [r.modality for r in batch.inputs], batch.signal_rows.to(device),
            batch.signal_starts.to(device), [r.modality for r in batch.outputs], targets,
        )
        conditions = out.pop("conditions")
        if self.denoiser is not None:
            for modality, features in conditions.items():
                requests = [r for r in batch.outputs if r.modality == modality]
                keep = [i for i, r in enumerate(requests) if r.path]
                if keep:
                    out[f"denoise/{modality}"] = self.denoiser.loss(modality, [requests[i].path for i in keep],
                                                                    features[keep])
        total = config.loss.lm_weight * out["lm"]
        for name in TOKEN_LOSSES:
            weight = getattr(config.loss, f"{name}_weight")
            if weight and name in out:
                total = total + weight * out[name]
        for key, value in out.items():
            if key.startswith("signal/"):
                total = total + config.loss.signal_weight * config.loss.signal_scale.get(key[7:], 1.0) * value
            elif key.startswith("denoise/"):
                total = total + config.loss.denoise.weight * value
        out["total"] = total
        return out

    def _check_finite(self, value: torch.Tensor, what: str, losses: dict[str, torch.Tensor]) -> None:
        flag = torch.tensor([0.0 if torch.isfinite(value).all() else 1.0], device=self.accelerator.device)
        if float(self.accelerator.reduce(flag, reduction="sum")) > 0:
            parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            raise NonFiniteLossError(
                f"non-finite {what} at step {self.step + 1} ({parts}); training stopped before applying this step "
                f"and no checkpoint of it was written. Lower optim.lr, enable clipping, use bf16 instead of fp16, "
                f"or check the data of this step; resume from the last checkpoint in {self.output_dir}/checkpoints")

    def _log(self, running: dict[str, float], bar: Any) -> None:
        keys = sorted(running)  # every process has the same keys only when batches hold the same modalities
        if self.accelerator.num_processes > 1:
            local = torch.tensor([running[k] for k in keys], device=self.accelerator.device)
            names = self.accelerator.gather_for_metrics([keys], use_gather_object=True)
            if all(n == keys for n in names):
                running = dict(zip(keys, self.accelerator.reduce(local, reduction="mean").tolist()))
        values = {f"train/{k}": v for k, v in running.items()}
        # The base lr (groups scaled by optim.lr_scale run at a multiple of it).
        values["train/lr"] = self.config.optim.lr * self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        self.history.append({"step": self.step, **values})
        if self.step % self.config.log_every == 0 or self.step == self.total_steps:
            self.accelerator.log(values, step=self.step)
            bar.set_postfix(loss=f"{running.get('total', 0.0):.4f}")
            logger.info("step %d: %s", self.step, ", ".join(f"{k}={v:.4g}" for k, v in values.items()))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean losses over the eval set (all processes), logged as ``eval/*``."""
        self.module.eval()
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros((), device=self.accelerator.device)
        for batch in self.eval_loader:
            for key, value in self._losses(batch).items():
                sums[key] = sums.get(key, torch.zeros((), device=count.device)) + value.detach().float()
            count += 1
        self.module.train()
        count = self.accelerator.reduce(count, reduction="sum")
        result = {f"eval/{k}": float(self.accelerator.reduce(v, reduction="sum") / count.clamp(min=1))
                  for k, v in sums.items()}
        self.accelerator.log(result, step=self.step)
        self.eval_history.append({"step": self.step, **result})
        logger.info("eval at step %d: %s", self.step, result)
        return result

    def _resume(self, resume: str | None) -> tuple[int, int]:
        """Restore the Accelerate state and the data position; returns ``(epoch, batches to skip)``."""
        if resume is None:
            return 0, 0
        folder = latest_checkpoint(self.output_dir) if resume == "auto" else Path(resume)
        if folder is None:
            logger.info("no checkpoint in %s: starting from step 0", self.output_dir)
            return 0, 0
        marker = read_marker(folder)  # refuses folders we did not write (pickled state inside)
        if marker["num_processes"] != self.accelerator.num_processes:
            raise ValueError(f"{folder} was written by {marker['num_processes']} process(es) but this run has "
                             f"{self.accelerator.num_processes}; the data position would differ — resume with the "
                             "same number of processes")
        # strict=False: checkpoints hold only the weights that train (see keep_trainable_weights).
        self.accelerator.load_state(str(folder), strict=False)
        self.step = marker["step"]
        logger.info("resumed from %s at step %d", folder, self.step)
        return marker["epoch"], marker["batch_in_epoch"]

    def _save_final(self) -> Path:
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        unwrapped = accelerator.unwrap_model(self.module)
        if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            state = accelerator.get_state_dict(self.module)  # gathered on the main process
            if accelerator.is_main_process:
                unwrapped.load_state_dict(state)
        final = self.output_dir / "final"
        if accelerator.is_main_process:
            self.pipe.model = unwrapped.model
            self.pipe.save_pretrained(final)
        accelerator.wait_for_everyone()
        return final


def _trackers(log_with: list[str] | str) -> list[str] | None:
    if log_with != "auto":
        return list(log_with) or None
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return None
    return ["tensorboard"]


def _flat_scalars(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → flat ``a/b`` keys with scalar values (what TensorBoard's hparams accept)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat_scalars(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float, str, bool)):
            out[f"{prefix}{key}"] = value
        elif value is not None:
            out[f"{prefix}{key}"] = str(value)
    return out


def keep_trainable_weights(models: list[Any], weights: list[dict[str, Any]], output_dir: str) -> None:
    """Accelerate save-state hook: a training checkpoint keeps trainable parameters and buffers only.

    The frozen parts (base LLM, encoder, decoders) come back from the model's own sources on resume, so a
    nextgpt-7b checkpoint is a few hundred MB instead of the ~14 GB of the whole fp16 model.
    """
    for index, model in enumerate(models):
        keep = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        keep |= {name for name, _ in model.named_buffers()}
        weights[index] = {key: value for key, value in weights[index].items() if key in keep}
