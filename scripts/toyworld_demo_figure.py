"""Run ``nextgpt demo`` on the shipped toy-world model and draw the README's figure: the demo's picture and every
other frame of its video, side by side, each pixel as a 4×4 block.

    python scripts/toyworld_demo_figure.py [--out docs/images/toyworld-demo.png]
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np


def figure(image: np.ndarray, video: np.ndarray, scale: int = 4, gap: int = 4) -> np.ndarray:
    """``[H, W, 3]`` image and ``[F, H, W, 3]`` video → one uint8 strip: the image, then frames 0, 2, 4, ...
    separated by grey bars (a double bar after the image)."""
    tiles = [np.kron(tile, np.ones((scale, scale, 1), dtype=np.uint8)) for tile in [image, *video[::2]]]
    bar = np.full((tiles[0].shape[0], gap, 3), 96, dtype=np.uint8)
    parts = [tiles[0], bar, bar]
    for tile in tiles[1:]:
        parts += [tile, bar]
    return np.concatenate(parts[:-1], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/toyworld-demo.png")
    args = parser.parse_args()

    from nextgpt.cli import default_pipeline
    from nextgpt.decoders import write_image
    from nextgpt.toyworld.build import shipped_judges
    from nextgpt.toyworld.classifiers import AttributeClassifiers
    from nextgpt.toyworld.demo import run_demo

    pipe = default_pipeline()
    judges = AttributeClassifiers.load(shipped_judges())
    with tempfile.TemporaryDirectory() as folder:
        responses = run_demo(pipe, output_dir=folder, judges=judges, log=print)
    made: dict[str, np.ndarray] = {}
    for item in (item for response in responses for item in response.media):
        made.setdefault(item.modality, item.data)  # the first of each: the answer to the request for it
    write_image(figure(made["image"], made["video"]), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
