"""``nextgpt toyworld-train encoder|llm``: train the toy world's frozen encoder (a small ImageBind) or LLM (a tiny
LLaMA and its tokenizer) from scratch on CPU. Progress is logged at INFO (``nextgpt -v toyworld-train ...``)."""
from __future__ import annotations

import argparse
from typing import Callable

from nextgpt.cli import command


@command("toyworld-train", "train the toy world's frozen parts from scratch: encoder (small ImageBind) or llm")
def _toyworld_train(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("part", choices=["encoder", "llm"], help="what to train")
    parser.add_argument("--out", required=True, help="folder to write (encoder.safetensors + encoder.json, or "
                                                     "llm/ + tokenizer/)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps (default: encoder 1200, llm 1000 — about 25 and 19 minutes on one "
                             "thread of this 2-core machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads: torch and BLAS (default 1: the models are small; more wait on a busy CPU)")

    def run(args: argparse.Namespace) -> int:
        from nextgpt.threads import limit_cpu_threads

        limit_cpu_threads(args.threads)
        if args.steps is not None and args.steps <= 0:
            raise SystemExit(f"--steps must be positive, got {args.steps}")
        if args.part == "encoder":
            from nextgpt.toyworld.train_encoder import train_toy_encoder

            report = train_toy_encoder(args.out, seed=args.seed, **({"steps": args.steps} if args.steps else {}))
            for modality, value in report.retrieval_at_1.items():
                print(f"{modality}: retrieval@1 {value:.3f} over all meanings, "
                      f"{report.retrieval_at_1_held_out[modality]:.3f} on held-out meanings; "
                      f"attributes right {report.attribute_accuracy[modality]:.3f}")
            for modality, parts in report.probe_accuracy.items():
                for part, accuracies in parts.items():
                    retrieved = report.retrieval_attribute_accuracy[modality][part]
                    print(f"{modality} {part} meanings, per attribute (linear probe / retrieval): " + ", ".join(
                        f"{name} {value:.2f}/{retrieved[name]:.2f}" for name, value in accuracies.items()))
            print(f"loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}; {report.seconds:.0f} s")
            print(f"wrote {report.weights} and {report.config} "
                  f"(load: build_encoder(EncoderConfig(**json), base_dir={args.out!r}))")
            return 0
        from nextgpt.toyworld.train_llm import train_toy_llm

        report = train_toy_llm(args.out, seed=args.seed, **({"steps": args.steps} if args.steps else {}))
        print(f"perplexity {report.perplexity_eval:.3f} on held-out (eval split) dialogues, "
              f"{report.perplexity_train_fresh:.3f} on fresh training dialogues")
        copying = report.extra.get("name_copy", {})
        if copying:
            print("file names written back (fresh names): " + ", ".join(f"{k} {v:.2f}" for k, v in copying.items()))
        print(f"loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}; vocab {report.vocab_size}; "
              f"{report.parameters} parameters; {report.seconds:.0f} s")
        print(f"wrote {report.llm_dir} and {report.tokenizer_dir} "
              f"(load: LLMConfig(path='llm', tokenizer='tokenizer') with base_dir={args.out!r})")
        return 0

    return run
