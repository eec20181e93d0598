"""Core benchmark on the tiny preset (CPU), every ratio measured in this one run.

1. overhead: end-to-end turn ÷ (direct transformers ``generate`` + output projector + direct diffusers call)
   on the same prompt embeddings, token count and diffusion settings — target ≤ 1.05.
2. decoder reuse: second media turn ÷ first (the first loads the decoder from the checkpoint folder) — target
   ≤ 0.5; and, for contrast, the official code's habit of reloading the pipeline every call.
3. memory: peak RSS of a text-only session ÷ a session that used all decoders — target ≤ 0.5 (separate
   processes; also reported above the post-import baseline, because on the tiny preset the decoders are small
   next to the Python/torch runtime).

Run: python bench/bench_core.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(mode: str) -> None:
    """Run in a subprocess: report baseline and peak RSS for a text-only or all-decoders session."""
    import torch  # noqa: F401

    from nextgpt import GenerationOptions, NextGPT

    pipe = NextGPT.from_preset("tiny")
    baseline = rss_mib()
    outputs = [m.name for m in pipe.config.output_modalities]
    if mode == "text":
        pipe.chat("hello there", GenerationOptions(max_new_tokens=16, forbid=set(outputs), output_dir=None))
    else:
        pipe.chat("everything", GenerationOptions(max_new_tokens=16, force=set(outputs), output_dir=None))
    print(json.dumps({"baseline": baseline, "peak": rss_mib()}))


def timed(fn, repeats: int) -> float:
    """Minimum wall time over ``repeats`` calls (the least disturbed by other load on the machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(a, b, repeats: int) -> tuple[float, float]:
    """Time two functions alternately so that drifting machine load hits both alike; minima."""
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(timed(a, 1))
        times_b.append(timed(b, 1))
    return min(times_a), min(times_b)


def overhead(repeats: int) -> tuple[float, float]:
    import torch

    from nextgpt import GenerationOptions, NextGPT
    from nextgpt.prompting import prepare_prompt

    pipe = NextGPT.from_preset("tiny")
    model, decoder = pipe.model, pipe.decoders["image"]
    options = GenerationOptions(force={"image"}, max_new_tokens=12, seed=0, output_dir=None)
    ours = lambda: pipe.chat("draw a red circle", options)  # noqa: E731
    first = ours()  # warm: builds the decoder
    new_tokens = first.completion_tokens
    signal_ids = model.signal_token_ids["image"]
    steps = decoder.config.defaults["num_inference_steps"]

    def direct() -> None:
        with torch.no_grad():
            prompt = prepare_prompt(model, [{"role": "user", "content": "draw a red circle"}])
            batch = model.tokenizer([prompt.text], return_tensors="pt")
            embeds = model.llm.get_input_embeddings()(batch["input_ids"])
            out = model.llm.generate(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                     max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                     output_hidden_states=True, return_dict_in_generate=True)
            hidden = torch.stack([h[-1][0, -1] for h in out.hidden_states[-len(signal_ids):]])[None]
            token_embeds = model.llm.get_input_embeddings()(torch.tensor([signal_ids]))
            conditions = model.output_projectors["image"](hidden + token_embeds)
            decoder.pipeline(prompt_embeds=conditions, negative_prompt_embeds=decoder.negative_embedding(),
                             num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                             height=32, width=32, output_type="np")

    direct()
    return interleaved(ours, direct, repeats)


def reuse() -> tuple[float, float, float]:
    """Media turns on a checkpoint loaded from disk (decoders come from files, as with real weights); a text
    turn first, so that the first media turn differs from the second only by loading the decoder."""
    import tempfile

    from nextgpt import GenerationOptions, NextGPT

    with tempfile.TemporaryDirectory() as folder:
        NextGPT.from_preset("tiny").save_pretrained(f"{folder}/tiny")
        pipe = NextGPT.from_pretrained(f"{folder}/tiny")
        pipe.chat("hello", GenerationOptions(max_new_tokens=8, forbid={"image", "audio", "video"}, output_dir=None))
        options = GenerationOptions(force={"image"}, max_new_tokens=8, seed=0, output_dir=None)
        first = timed(lambda: pipe.chat("draw", options), 1)
        second = timed(lambda: pipe.chat("draw", options), 3)

        def reloaded() -> None:  # the official code's habit: from_pretrained on every call
            pipe.decoders["image"].unload()
            pipe.chat("draw", options)

        return first, second, timed(reloaded, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--memory-child", choices=["text", "all"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    ours, direct = overhead(args.repeats)
    print(f"end-to-end turn {ours:.3f} s ÷ direct generate+projector+diffusers {direct:.3f} s = "
          f"{ours / direct:.3f}  (target ≤ 1.05)")
    first, second, rebuilt = reuse()
    print(f"second media turn {second:.3f} s ÷ first {first:.3f} s = {second / first:.3f}  (target ≤ 0.5); "
          f"reloading the pipeline every call instead: {rebuilt / first:.3f}")
    results = {}
    for mode in ("text", "all"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", mode], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        results[mode] = json.loads(out)
    text, full = results["text"], results["all"]
    print(f"peak RSS text-only {text['peak']:.0f} MiB ÷ all decoders {full['peak']:.0f} MiB = "
          f"{text['peak'] / full['peak']:.3f}  (target ≤ 0.5); above the post-build baseline: "
          f"{text['peak'] - text['baseline']:.0f} MiB ÷ {full['peak'] - full['baseline']:.0f} MiB = "
          f"{(text['peak'] - text['baseline']) / max(1.0, full['peak'] - full['baseline']):.3f}")


if __name__ == "__main__":
    main()
