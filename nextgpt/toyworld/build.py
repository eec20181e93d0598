"""``nextgpt toyworld build``: the whole toy-world recipe, from nothing to an evaluated ``save_pretrained`` folder.

Every step writes one folder under ``out`` and is skipped when that folder is already complete (so an interrupted
build resumes, and parts trained elsewhere with the same code can be dropped in):

| step | folder | what |
|---|---|---|
| data | ``world/`` | the world's media, training and held-out files (``build_dataset``) |
| judges | ``judges/`` | attribute classifiers on ground-truth renderings |
| encoder | ``parts/encoder/`` | toy ImageBind, contrastive (``train_toy_encoder``) |
| llm | ``parts/llm/`` | BPE tokenizer + tiny LLaMA (``train_toy_llm``) |
| decoder-X | ``parts/decoders/X/`` | diffusers pipeline per output modality (``train_toy_decoder``) |
| base | ``base/`` | the parts wired by :func:`toy_config` (random projectors), a ``save_pretrained`` folder |
| stage1–3 | ``stage{1,2,3}/final/`` | NExT-GPT's stages: :class:`nextgpt.training.Trainer` + ``RECIPE_DIR`` configs |
| model | ``model/`` | stage 3's folder in float16 + ``eval_toyworld.json`` (held-out split) + card + ``build.json`` |

:class:`Recipe` holds every budget: the defaults are the full recipe (≈ 2 h on a 2-core CPU), ``Recipe.fast()`` the
≈ 30 min one, ``Recipe.quick()`` the seconds-long version the tests run.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from nextgpt.config import DecoderConfig, LLMConfig, ModalitySpec, NextGPTConfig, ProjectorConfig
from nextgpt.threads import limit_cpu_threads

from .prompts import MODEL_MODALITIES

logger = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).resolve().parent.parent / "assets" / "toyworld-recipe"
"""The stage configs of the recipe (YAML, the schema of ``nextgpt train``)."""

SHIPPED_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "toyworld"
"""Where the package keeps the toy-world checkpoint it ships (the default model of demo, app, serve and agent)."""

OUTPUT_MODALITIES = MODEL_MODALITIES  # the model's modalities, in its config's order (what the agent lists)
INPUT_PROJECTOR = {"num_tokens": 8, "hidden_dim": 256}
"""Each media item becomes 8 LLM tokens through a 2-layer MLP. Measured with one linear token (the released
design), stage 1 learned nothing: the toy LLM, pretrained with captions as text in place of media, copies words
from its prompt, and one soft token cannot stand for the 4–5 words of a caption (captioning at chance, 400 steps)."""
SIGNAL_PREFIX = {"image": "IMG", "video": "VID", "audio": "AUD"}
WRAP = {"image": ("<Img>", "</Img>"), "video": ("<Vid>", "</Vid>"), "audio": ("<Aud>", "</Aud>")}
DONE = ".done.json"


JUDGES_SUBDIR = "judges"
"""The attribute judges travel with the shipped model (``SHIPPED_MODEL_DIR / judges``): demo and tests read them."""


def shipped_model() -> Path | None:
    """The shipped toy-world checkpoint folder, or ``None`` when this installation has none."""
    return SHIPPED_MODEL_DIR if (SHIPPED_MODEL_DIR / "config.json").is_file() else None


def shipped_judges() -> Path | None:
    """The judges shipped beside the toy-world model, or ``None``."""
    folder = SHIPPED_MODEL_DIR / JUDGES_SUBDIR
    return folder if (folder / "classifiers.json").is_file() else None


@dataclass
class Recipe:
    """Every budget of the build. The defaults are the full recipe: on the 2-core CPU with ``jobs=2`` the parts are
    ≈ 95 min (estimated from each part's time, docs/toyworld.md; ≈ 30 min with the decoders on a GPU,
    ``decoder_device="cuda"``), then ≈ 6 min of stages and ≈ 23 min of evaluation on the whole held-out split.
    :meth:`fast` is the whole build in 20–24 min there (measured; ≈ 28 min on the slowest day's step times),
    :meth:`quick` in seconds."""

    seed: int = 0
    data_size: str = "full"
    encoder_steps: int | None = None  # None: the trainer's default
    llm_steps: int | None = None
    encoder_options: dict[str, Any] = field(default_factory=dict)  # more train_toy_encoder kwargs (sizes)
    llm_options: dict[str, Any] = field(default_factory=dict)  # more train_toy_llm kwargs (how much text)
    decoder_steps: dict[str, int | None] = field(default_factory=dict)  # modality → UNet steps (None: default)
    decoder_vae_steps: dict[str, int | None] = field(default_factory=dict)
    decoder_batch_size: dict[str, int | None] = field(default_factory=dict)  # modality → clips per UNet step
    decoder_device: str = "cpu"  # where the decoders train (cuda: minutes instead of the video decoder's ≈ 80)
    decoder_eval_count: int = 20  # held-out generations each decoder step judges (40 took the video step 194 s)
    judge_options: dict[str, int] = field(default_factory=dict)  # train_classifier's train_size, epochs, test_size
    signal_tokens: int = 4
    stage_overrides: dict[int, list[str]] = field(default_factory=dict)  # stage → extra `--set` overrides
    eval_limit: int | None = None  # dialogues per eval file (None: the whole held-out split)
    eval_inference_steps: int | None = None  # diffusion steps of eval generations (None: each decoder's default)
    validation_per_modality: int = 0  # > 0: also route a validation set of the training combinations (this many
    # items per modality and file; routing only, decoders not run) → model/eval_toyworld-validation-routing.json
    feature_cache: bool = True  # encode each stage's media and caption targets once (nextgpt data cache)
    storage_dtype: str = "float16"  # weights of the final folder as stored (loaded back in float32); evaluated so
    threads: int = 1
    jobs: int = 1  # processes that train the parts (encoder, LLM, decoders) side by side; each uses ``threads``;
    # the stages and the evaluation run alone after them, on ``threads × jobs`` threads, at most the cores
    part_order: tuple[str, ...] = ()  # the order the ``jobs`` processes take the parts and the data up, each of
    # ToyWorldBuild.PARALLEL_STEPS once (empty: that order, which balances the full recipe's budgets)

    @classmethod
    def fast(cls, seed: int = 0) -> "Recipe":
        """The whole recipe in < 30 min on a 2-core CPU (``jobs=2``): the encoder, the image decoder and the
        evaluation (30 held-out dialogues per file) on smaller budgets; the LLM and the stages as in the full recipe;
        the audio and video decoders only trained through (70 and 60 UNet steps: at 300 their generations were
        judged right on no attribute beyond chance either, docs/toyworld.md; the audio VAE 60 steps, so that its
        log-frequency frames, 1.4–1.6× the cost of a step on the linear ones, keep the part at ≈ 96 s). The LLM, the
        longest part, is taken up first and the other parts fill the second process beside it.

        The LLM keeps its full budget because it is what the stages need most: with the 400-step LLM of a first
        fast build (and the shipped model's other parts) held-out captioning was 0.0 / 0.0 / 0.1 and tool calls
        0.03; with the 500-step encoder instead (and the shipped LLM) 0.6 / 0.0 / 0.6 and 0.47 (30 dialogues per
        file; docs/toyworld.md, "The fast recipe")."""
        return cls(seed=seed, encoder_steps=500,
                   decoder_steps={"image": 800, "audio": 70, "video": 60},
                   decoder_vae_steps={"audio": 60, "video": 100},
                   decoder_batch_size={"video": 4},
                   decoder_eval_count=10, eval_limit=30, jobs=2,
                   part_order=("llm", "decoder-video", "decoder-audio", "encoder", "decoder-image", "data"))

    @classmethod
    def quick(cls, seed: int = 0) -> "Recipe":
        """A few steps of everything: checks that the recipe runs end to end (tests), learns nothing useful."""
        few = {m: 3 for m in OUTPUT_MODALITIES}
        stage = ["max_steps=3", "data.batch_size=4", "log_every=1"]
        return cls(seed=seed, data_size="small", encoder_steps=3, llm_steps=3,
                   encoder_options={"eval_per_modality": 5, "probe_renderings": 16},
                   llm_options={"train_dialogues": 200, "eval_dialogues": 20, "tool_dialogues": 30,
                                "file_questions": 30, "copy_probe": 4},
                   decoder_steps=dict(few),
                   decoder_vae_steps=dict(few), decoder_eval_count=0,
                   judge_options={"train_size": 64, "epochs": 1, "test_size": 16},
                   stage_overrides={1: stage, 2: stage, 3: stage},
                   eval_limit=2, eval_inference_steps=2, validation_per_modality=1)


def stage_threads(recipe: Recipe) -> int:
    """Torch threads of the stages and the evaluation, which run alone after the parts: the parts' ``threads ×
    jobs``, at most the machine's cores. Measured on 2 cores (stage 1, 400 cached steps): 2 threads 24.7–26.0 s,
    4 threads 39.9–40.2 s."""
    import os

    return max(1, min(recipe.threads * max(1, recipe.jobs), os.cpu_count() or 1))


def _run_part(out: str, recipe: Recipe, judges: str, name: str) -> None:
    """One part step in a worker process of ``ToyWorldBuild._parts_in_parallel``."""
    limit_cpu_threads(recipe.threads)  # BLAS too: its per-core pool stalls beside the other worker
    handler = logging.StreamHandler()
    handler.setFormatter(_PartFormatter(name))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    ToyWorldBuild(out, recipe, judges=judges).part(name)


class _PartFormatter(logging.Formatter):
    """Tags a worker's log lines with the part it trains (the build's own step lines carry their tag already)."""

    def __init__(self, part: str) -> None:
        super().__init__("%(message)s")
        self.part = part

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return line if line.startswith("[") else f"[{self.part}] {line}"


def toy_config(parts: Path, *, signal_tokens: int = 4, seed: int = 0) -> NextGPTConfig:
    """The toy-world model: the trained parts in ``parts`` (paths relative to it), linear input projectors and
    transformer output projectors sized to each decoder's conditioning (``decoder.json``)."""
    from .train_encoder import load_toy_encoder_config

    encoder = load_toy_encoder_config(parts / "encoder")
    encoder = encoder.model_copy(update={"path": f"encoder/{encoder.path}"})
    llm = LLMConfig(path="llm/llm", tokenizer="llm/tokenizer")
    modalities = []
    for name in OUTPUT_MODALITIES:
        report = json.loads((parts / "decoders" / name / "decoder.json").read_text(encoding="utf-8"))
        saved = DecoderConfig(**report["config"])
        decoder = saved.model_copy(update={"path": f"decoders/{name}"})
        width = max(32, saved.condition_dim)
        output = ProjectorConfig(kind="transformer", params={
            "d_model": width, "nhead": 4, "num_encoder_layers": 1, "num_decoder_layers": 1,
            "dim_feedforward": 2 * width})
        modalities.append(ModalitySpec(
            name=name, signal_prefix=SIGNAL_PREFIX[name], num_signal_tokens=signal_tokens, wrap=WRAP[name],
            input_projector=ProjectorConfig(kind="mlp", params=dict(INPUT_PROJECTOR)), output_projector=output,
            decoder=decoder))
    return NextGPTConfig(name="toyworld", llm=llm, encoder=encoder, modalities=modalities,
                         template="vicuna_v0", shared_input_projector=True, allow_random_init=False, seed=seed)


def ship(model_dir: str | Path, dest: str | Path = SHIPPED_MODEL_DIR) -> Path:
    """Copy a built model folder (``OUT/model``) to ``dest`` — by default the package's shipped model — without
    the build's bookkeeping files; the previous shipped model is replaced only once the copy is complete.

    Raises:
        FileNotFoundError: when ``model_dir`` is not a finished build (no config.json or eval report).
    """
    source, dest = Path(model_dir), Path(dest)
    for name in ("config.json", "eval_toyworld.json", "card.json"):
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source} has no {name}: ship the model folder of a finished "
                                    "`nextgpt toyworld build` (OUT/model)")
    temp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(temp, ignore_errors=True)
    shutil.copytree(source, temp, ignore=shutil.ignore_patterns(DONE))
    shutil.rmtree(dest, ignore_errors=True)
    temp.rename(dest)
    return dest


def store_weights_as(folder: Path, dtype: Any) -> int:
    """Rewrite every float32 tensor of every ``*.safetensors`` under ``folder`` in ``dtype`` (metadata kept);
    components load them back in their runtime dtype. Returns the bytes saved."""
    import torch
    from safetensors import safe_open

    from nextgpt.checkpoint import write_weights

    saved = 0
    for path in sorted(folder.rglob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
            state = {key: handle.get_tensor(key) for key in handle.keys()}
        before = path.stat().st_size
        state = {k: v.to(dtype) if v.dtype == torch.float32 else v for k, v in state.items()}
        write_weights(state, path, metadata=metadata)
        saved += before - path.stat().st_size
    return saved


HEADLINE = ("captioning", "generation", "routing", "conversion", "retrieval_at_1")


def headline(report: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{metric: {modality: accuracy}}`` of an ``evaluate_checkpoint`` report (None: no eval item)."""
    rows = report.get("per_modality", {})
    return {metric: {m: row.get(metric) for m, row in rows.items()} for metric in HEADLINE}


def _reliable(report: dict[str, Any], floor: float = 0.9) -> str:
    """A sentence naming the attributes the model reads from media at ``floor`` or better (held out)."""
    captioning = report.get("per_attribute", {}).get("captioning", {})
    good = [f"{m} {name}" for m, names in captioning.items() for name, value in names.items()
            if value is not None and value >= floor]
    if not good:
        return ""
    return f"Read reliably from media (≥ {floor:.0%} held out): " + ", ".join(good) + "; see eval_toyworld.json."


def model_card(report: dict[str, Any]) -> dict[str, Any]:
    """``card.json`` of the toy-world model: what the app shows (description with the measured accuracies,
    example requests in the world's language)."""
    from .demo import demo_turns
    from .language import caption
    from .prompts import INSTRUCTIONS, NOUN
    from .world import Meaning

    table = headline(report)

    def mean(metric: str) -> str:
        values = [v for v in table[metric].values() if isinstance(v, (int, float))]
        return f"{sum(values) / len(values):.0%}" if values else "n/a"

    description = (
        "The toy-world model shipped with nextgpt: every part trained from scratch on a CPU in a synthetic world of "
        "shapes, tones and moving shapes (docs/toyworld.md). It only knows that world's words: shapes (circle, "
        "square, triangle, cross), colours, sizes, positions; tones (low/middle/high; sine/square/sawtooth; steady/"
        "beeping); videos of a shape moving left/right/up/down. On held-out combinations: captioning "
        f"{mean('captioning')}, generation {mean('generation')}, routing {mean('routing')}, conversion "
        f"{mean('conversion')} (all attributes right; means over modalities). " + _reliable(report))
    examples = [{"text": turn.prompt} for turn in demo_turns() if turn.attach is None and turn.expected]
    examples.append({"text": INSTRUCTIONS["generate"][1].format(
        noun=NOUN["audio"], caption=caption(Meaning("audio", ("high", "square", "beeping"))))})
    return {"description": description, "examples": examples}


def _part_report(folder: Path) -> dict[str, Any]:
    """What a part trained outside this build reports about itself (its own report file), for the build record."""
    for name in ("encoder_report.json", "llm_report.json", "decoder.json", "classifiers.json"):
        path = folder / name
        if path.is_file():
            report = json.loads(path.read_text(encoding="utf-8"))
            seconds = report.get("seconds", 0.0)
            if isinstance(seconds, dict):  # decoders: per phase
                seconds = sum(v for k, v in seconds.items() if k != "eval")
            origin = {k: report[k] for k in ("extracted_from", "budget", "trained_on") if k in report}
            return {"seconds": seconds, "trained_outside_the_build": True, "report": name, **origin}
    return {"trained_outside_the_build": True}


@dataclass
class StepRecord:
    name: str
    seconds: float
    reused: bool
    summary: dict[str, Any] = field(default_factory=dict)


class ToyWorldBuild:
    """Runs the recipe into ``out`` (see the module docstring); ``run()`` returns the final model folder."""

    def __init__(self, out: str | Path, recipe: Recipe | None = None, *, judges: str | Path | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.out = Path(out)
        self.recipe = recipe or Recipe()
        self.judges_dir = Path(judges) if judges else self.out / "judges"
        self.log = log or logger.info  # the CLI passes print
        self.records: list[StepRecord] = []

    # ---- bookkeeping ----------------------------------------------------------------------------------------
    def _step(self, name: str, folder: Path, work: Callable[[], dict[str, Any]],
              complete: Callable[[], bool] | None = None) -> None:
        """Run ``work`` unless ``folder`` is complete (its marker, or ``complete()`` for parts made elsewhere)."""
        marker = folder / DONE
        if marker.is_file() or (complete is not None and complete()):
            summary = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else _part_report(folder)
            self.records.append(StepRecord(name, float(summary.get("seconds", 0.0)), True, summary))
            self.log(f"[{name}] reusing {folder}")
            return
        self.log(f"[{name}] ...")
        started = time.perf_counter()
        summary = work() or {}
        seconds = round(time.perf_counter() - started, 1)
        summary = {"seconds": seconds, **summary}
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        self.records.append(StepRecord(name, seconds, False, summary))
        self.log(f"[{name}] done in {seconds:.0f} s")

    @property
    def parts(self) -> Path:
        return self.out / "parts"

    # ---- steps ----------------------------------------------------------------------------------------------
    def data(self) -> None:
        from .dataset import build_dataset

        folder = self.out / "world"
        self._check_world_version(folder)
        self._step("data", folder, lambda: {"files": build_dataset(folder, seed=self.recipe.seed,
                                                                   sizes=self.recipe.data_size)["files"]},
                   self._same_world)

    def _same_world(self) -> bool:
        """A world written elsewhere by this version of the world's code, with this seed and size, is the same
        files (one of another version is refused: :meth:`_check_world_version`)."""
        from .dataset import WORLD_VERSION, get_sizes

        manifest = self.out / "world" / "manifest.json"
        if not manifest.is_file():
            return False
        written = json.loads(manifest.read_text(encoding="utf-8"))
        return (written.get("world") == WORLD_VERSION and written.get("seed") == self.recipe.seed
                and written.get("sizes") == asdict(get_sizes(self.recipe.data_size)))

    def _check_world_version(self, folder: Path) -> None:
        """Refuse a world folder written by another version of the world's code: its files are not what this
        version draws, and the stages trained on them are not this recipe's."""
        from .dataset import WORLD_VERSION

        manifest = folder / "manifest.json"
        if not manifest.is_file():
            return
        written = json.loads(manifest.read_text(encoding="utf-8")).get("world")
        if written != WORLD_VERSION:
            raise ValueError(f"{folder} holds a toy world of version {written!r}, but this version of nextgpt writes "
                             f"{WORLD_VERSION!r} (its training files differ). Build into a new folder, or remove "
                             f"{folder} and the stages trained on it ({self.out}/stage1, stage2, stage3, model) to "
                             f"build them again; the parts (encoder, LLM, decoders, judges) are kept.")

    def judges(self) -> None:
        from .classifiers import AttributeClassifiers

        folder = self.judges_dir

        def work() -> dict[str, Any]:
            judges = AttributeClassifiers.train(seed=self.recipe.seed, **self.recipe.judge_options)
            judges.save(folder)
            return {m: r["accuracy"] for m, r in judges.reports.items()}

        self._step("judges", folder, work, lambda: (folder / "classifiers.json").is_file())

    def encoder(self) -> None:
        from .train_encoder import train_toy_encoder

        folder = self._part_folder("encoder")
        kwargs = dict(self.recipe.encoder_options)
        if self.recipe.encoder_steps is not None:
            kwargs["steps"] = self.recipe.encoder_steps

        def work() -> dict[str, Any]:
            report = train_toy_encoder(folder, seed=self.recipe.seed, **kwargs)
            return {"retrieval_at_1": report.retrieval_at_1, "attribute_accuracy": report.attribute_accuracy}

        self._step("encoder", folder, work, lambda: self._part_made_elsewhere("encoder"))

    def llm(self) -> None:
        from .train_llm import train_toy_llm

        folder = self._part_folder("llm")
        kwargs = dict(self.recipe.llm_options)
        if self.recipe.llm_steps is not None:
            kwargs["steps"] = self.recipe.llm_steps

        def work() -> dict[str, Any]:
            report = train_toy_llm(folder, seed=self.recipe.seed, **kwargs)
            return {key: value for key, value in report.to_dict().items() if "perplexity" in key}

        self._step("llm", folder, work, lambda: self._part_made_elsewhere("llm"))

    def decoders(self, modalities: tuple[str, ...] = OUTPUT_MODALITIES) -> None:
        """The decoder steps of ``modalities`` (default all; one each lets separate processes train them side by
        side into the same build)."""
        from .train_decoders import train_toy_decoder

        for modality in modalities:
            name = f"decoder-{modality}"
            folder = self._part_folder(name)
            eval_count = self.recipe.decoder_eval_count

            def work(modality: str = modality, folder: Path = folder, eval_count: int = eval_count) -> dict:
                report = train_toy_decoder(
                    modality, folder, seed=self.recipe.seed, steps=self.recipe.decoder_steps.get(modality),
                    vae_steps=self.recipe.decoder_vae_steps.get(modality),
                    batch_size=self.recipe.decoder_batch_size.get(modality), eval_count=eval_count,
                    judges=self.judges_dir if eval_count > 0 else None, device=self.recipe.decoder_device)
                return {"accuracy": report.accuracy}

            self._step(name, folder, work, lambda name=name: self._part_made_elsewhere(name))

    def base(self) -> None:
        from nextgpt.pipeline import NextGPT

        folder = self.out / "base"

        def work() -> dict[str, Any]:
            config = toy_config(self.parts, signal_tokens=self.recipe.signal_tokens, seed=self.recipe.seed)
            pipe = NextGPT.from_config(config, base_dir=self.parts)
            pipe.save_pretrained(folder)
            return {"trainable_parameters": sum(p.numel() for p in pipe.model.parameters() if p.requires_grad)}

        self._step("base", folder, work, lambda: (folder / "config.json").is_file() and (folder / DONE).is_file())

    def stage(self, number: int) -> Path:
        from nextgpt.training import Trainer, load_train_config

        previous = self.out / "base" if number == 1 else self.out / f"stage{number - 1}" / "final"
        run_dir = self.out / f"stage{number}"
        world = self.out / "world"
        files = {1: ["train_comprehension.jsonl"], 2: ["train_generation.jsonl"],
                 3: ["train_instructions.jsonl", "train_dialogues.jsonl", "train_tools.jsonl"]}[number]
        overrides = [
            f"model.checkpoint={previous}",
            f"output_dir={run_dir}",
            "data.train=" + json.dumps([str(world / f) for f in files]),
            f"seed={self.recipe.seed}",
            *self.recipe.stage_overrides.get(number, []),
        ]

        if self.recipe.feature_cache:
            overrides.append(f"data.cache_dir={self.out / 'cache'}")

        def work() -> dict[str, Any]:
            config = load_train_config(RECIPE_DIR / f"stage{number}.yaml", overrides)
            if config.data.cache_dir is not None:
                self._fill_cache(config)
            trainer = Trainer(config)
            final = trainer.train()
            history = trainer.history
            return {"final": str(final), "steps": trainer.step, "trainable_parameters": trainer.trainable_count,
                    "first": history[0] if history else {}, "last": history[-1] if history else {}}

        self._step(f"stage{number}", run_dir, work, None)
        return run_dir / "final"

    @staticmethod
    def _fill_cache(config: Any) -> None:
        """Add this stage's media embeddings and caption targets to the shared feature cache (the frozen parts
        are the same in every stage, so one cache serves all three; what is cached already is skipped)."""
        from accelerate import Accelerator

        from nextgpt.training.cache_build import build_cache
        from nextgpt.training.data import read_dialogues
        from nextgpt.training.trainer import load_pipeline

        pipe = load_pipeline(config.model_copy(update={"lora": None}), "cpu")
        data = config.data
        dialogues = read_dialogues([*data.train, *data.eval], [s.name for s in pipe.config.modalities],
                                   root=data.root, format=data.format, task=data.task)
        build_cache(pipe, dialogues, data.cache_dir, Accelerator(), batch_size=32)

    def model(self) -> Path:
        folder = self.out / "model"

        def work() -> dict[str, Any]:
            import torch

            from nextgpt.checkpoint import make_readable
            from nextgpt.eval.toyworld_eval import REPORT_NAME, evaluate_checkpoint
            from nextgpt.options import GenerationOptions
            from nextgpt.pipeline import NextGPT

            from .classifiers import AttributeClassifiers

            temp = folder.with_name(folder.name + ".partial")
            shutil.rmtree(temp, ignore_errors=True)
            shutil.copytree(self.out / "stage3" / "final", temp)
            if self.recipe.storage_dtype != "float32":
                store_weights_as(temp, getattr(torch, self.recipe.storage_dtype))
            torch.manual_seed(self.recipe.seed)
            pipe = NextGPT.from_pretrained(temp)
            options = GenerationOptions(max_new_tokens=64, output_dir=None,
                                        num_inference_steps=self.recipe.eval_inference_steps)
            report = evaluate_checkpoint(pipe, self.out / "world", AttributeClassifiers.load(self.judges_dir),
                                         limit=self.recipe.eval_limit, out_path=temp / REPORT_NAME, options=options)
            report["eval_dir"] = "world"  # the build's data folder (not this machine's absolute path)
            (temp / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            if self.recipe.validation_per_modality > 0:
                self._route_validation(pipe, temp, options)
            shutil.copytree(self.judges_dir, temp / JUDGES_SUBDIR, ignore=shutil.ignore_patterns(DONE))
            make_readable(temp)
            (temp / "card.json").write_text(json.dumps(model_card(report), indent=2) + "\n", encoding="utf-8")
            build = {"recipe": asdict(self.recipe), "steps": [asdict(r) for r in self.records]}
            (temp / "build.json").write_text(json.dumps(build, indent=2, default=str) + "\n", encoding="utf-8")
            shutil.rmtree(folder, ignore_errors=True)
            temp.rename(folder)
            return {**headline(report), "multiturn": report.get("multiturn")}

        self._step("model", folder, work, None)
        return folder

    def _route_validation(self, pipe: Any, folder: Path, options: Any) -> None:
        """Write the validation set (``validation/``, training combinations) and route ``pipe`` on it without the
        decoders: a number to compare recipes by that does not read the held-out split."""
        from nextgpt.eval.toyworld_eval import evaluate_checkpoint, report_name

        from .classifiers import AttributeClassifiers
        from .dataset import build_validation

        data = self.out / "validation"
        if not (data / "targets.jsonl").is_file():
            build_validation(data, per_modality=self.recipe.validation_per_modality)
        out = folder / report_name("validation", routing_only=True)
        report = evaluate_checkpoint(pipe, data, AttributeClassifiers.load(self.judges_dir), out_path=out,
                                     options=options, routing_only=True)
        report["eval_dir"] = "validation"
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        self.log(f"[validation] training combinations, routing only: {report['routing_misses']['count']} routing "
                 f"misses → {out.name}")

    PART_STEPS = ("decoder-video", "decoder-audio", "encoder", "llm", "decoder-image")
    """The independent part steps, in the order ``jobs`` processes take them up, so that with the world's data last
    two processes end close together. One-thread times, each measured with another run beside it: video decoder
    ≈ 5700 s (VAE ≈ 260 s + 3000 UNet steps of 8 clips at ≈ 1.8 s; estimated from 1.55 s alone), audio decoder
    ≈ 2100 s (2000 UNet steps), encoder ≈ 1520 (1200 steps), LLM 1147, image decoder ≈ 920 (3000 UNet steps),
    data ≈ 60 s. Two processes then take {video, data} and {audio, encoder, LLM, image}, ≈ 5700 s each
    (docs/toyworld.md); with ``decoder_device="cuda"`` the video decoder takes minutes."""

    PARALLEL_STEPS = (*PART_STEPS, "data")
    """What the worker processes run: the parts, and the world's data, which only the stages read."""

    def part(self, name: str) -> None:
        """Run one of :attr:`PARALLEL_STEPS` by name."""
        if name.startswith("decoder-"):
            self.decoders((name.split("-", 1)[1],))
        elif name in ("encoder", "llm", "data"):
            getattr(self, name)()
        else:
            raise ValueError(f"unknown part step {name!r}; part steps: {list(self.PARALLEL_STEPS)}")

    def _parts_in_parallel(self) -> set[str]:
        """Run the unfinished :attr:`PARALLEL_STEPS` in ``recipe.jobs`` processes; returns the steps they ran (the
        sequential pass that follows then finds them complete, and records them as run by this build, not
        reused)."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        before = {name: self._part_done(name) for name in self.part_order()}
        todo = [name for name, done in before.items() if not done]
        if self.recipe.jobs <= 1 or len(todo) <= 1:
            return set()
        self.log(f"[parts] training {', '.join(todo)} in {self.recipe.jobs} processes")
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        with ProcessPoolExecutor(max_workers=self.recipe.jobs, mp_context=context) as pool:
            futures = [pool.submit(_run_part, str(self.out), self.recipe, str(self.judges_dir), name)
                       for name in todo]
            for future in futures:
                future.result()  # re-raises a worker's error here
        return set(todo)

    def part_order(self) -> tuple[str, ...]:
        """The order the worker processes take the parallel steps up: ``recipe.part_order``, or
        :attr:`PARALLEL_STEPS`.

        Raises:
            ValueError: when ``recipe.part_order`` does not list each parallel step exactly once.
        """
        order = tuple(self.recipe.part_order) or self.PARALLEL_STEPS
        if sorted(order) != sorted(self.PARALLEL_STEPS):
            raise ValueError(f"Recipe.part_order must list each of {list(self.PARALLEL_STEPS)} exactly once; got "
                             f"{list(order)}")
        return order

    def _part_folder(self, name: str) -> Path:
        return self.parts / ("decoders/" + name.split("-", 1)[1] if name.startswith("decoder-") else name)

    def _part_made_elsewhere(self, name: str) -> bool:
        """A part folder without this build's marker is complete when its trainer's last file is there."""
        last = {"encoder": "encoder.json", "llm": "llm/config.json"}.get(name, "decoder.json")
        return (self._part_folder(name) / last).is_file()

    def _part_done(self, name: str) -> bool:
        if name == "data":
            return (self.out / "world" / DONE).is_file() or self._same_world()
        return (self._part_folder(name) / DONE).is_file() or self._part_made_elsewhere(name)

    def run(self) -> Path:
        limit_cpu_threads(self.recipe.threads)
        started = time.perf_counter()
        self.part_order()  # a bad order is refused before any step runs
        parallel = self.recipe.jobs > 1
        if not parallel:
            self.data()  # else the workers write it beside the parts: only the stages read it
        self.judges()  # before the parts: the decoders' own evaluations read the judges
        ran = self._parts_in_parallel()
        for name in self.part_order() if parallel else ("encoder", "llm", "decoder-image", "decoder-video",
                                                        "decoder-audio"):
            self.part(name)
            if name in ran:  # trained just now by a worker process
                self.records[-1].reused = False
        limit_cpu_threads(stage_threads(self.recipe))  # the rest runs alone
        self.base()
        for number in (1, 2, 3):
            self.stage(number)
        folder = self.model()
        total = sum(r.seconds for r in self.records)
        self.log(f"built {folder} in {time.perf_counter() - started:.0f} s (all steps, reused ones at their "
                 f"recorded time: {total:.0f} s)")
        return folder
