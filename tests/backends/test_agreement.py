"""Every back end against the committed fp32 reference (tests/data/vgg16_reference.npz, written
by onnxruntime fp32): the cosine of descriptors and of maps at least MIN_COSINE of its precision
(0.9999 fp32, 0.999 bf16). Back ends that cannot run on this machine are skipped, saying why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from frameseek.backends import BACKENDS, MIN_COSINE, BackendSpec, pool5_cosine, usable_cpus
from frameseek.features import WEIGHTS_SHA256, mean_pool_spatial, preprocess
from tests.test_features import REFERENCE, reference_inputs


@pytest.mark.parametrize("spec", BACKENDS, ids=[spec.name for spec in BACKENDS])
def test_back_end_reproduces_the_fp32_reference(spec: BackendSpec, model: Path) -> None:
    reason = spec.unavailable()
    if reason is not None:
        pytest.skip(f"{spec.name} cannot run here: {reason}")
    reference = np.load(REFERENCE)
    assert str(reference["weights_sha256"]) == WEIGHTS_SHA256
    backend = spec.load(model, usable_cpus())
    assert (backend.name, backend.precision, backend.device) == \
        (spec.name, spec.precision, spec.device)
    pool5 = backend(preprocess(reference_inputs()))
    assert pool5.shape == (2, 512, 7, 7) and pool5.dtype == np.float32
    tolerance = MIN_COSINE[spec.precision]
    descriptors = pool5_cosine(mean_pool_spatial(pool5), reference["descriptors"])
    maps = pool5_cosine(pool5[:, :8], reference["pool5_head"])
    assert (descriptors >= tolerance).all(), descriptors
    assert (maps >= tolerance).all(), maps
