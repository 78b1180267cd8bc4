"""The baselines' frame encodings: Fisher vectors of conv features (DFSE), binary intensity
tests (LBTT). Both are fitted or drawn once and then applied alike to key frames and queries."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

LOCAL_DIM = 64  # local 512-d conv features are PCA-reduced first, as Perronnin reduces SIFT
GMM_COMPONENTS = 16
FINAL_DIM = 64  # the paper's Table 5 lists DFSE at 64 dimensions
MAX_TRAINING_LOCALS = 20_000
BITS = 256


def local_features(pool5: np.ndarray) -> np.ndarray:
    """(N, 512, h, w) maps → (N, h·w, 512): one 512-d feature per spatial position."""
    n, channels, h, w = pool5.shape
    return pool5.reshape(n, channels, h * w).transpose(0, 2, 1).astype(np.float32)


class FisherEncoder:
    """Improved Fisher vectors (Perronnin et al. 2010) with a diagonal GMM, then PCA to 64-d."""

    def __init__(self, seed: int = 0, components: int = GMM_COMPONENTS) -> None:
        self.seed = seed
        self.components = components
        self.local_pca = PCA(LOCAL_DIM, random_state=seed)
        self.gmm = GaussianMixture(components, covariance_type="diag", max_iter=100,
                                   random_state=seed)
        self.final_pca: PCA | None = None

    def fit(self, pool5: np.ndarray) -> np.ndarray:
        """Fit on the database's maps and return their final codes (N, ≤64)."""
        locals_ = local_features(pool5).reshape(-1, pool5.shape[1])
        rng = np.random.default_rng(self.seed)
        sample = locals_[rng.permutation(len(locals_))[:MAX_TRAINING_LOCALS]]
        self.gmm.fit(self.local_pca.fit_transform(sample))
        fisher = self._fisher(pool5)
        self.final_pca = PCA(min(FINAL_DIM, *fisher.shape), random_state=self.seed).fit(fisher)
        return self._finish(fisher)

    def encode(self, pool5: np.ndarray) -> np.ndarray:
        return self._finish(self._fisher(pool5))

    def _fisher(self, pool5: np.ndarray, chunk: int = 64) -> np.ndarray:
        # In chunks: the (n, 49, 16, 64) offsets of a whole corpus would not fit in memory.
        return np.concatenate([self._fisher_chunk(pool5[i : i + chunk])
                               for i in range(0, len(pool5), chunk)])

    def _fisher_chunk(self, pool5: np.ndarray) -> np.ndarray:
        locals_ = local_features(pool5)
        n, t, _ = locals_.shape
        x = self.local_pca.transform(locals_.reshape(n * t, -1)).reshape(n, t, LOCAL_DIM)
        posteriors = self.gmm.predict_proba(x.reshape(n * t, -1)).reshape(n, t, -1)
        weights, means = self.gmm.weights_, self.gmm.means_
        sigmas = np.sqrt(self.gmm.covariances_)
        # (n, t, k, d): each local's offset from each centre in units of that centre's spread
        z = (x[:, :, None, :] - means[None, None]) / sigmas[None, None]
        g = posteriors[..., None]
        d_mean = (g * z).sum(axis=1) / (t * np.sqrt(weights)[None, :, None])
        d_sigma = (g * (z**2 - 1)).sum(axis=1) / (t * np.sqrt(2 * weights)[None, :, None])
        fisher = np.concatenate([d_mean.reshape(n, -1), d_sigma.reshape(n, -1)], axis=1)
        fisher = np.sign(fisher) * np.sqrt(np.abs(fisher))  # power normalisation
        return _l2_normalise(fisher)

    def _finish(self, fisher: np.ndarray) -> np.ndarray:
        assert self.final_pca is not None, "fit before encode"
        return self.final_pca.transform(fisher).astype(np.float32)


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class BinaryTests:
    """256 BRIEF-style intensity comparisons on the 32×32 grey frame, packed into 32 bytes.

    Point pairs are drawn once (seeded) from a Gaussian around the centre, BRIEF's sampling
    pattern G II, so the centre of the picture weighs more than its borders.
    """

    def __init__(self, size: int, seed: int = 0, bits: int = BITS) -> None:
        rng = np.random.default_rng(seed)
        points = rng.normal(size / 2, size / 5, (bits, 2, 2))
        self.points = np.clip(np.round(points), 0, size - 1).astype(np.int64)

    def encode(self, grey: np.ndarray) -> np.ndarray:
        """(N, size, size) uint8 → (N, bits/8) uint8."""
        p = self.points
        first = grey[:, p[:, 0, 0], p[:, 0, 1]]
        second = grey[:, p[:, 1, 0], p[:, 1, 1]]
        return np.packbits(first < second, axis=1)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distance of one packed code to each row of `codes`."""
    return _POPCOUNT[np.bitwise_xor(codes, query[None])].sum(axis=1, dtype=np.int32)
