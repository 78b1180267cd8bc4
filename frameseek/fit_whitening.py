"""Fit the R-MAC region whitening that ships with frameseek (frameseek/rmac.py) on still images:

    python -m frameseek.fit_whitening --out frameseek/data/rmac_whitening.npz IMAGE...

Apart from frameseek/rmac.py because it runs the CNN: the pooling must not import the features
that import it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from frameseek.features import FeatureExtractor
from frameseek.query import load_image
from frameseek.rmac import MIN_FIT_SIDE, RegionalMax


def main(argv: Sequence[str] | None = None) -> None:
    """Fit the whitening on still images (each resized to the CNN's square input, like frames)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    # The reference back end's maps: the shipped whitening must not depend on the machine that
    # fitted it.
    extractor = FeatureExtractor(backend="onnxruntime-fp32")
    pixels = {path: load_image(path) for path in sorted(set(args.images))}
    # Icons and glyphs say nothing about video frames.
    images = [path for path, rgb in pixels.items() if min(rgb.shape[:2]) >= MIN_FIT_SIDE]
    pool5 = np.concatenate([extractor.pool5(extractor.resize(pixels[p])[None]) for p in images])
    pooling = RegionalMax.fit(pool5)
    pooling.save(args.out, f"{len(images)} images: " + " ".join(p.name for p in images))
    print(f"{args.out}: fitted on {len(images)} images, digest {pooling.digest()}")


if __name__ == "__main__":
    main()
