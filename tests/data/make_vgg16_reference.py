"""Write tests/data/vgg16_reference.npz: run once, then every test run compares against it.

    python -m tests.data.make_vgg16_reference
"""

from __future__ import annotations

import numpy as np

from frameseek.features import WEIGHTS_SHA256, FeatureExtractor
from tests.test_features import REFERENCE, reference_inputs


def main() -> None:
    extractor = FeatureExtractor()
    images = reference_inputs()
    pool5 = extractor.pool5(images)
    np.savez_compressed(
        REFERENCE,
        weights_sha256=WEIGHTS_SHA256,
        descriptors=extractor.transform(images).descriptors.round(4),
        pool5_head=pool5[:, :8].round(4),  # the first 8 channels' full 7×7 maps
    )
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    main()
