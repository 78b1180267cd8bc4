"""Write the fp32 references that every run compares against, computed by onnxruntime fp32:

- tests/data/vgg16_reference.npz: descriptors and maps of the tests' fixed inputs;
- frameseek/data/vgg16_selfcheck.npz: one small real image and its pool5 maps, which each
  inference back end must reproduce at start-up (frameseek.features.self_check_reference).

    python -m tests.data.make_vgg16_reference
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from frameseek.backends import usable_cpus
from frameseek.backends.onnxruntime import OnnxRuntimeBackend
from frameseek.features import (
    SELF_CHECK_FILE,
    WEIGHTS_SHA256,
    mean_pool_spatial,
    pool5_model,
    preprocess,
)
from tests.conftest import SAMPLES
from tests.test_features import REFERENCE, reference_inputs

SELF_CHECK_SIZE = 64  # px: a 2×2 map, one forward of a few milliseconds


def main() -> None:
    # The reference back end itself, without the start-up self-check that compares against the
    # file written here.
    reference = OnnxRuntimeBackend(pool5_model(), usable_cpus(), "CPU")
    images = reference_inputs()
    pool5 = reference(preprocess(images))
    np.savez_compressed(
        REFERENCE,
        weights_sha256=WEIGHTS_SHA256,
        descriptors=mean_pool_spatial(pool5).round(4),
        pool5_head=pool5[:, :8].round(4),  # the first 8 channels' full 7×7 maps
    )
    print(f"wrote {REFERENCE}")
    query = Image.open(SAMPLES / "query.jpg").convert("RGB")
    image = np.asarray(query.resize((SELF_CHECK_SIZE,) * 2, Image.Resampling.BILINEAR))
    np.savez_compressed(SELF_CHECK_FILE, weights_sha256=WEIGHTS_SHA256, image=image,
                        pool5=reference(preprocess(image[None]))[0])
    print(f"wrote {SELF_CHECK_FILE}")


if __name__ == "__main__":
    main()
