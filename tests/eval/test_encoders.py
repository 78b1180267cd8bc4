"""Baseline encodings: Fisher vectors of conv features (DFSE) and binary tests (LBTT)."""

from __future__ import annotations

import numpy as np

from frameseek.eval.encoders import BinaryTests, FisherEncoder, hamming, local_features


def test_local_features_are_the_spatial_positions() -> None:
    maps = np.arange(2 * 512 * 7 * 7, dtype=np.float32).reshape(2, 512, 7, 7)
    locals_ = local_features(maps)
    assert locals_.shape == (2, 49, 512)
    assert np.array_equal(locals_[1, 10], maps[1, :, 1, 3])


def test_fisher_codes_are_64_d_and_find_a_slightly_changed_frame() -> None:
    rng = np.random.default_rng(0)
    maps = rng.gamma(1.0, 1.0, (80, 512, 7, 7)).astype(np.float32)
    encoder = FisherEncoder(seed=0)
    codes = encoder.fit(maps)
    assert codes.shape == (80, 64)
    assert np.allclose(encoder.encode(maps[:5]), codes[:5], atol=1e-4)
    noisy = maps[17:18] * rng.uniform(0.9, 1.1, maps[17:18].shape).astype(np.float32)
    distances = np.linalg.norm(codes - encoder.encode(noisy), axis=1)
    assert int(np.argmin(distances)) == 17


def test_binary_tests_are_seeded_and_hamming_counts_differing_bits() -> None:
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    tests = BinaryTests(32, seed=5)
    codes = tests.encode(grey)
    assert codes.shape == (3, 32) and codes.dtype == np.uint8
    assert np.array_equal(codes, BinaryTests(32, seed=5).encode(grey))
    expected = np.unpackbits(codes ^ codes[0], axis=1).sum(axis=1)
    assert np.array_equal(hamming(codes, codes[0]), expected)
    assert hamming(codes, codes[0])[0] == 0
    inverted = tests.encode(255 - grey[:1])[0]
    ties = (tests.points[:, 0] == tests.points[:, 1]).all(axis=1).sum()
    # Inverting the picture flips every test that compares two different pixels values.
    assert hamming(codes[:1], inverted)[0] >= 256 - ties - 8
