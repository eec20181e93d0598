"""``nextgpt toyworld-train-decoder image|audio|video``: train a toy-world decoder from scratch and score it."""
from __future__ import annotations

import argparse
import json
from typing import Callable

from nextgpt.cli import command


@command("toyworld-train-decoder",
         "train a toy-world decoder (tiny VAE + UNet) from scratch, save the pipeline and score its generations")
def _toyworld_train_decoder(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("modality", choices=["image", "audio", "video"], help="which decoder")
    parser.add_argument("--out", required=True, help="folder for the diffusers pipeline and decoder.json")
    parser.add_argument("--steps", type=int, default=None, help="UNet steps (default: the recipe's budget)")
    parser.add_argument("--vae-steps", type=int, default=None, help="VAE steps (default: the recipe's budget)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judges", default=None,
                        help="folder of `nextgpt toyworld classifiers` (default: train them, seconds)")
    parser.add_argument("--eval-count", type=int, default=40, help="held-out generations to score (0: none)")
    parser.add_argument("--train-text-encoder", action=argparse.BooleanOptionalAction, default=None,
                        help="train the pipeline's text encoder jointly with the UNet (default: the recipe's, on)")
    parser.add_argument("--prediction-type", default=None, choices=["epsilon", "v_prediction", "sample"],
                        help="what the UNet predicts, saved in the scheduler config (default: the recipe's, sample)")
    parser.add_argument("--lr", type=float, default=None, help="UNet (and text encoder) peak learning rate")
    parser.add_argument("--vae-lr", type=float, default=None, help="VAE peak learning rate")
    parser.add_argument("--timestep-power", type=float, default=None,
                        help="training timesteps t = T·u^power (< 1: more high-noise steps; default the recipe's)")
    parser.add_argument("--zero-terminal-snr", action=argparse.BooleanOptionalAction, default=None,
                        help="rescale the noise schedule to zero signal at the last step, DDIM 'trailing' spacing "
                             "(default: the recipe's, on)")
    parser.add_argument("--attribute-weight", type=float, default=None,
                        help="weight of the attribute heads on the text conditioning (0: none; default the recipe's)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="saved generation default")
    parser.add_argument("--inference-steps", type=int, default=None, help="saved generation default (DDIM steps)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads: torch and BLAS (default 1)")
    parser.add_argument("--device", default="cpu",
                        help="where the pipeline trains and generates, e.g. cuda (default cpu; the data and noise "
                             "streams are the same on every device)")

    def run(args: argparse.Namespace) -> int:
        from nextgpt.threads import limit_cpu_threads
        from nextgpt.toyworld.train_decoders import train_toy_decoder

        limit_cpu_threads(args.threads)
        defaults = {k: v for k, v in {"guidance_scale": args.guidance_scale,
                                      "num_inference_steps": args.inference_steps}.items() if v is not None}
        try:
            report = train_toy_decoder(args.modality, args.out, seed=args.seed, steps=args.steps,
                                       vae_steps=args.vae_steps, batch_size=args.batch_size, judges=args.judges,
                                       eval_count=args.eval_count, train_text_encoder=args.train_text_encoder,
                                       prediction_type=args.prediction_type, lr=args.lr, vae_lr=args.vae_lr,
                                       timestep_power=args.timestep_power,
                                       zero_terminal_snr=args.zero_terminal_snr,
                                       attribute_weight=args.attribute_weight, defaults=defaults,
                                       device=args.device)
        except ValueError as error:
            print(f"error: {error}")
            return 2
        print(f"VAE reconstruction MSE by tenth of training: {report.vae_loss}")
        print(f"UNet noise-prediction loss by tenth of training: {report.unet_loss}")
        print(f"seconds: {report.seconds}")
        if report.vae_round_trip:
            print("VAE round trip, judged: " + ", ".join(f"{k}={v:.3f}" for k, v in report.vae_round_trip.items()))
        if report.accuracy:
            print("generation accuracy on held-out meanings: "
                  + ", ".join(f"{k}={v:.3f}" for k, v in report.accuracy.items()))
        print("DecoderConfig: " + json.dumps(report.config.model_dump()))
        print(f"wrote {args.out} (report: {args.out}/decoder.json, grid: {args.out}/eval_grid.png)")
        return 0

    return run
