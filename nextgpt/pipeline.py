"""The public Python API: ``NextGPT`` (load, chat, stream, batch, save) and ``Conversation`` (multi-turn)."""
from __future__ import annotations

import copy
import json
import logging
import queue
import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from nextgpt.decoders import Decoder, build_decoder
from nextgpt.decoders.media_io import claim_path

from . import checkpoint
from .config import NextGPTConfig
from .events import DecodeProgress, Event, Finished, MediaReady, MediaStarted, TextDelta
from .generation import SignalGenerator
from .model import NextGPTModel
from .options import GenerationOptions, RuntimeOptions
from .prompting import PreparedPrompt, prepare_prompt
from .types import Media, MediaOutput, Message, Response

logger = logging.getLogger(__name__)

CARD_NAME = "card.json"

MessagesLike = Sequence[Message | dict] | str


class Cancelled(RuntimeError):
    """Raised inside a generation whose consumer went away."""


class ContextOverflow(ValueError):
    """The prompt and the answer's token budget do not fit the LLM's context (nothing was generated)."""


class NextGPT:
    """Any-to-any chat: text/image/audio/video in, text and generated media out.

    Build with ``NextGPT.from_preset("tiny")`` or ``NextGPT.from_pretrained(folder)``.
    """

    def __init__(self, model: NextGPTModel, decoders: dict[str, Decoder], runtime: RuntimeOptions | None = None,
                 base_dir: str | Path | None = None) -> None:
        self.model = model
        self.config = model.config
        self.decoders = decoders
        self.runtime = runtime or RuntimeOptions()
        self.base_dir = Path(base_dir) if base_dir else None
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._count_tokenizer = None

    # ---- construction --------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: NextGPTConfig, *, base_dir: str | Path | None = None,
                    runtime: RuntimeOptions | None = None) -> "NextGPT":
        runtime = runtime or RuntimeOptions()
        model = NextGPTModel.build(config, base_dir=base_dir, options=runtime)
        model.eval()
        decoders = {
            spec.name: build_decoder(
                spec.name, spec.decoder, base_dir=base_dir, allow_random_init=config.allow_random_init,
                seed=config.seed, device=runtime.device, dtype=runtime.torch_dtype,
            )
            for spec in config.output_modalities
        }
        return cls(model, decoders, runtime, base_dir)

    @classmethod
    def from_preset(cls, name: str, *, runtime: RuntimeOptions | None = None, **overrides: Any) -> "NextGPT":
        """Build a named preset (``tiny``, ``nextgpt-7b``); ``overrides`` are the preset's keyword arguments
        (e.g. ``llm_path=...``). Unknown names raise a KeyError that lists the presets."""
        from .presets import get_preset

        return cls.from_config(get_preset(name, **overrides), runtime=runtime)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, runtime: RuntimeOptions | None = None) -> "NextGPT":
        """Load a folder written by ``save_pretrained`` (config.json, tokenizer/, model.safetensors, ...).

        Raises:
            FileNotFoundError / ValueError: naming the file and what was expected.
        """
        path = Path(path)
        config = NextGPTConfig.load(path)
        pipe = cls.from_config(config, base_dir=path, runtime=runtime)
        checkpoint.load_trainable(pipe.model, path)
        return pipe

    @property
    def card(self) -> dict[str, Any]:
        """The checkpoint's ``card.json`` (``{"description": str, "examples": [{"text", "force"}]}``: what the app
        shows), or ``{}`` when the model has none or was not loaded from a folder."""
        if self.base_dir is None or not (self.base_dir / CARD_NAME).is_file():
            return {}
        try:
            card = json.loads((self.base_dir / CARD_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            logger.warning("ignoring unreadable %s: %s", self.base_dir / CARD_NAME, error)
            return {}
        return card if isinstance(card, dict) else {}

    def save_pretrained(self, path: str | Path) -> Path:
        """Write config.json, the tokenizer and the trainable weights (safetensors); components that have no
        weights elsewhere (randomly initialised or inside the source checkpoint) are saved into the folder."""
        return checkpoint.save_pretrained(self, path)

    # ---- chat ----------------------------------------------------------------------------------------
    def chat(self, messages: MessagesLike, options: GenerationOptions | None = None, **kwargs: Any) -> Response:
        """Answer one conversation. ``messages``: a string, or Message objects / dicts (see ``Message``).

        Keyword arguments are GenerationOptions fields (``seed=1, force={"image"}``)."""
        return self.chat_batch([messages], options, **kwargs)[0]

    def generate(self, prompt: str, *, image: Any = None, audio: Any = None, video: Any = None,
                 options: GenerationOptions | None = None, **kwargs: Any) -> Response:
        """One prompt (with optional media) → one response."""
        return self.chat([Message.user(prompt, image=image, audio=audio, video=video)], options, **kwargs)

    def chat_batch(self, conversations: Sequence[MessagesLike], options: GenerationOptions | Sequence[GenerationOptions]
                   | None = None, **kwargs: Any) -> list[Response]:
        """Answer several conversations together (one batched LLM pass, batched decoders)."""
        responses: list[Response] = []
        for event in self._run(conversations, options, kwargs, emit=None):
            responses.append(event)
        return responses

    def stream(self, messages: MessagesLike, options: GenerationOptions | None = None,
               **kwargs: Any) -> Iterator[Event]:
        """Yield TextDelta / MediaStarted / DecodeProgress / MediaReady events, then Finished(response).

        Closing the iterator early (e.g. a client disconnect) stops the generation at the next token.
        """
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        done = object()

        def work() -> None:
            try:
                for response in self._run([messages], options, kwargs, emit=events.put, should_stop=stop.is_set):
                    events.put(Finished(response))
            except BaseException as error:  # handed to the consumer thread, re-raised there
                events.put(error)
            finally:
                events.put(done)

        thread = threading.Thread(target=work, name="nextgpt-generate", daemon=True)
        thread.start()
        try:
            while True:
                item = events.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    @property
    def context_length(self) -> int | None:
        """Tokens the LLM can attend to (prompt + new tokens); None when its config does not say."""
        return getattr(self.model.llm.config, "max_position_embeddings", None)

    def count_prompt_tokens(self, messages: MessagesLike) -> int:
        """Prompt tokens of a conversation, media placeholders expanded, without loading or encoding any media.

        Lets a server refuse a request over the context before doing model work. Safe to call while another
        thread generates (it uses its own copy of the tokenizer).

        Raises:
            ValueError: the same prompt errors as ``chat`` (placeholder counts, unknown modality, text cap).
        """
        prompt = prepare_prompt(self.model, _as_messages(messages), self.config.encoder.limits.max_prompt_chars)
        with self._count_lock:
            if self._count_tokenizer is None:  # fast tokenizers refuse concurrent use of one instance
                self._count_tokenizer = copy.deepcopy(self.model.tokenizer)
            return len(self._count_tokenizer(prompt.text)["input_ids"])

    def conversation(self, system: str | None = None, options: GenerationOptions | None = None) -> "Conversation":
        return Conversation(self, system, options)

    # ---- the data path -------------------------------------------------------------------------------
    def _run(self, conversations: Sequence[MessagesLike], options, overrides: dict, emit: Callable | None,
             should_stop: Callable[[], bool] | None = None) -> Iterator[Response]:
        per_row = _per_row_options(options, overrides, len(conversations))
        outputs = [spec.name for spec in self.config.output_modalities]
        for o in per_row:
            o.check_modalities(outputs)
        with self._lock, torch.no_grad():
            timings: dict[str, float] = defaultdict(float)
            start = time.perf_counter()
            prompts = [prepare_prompt(self.model, _as_messages(c), self.config.encoder.limits.max_prompt_chars)
                       for c in conversations]
            embeds, mask, prompt_lengths = self._embed_prompts(prompts, per_row, timings)
            seeds = [o.seed if o.seed is not None else random.randrange(2**31) for o in per_row]
            generators = [torch.Generator().manual_seed(s) for s in seeds]
            t = time.perf_counter()
            stops = tuple(getattr(_template(self.config), "stop", ())) + tuple(s for o in per_row for s in o.stop)
            generator = SignalGenerator(
                self.model.llm, self.model.tokenizer, self.model.signal_token_ids,
                never_generate=[self.model.added_token_ids[t] for t in [self.config.media_token,
                                                                         *self.config.reserved_tokens]],
                stop_strings=stops,
            )
            rows = generator.generate(
                embeds, mask, per_row, generators=generators,
                on_text=(lambda row, delta: emit(TextDelta(delta))) if emit else None,
                on_signal=(lambda row, modality: emit(MediaStarted(modality))) if emit else None,
                should_stop=should_stop,
            )
            timings["llm"] += time.perf_counter() - t
            media = self._decode(rows, per_row, seeds, timings, emit)
            total = time.perf_counter() - start
            for index, row in enumerate(rows):
                yield Response(
                    text=row.text, media=media[index], raw_text=row.raw_text, finish_reason=row.finish_reason,
                    timings={**timings, "total": total}, prompt_tokens=prompt_lengths[index],
                    completion_tokens=len(row.token_ids), warnings=prompts[index].warnings + row.warnings,
                )

    def _embed_prompts(self, prompts: list[PreparedPrompt], per_row: list[GenerationOptions],
                       timings: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        t = time.perf_counter()
        all_media = [m for p in prompts for m in p.media]
        tokens_by_item: list[torch.Tensor | None] = [None] * len(all_media)
        for modality in {m.modality for m in all_media}:
            indices = [i for i, m in enumerate(all_media) if m.modality == modality]
            encoded = self.model.encode_media(modality, [all_media[i].encoder_input for i in indices])
            for i, tokens in zip(indices, encoded):
                tokens_by_item[i] = tokens
        timings["encode"] += time.perf_counter() - t
        tokenizer = self.model.tokenizer
        batch = tokenizer([p.text for p in prompts], return_tensors="pt", padding=True)
        input_ids = batch["input_ids"].to(self.model.device)
        mask = batch["attention_mask"].to(self.model.device)
        lengths = [int(x) for x in mask.sum(-1)]
        context = getattr(self.model.llm.config, "max_position_embeddings", None)
        for length, o in zip(lengths, per_row):
            if context is not None and length + o.max_new_tokens > context:
                raise ContextOverflow(
                    f"prompt tokens ({length}) + max_new_tokens ({o.max_new_tokens}) exceed the model's context "
                    f"of {context} tokens; shorten the conversation or lower max_new_tokens"
                )
        media_tokens = torch.cat(tokens_by_item, dim=0) if tokens_by_item else None  # [items × T, H]
        embeds = self.model.embed(input_ids, media_tokens)
        return embeds, mask, lengths

    def _decode(self, rows, per_row: list[GenerationOptions], seeds: list[int], timings: dict[str, float],
                emit: Callable | None) -> list[list[MediaOutput]]:
        results: list[list[MediaOutput]] = [[] for _ in rows]
        # One decoder call per modality and per distinct set of decoder settings in the batch.
        jobs: dict[tuple, list[tuple[int, int, Any]]] = defaultdict(list)
        placed: dict[tuple[int, int], MediaOutput] = {}
        for row_index, row in enumerate(rows):
            o = per_row[row_index]
            for order, span in enumerate(row.spans):
                if not o.decode:  # planned, not made (GenerationOptions.decode)
                    placed[(row_index, order)] = MediaOutput(span.modality, np.zeros(0, dtype=np.float32),
                                                             seed=seeds[row_index] + order)
                    continue
                extra = repr(sorted(o.decoder_kwargs.get(span.modality, {}).items()))
                settings = (o.num_inference_steps, o.guidance_scale, extra)
                jobs[(span.modality, settings)].append((row_index, order, span))
        for (modality, _), items in jobs.items():
            t = time.perf_counter()
            conditions = self.model.signal_conditions(
                modality, torch.stack([s.hidden for _, _, s in items]), torch.stack([s.embeds for _, _, s in items]))
            timings["project"] += time.perf_counter() - t
            decoder = self.decoders[modality]
            first = per_row[items[0][0]]
            item_seeds = [seeds[r] + order for r, order, _ in items]
            t = time.perf_counter()
            if self.runtime.offload_idle_decoders:
                decoder.to(self.runtime.device)
            kwargs = dict(first.decoder_kwargs.get(modality, {}))
            decoded = decoder.generate(
                conditions,
                generator=[torch.Generator(decoder.device).manual_seed(s) for s in item_seeds],
                num_inference_steps=first.num_inference_steps,
                guidance_scale=first.guidance_scale,
                callback=(lambda step, total: emit(DecodeProgress(modality, step, total))) if emit else None,
                **kwargs,
            )
            if self.runtime.offload_idle_decoders:
                decoder.to("cpu")
            timings[f"decode_{modality}"] += time.perf_counter() - t
            t = time.perf_counter()
            for (row_index, order, _), item, seed in zip(items, decoded, item_seeds):
                output = MediaOutput(modality, item.data, item.rate, seed=seed)
                directory = per_row[row_index].output_dir
                if directory is not None:  # image-1.png, image-2.png, ...: short, never overwritten
                    output.path = decoder.save(item, claim_path(directory, modality, decoder.file_extension))
                placed[(row_index, order)] = output
                if emit:
                    emit(MediaReady(output))
            timings["save"] += time.perf_counter() - t
        for (row_index, order), output in sorted(placed.items()):
            results[row_index].append(output)
        return results


class Conversation:
    """Multi-turn chat that keeps history; generated media can be passed back in as inputs.

    Example:
        >>> conv = pipe.conversation()
        >>> first = conv.say("draw a red circle", force={"image"})
        >>> conv.say("make a sound for it", image=first.media[0].as_input().source)
    """

    def __init__(self, pipe: NextGPT, system: str | None = None, options: GenerationOptions | None = None) -> None:
        self.pipe = pipe
        self.options = options
        self.messages: list[Message] = [Message("system", system)] if system else []
        self.responses: list[Response] = []

    def say(self, text: str = "", *, image: Any = None, audio: Any = None, video: Any = None,
            media: list[Media] | None = None, **kwargs: Any) -> Response:
        message = Message.user(text, image=image, audio=audio, video=video, media=media)
        response = self.pipe.chat([*self.messages, message], self.options, **kwargs)
        self.messages += [message, Message("assistant", response.raw_text)]
        self.responses.append(response)
        return response

    @property
    def last_media(self) -> list[MediaOutput]:
        return self.responses[-1].media if self.responses else []

    def undo(self) -> None:
        """Forget the last exchange."""
        if self.responses:
            self.messages = self.messages[:-2]
            self.responses.pop()

    def reset(self) -> None:
        self.messages = [m for m in self.messages if m.role == "system"]
        self.responses = []


def _as_messages(messages: MessagesLike) -> list[Message | dict]:
    return [Message.user(messages)] if isinstance(messages, str) else list(messages)


def _per_row_options(options, overrides: dict, count: int) -> list[GenerationOptions]:
    if options is None or isinstance(options, GenerationOptions):
        base = options or GenerationOptions()
        fields = {**base.__dict__, **overrides}
        return [GenerationOptions(**fields) for _ in range(count)]
    options = list(options)
    if len(options) != count:
        raise ValueError(f"got {len(options)} GenerationOptions for {count} conversations")
    return options


def _template(config: NextGPTConfig) -> Any:
    from nextgpt.dialogs.templates import get_template

    return get_template(config.template)
