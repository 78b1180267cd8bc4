"""Verification of candidate key frames against the query, beyond the global descriptor.

- `GeometricVerifier`: SIFT keypoints of the query matched to those of a key frame's stored
  thumbnail, and the number of matches one affine map explains (RANSAC). A frame that really is
  in the query — whole, cropped, stretched, as an inset, photographed at an angle — gives many
  such inliers; another video's gives a handful at most (docs/robust.md measures both). This is
  the paper's future work: geometric transformations and occlusion.
- `local_features`, `local_similarity`: agreement of the 7×7 local conv features by mutual
  nearest neighbours.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from frameseek.rmac import Whitening, l2_normalise

# The query is matched at most this many pixels on its long side: a key frame's thumbnail is
# 192 wide (frameseek/keyframes.py), and an inset or a crop a third of a query this size still
# has as many pixels as the part of the thumbnail it shows.
QUERY_SIDE = 384
RATIO = 0.8  # Lowe's ratio test: a match must be clearly nearer than the second nearest
# RANSAC's tolerance, in thumbnail pixels (about 2% of its width): room for a phone photo's
# perspective, which an affine map only approximates.
REPROJECTION = 4.0
MAX_ANISOTROPY = 3.0  # a stretch up to ×1.6 is real; a map squashing one axis ×3 is not
KEYFRAME_CACHE = 4096  # key frames' keypoints kept (about 60 KB each)
# Inliers enough to rank a candidate above unverified ones: other videos' frames reach 3-6 by
# chance. Below the verdict's MATCH_INLIERS (frameseek/verdict.py), which is calibrated for a
# false-positive rate: a re-ranked candidate is not yet called a match.
RANK_INLIERS = 12


@dataclass(frozen=True)
class Keypoints:
    points: np.ndarray  # (N, 2) float32, in the picture's pixels
    descriptors: np.ndarray  # (N, 128) float32

    @classmethod
    def of(cls, grey: np.ndarray) -> Keypoints:
        found, descriptors = cv2.SIFT_create().detectAndCompute(grey, None)
        if descriptors is None:
            return cls(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
        return cls(np.float32([k.pt for k in found]), descriptors)


class GeometricVerifier:
    """Counts geometric inliers between a query and key frames, by their stored thumbnails.

    `thumbnail` reads a key frame's JPEG thumbnail (the store's); keypoints of the key frames
    are cached, so a server verifies a key frame it has seen before at the cost of the matching
    alone. Safe to share between threads.
    """

    def __init__(self, thumbnail: Callable[[int], bytes | None],
                 cache: int = KEYFRAME_CACHE) -> None:
        self.thumbnail = thumbnail
        self.cache_size = cache
        self._cache: OrderedDict[int, Keypoints] = OrderedDict()
        self._lock = threading.Lock()

    def query(self, rgb: np.ndarray) -> Keypoints:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        scale = QUERY_SIDE / max(grey.shape)
        if scale < 1.0:
            grey = cv2.resize(grey, (max(1, round(grey.shape[1] * scale)),
                                     max(1, round(grey.shape[0] * scale))),
                              interpolation=cv2.INTER_AREA)
        return Keypoints.of(grey)

    def keyframe(self, keyframe_id: int) -> Keypoints:
        with self._lock:
            if keyframe_id in self._cache:
                self._cache.move_to_end(keyframe_id)
                return self._cache[keyframe_id]
        data = self.thumbnail(keyframe_id)
        try:
            grey = np.asarray(Image.open(io.BytesIO(data or b"")).convert("L"))
        except OSError:  # none stored, or not a picture (synthetic benchmark collections)
            grey = np.zeros((1, 1), np.uint8)
        keypoints = Keypoints.of(grey)
        with self._lock:
            self._cache[keyframe_id] = keypoints
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return keypoints

    def inliers(self, query: Keypoints, keyframe_ids: list[int]) -> list[int]:
        """For each key frame, the matches one plausible affine map from the query explains."""
        return [inliers(query, self.keyframe(k)) for k in keyframe_ids]


def inliers(query: Keypoints, keyframe: Keypoints) -> int:
    """Ratio-test SIFT matches from `query` to `keyframe` that one affine map (RANSAC) carries
    to within `REPROJECTION` pixels; 0 where no such map is plausible (mirrored, degenerate,
    or squashing one axis more than `MAX_ANISOTROPY` times the other)."""
    if len(query.descriptors) < 2 or len(keyframe.descriptors) < 2:
        return 0
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query.descriptors, keyframe.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < 3:
        return 0
    source = query.points[[m.queryIdx for m in good]]
    target = keyframe.points[[m.trainIdx for m in good]]
    affine, mask = cv2.estimateAffine2D(source, target, method=cv2.RANSAC,
                                        ransacReprojThreshold=REPROJECTION)
    if affine is None or mask is None or not np.isfinite(affine).all():
        return 0
    singular = np.linalg.svd(affine[:, :2], compute_uv=False)
    if np.linalg.det(affine[:, :2]) <= 0 or singular[0] > MAX_ANISOTROPY * singular[1]:
        return 0
    return int(mask.sum())


def local_features(pool5: np.ndarray, whitening: Whitening | None = None) -> np.ndarray:
    """(N, C, h, w) → (N, h·w, d) unit-length local features (whitened if given)."""
    n, c = pool5.shape[:2]
    local = pool5.reshape(n, c, -1).transpose(0, 2, 1).astype(np.float32)
    return whitening.transform(local) if whitening is not None else l2_normalise(local)


def local_similarity(query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Query locals (L, d) against each candidate's (K, L', d) → (K,) spatial agreement: the
    summed similarity of mutual nearest-neighbour pairs, divided by the query's L."""
    sims = query @ candidates.transpose(0, 2, 1)  # (K, L, L')
    best_for_query = sims.argmax(axis=2)  # (K, L)
    best_for_candidate = sims.argmax(axis=1)  # (K, L')
    mutual = np.take_along_axis(best_for_candidate, best_for_query, axis=1) == np.arange(
        len(query))
    best = np.take_along_axis(sims, best_for_query[:, :, None], axis=2)[:, :, 0]
    return np.where(mutual, np.maximum(best, 0), 0).sum(axis=1) / len(query)


def verified_order(inliers: list[int], min_inliers: int, demoted: list[bool] | None = None
                   ) -> list[int]:
    """Positions of candidates (given nearest first) in their new order: those with at least
    `min_inliers` inliers first, most inliers first, then the others as they came, those
    `demoted` (found by a window of the query only) last. Below that count inliers are chance
    (another video's frame gives a few), so they reorder nothing; and a small window of any
    picture resembles some key frame, so it counts only once verified."""
    demoted = demoted or [False] * len(inliers)
    verified = sorted((i for i, n in enumerate(inliers) if n >= min_inliers),
                      key=lambda i: -inliers[i])
    rest = [i for i, n in enumerate(inliers) if n < min_inliers]
    return verified + [i for i in rest if not demoted[i]] + [i for i in rest if demoted[i]]
