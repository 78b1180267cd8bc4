"""R-MAC pooling (frameseek/rmac.py): regions, whitening, the shipped whitening, and the
"rmac" pooling through the index on real video."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek import rmac
from frameseek.features import FeatureExtractor, pooling_named
from frameseek.index import ConfigMismatch, Index, IndexConfig
from frameseek.rmac import RegionalMax, Whitening, WhiteningError, regional_max, rmac_regions
from tests.conftest import BBB, BIKES, frame_at


def test_rmac_regions_of_a_square_map_are_the_classic_fourteen():
    regions = rmac_regions(7, 7, levels=3)
    assert sorted(regions) == sorted([(0, 0, 7),
                                      *[(y, x, 4) for y in (0, 3) for x in (0, 3)],
                                      *[(y, x, 3) for y in (0, 2, 4) for x in (0, 2, 4)]])
    wide = rmac_regions(7, 12, levels=2)  # a non-square input's map: regions along the width
    assert all(y + s <= 7 and x + s <= 12 for y, x, s in wide)
    full = sorted(x for y, x, s in wide if s == 7)
    assert full[0] == 0 and full[-1] == 5 and len(full) >= 2  # both ends of the long side


def loop_rmac(pool5: np.ndarray, model: RegionalMax) -> np.ndarray:
    """R-MAC written out with loops, the reference for the vectorised version."""
    out = np.zeros((pool5.shape[0], pool5.shape[1]))
    w = model.regions_whitening
    for n in range(pool5.shape[0]):
        total = np.zeros(w.dim)
        for y, x, s in rmac_regions(*pool5.shape[2:], model.levels):
            region = np.array([max(pool5[n, c, i, j] for i in range(y, y + s)
                                   for j in range(x, x + s)) for c in range(pool5.shape[1])])
            region = region / np.linalg.norm(region)
            whitened = (region - w.mean) @ w.projection
            total += whitened / np.linalg.norm(whitened)
        out[n] = total / np.linalg.norm(total)
    return out


def test_rmac_matches_a_loop_reference():
    rng = np.random.default_rng(3)
    pool5 = np.maximum(rng.normal(size=(40, 16, 7, 7)), 0).astype(np.float32)
    model = RegionalMax.fit(pool5)
    regions = rmac_regions(7, 7)
    y, x, side = regions[3]
    assert regional_max(pool5[:2], regions)[1, 3, 9] == pool5[1, 9, y:y + side, x:x + side].max()
    fine = model.descriptors(pool5[:3])
    assert fine.shape == (3, 16)
    np.testing.assert_allclose(fine, loop_rmac(pool5[:3], model), atol=1e-5)


def test_whitening_shapes_determinism_and_decorrelation():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 32)) @ rng.normal(size=(32, 32))  # correlated
    first, again = Whitening.fit(data, 12), Whitening.fit(data.copy(), 12)
    assert first.projection.shape == (32, 12) and first.mean.shape == (32,)
    np.testing.assert_array_equal(first.projection, again.projection)
    out = first.transform(data[:7])
    assert out.shape == (7, 12)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    # Without shrinkage and before the final normalisation, the fitted data is white.
    exact = Whitening.fit(data, shrinkage=0.0)
    x = data / np.linalg.norm(data, axis=1, keepdims=True)
    covariance = np.cov((x - exact.mean) @ exact.projection, rowvar=False)
    np.testing.assert_allclose(covariance, np.eye(32), atol=1e-3)


def test_shipped_whitening_is_verified_and_refuses_a_changed_file(tmp_path, monkeypatch):
    pooling = rmac.shipped()
    assert pooling.digest() == rmac.WHITENING_SHA256
    assert pooling.regions_whitening.projection.shape == (512, 512)
    changed = tmp_path / "whitening.npz"
    with np.load(rmac.WHITENING_FILE) as data:
        arrays = dict(data)
    arrays["projection"] = arrays["projection"].copy()
    arrays["projection"][0, 0] += 1e-3
    np.savez(changed, **arrays)
    monkeypatch.setattr(rmac, "WHITENING_FILE", changed)
    rmac.shipped.cache_clear()
    try:
        with pytest.raises(WhiteningError, match="not the verified"):
            rmac.shipped()
        monkeypatch.setattr(rmac, "WHITENING_FILE", tmp_path / "missing.npz")
        with pytest.raises(WhiteningError, match="cannot read"):
            rmac.shipped()
    finally:
        rmac.shipped.cache_clear()


def test_rmac_descriptors_are_unit_length_and_the_index_derives_from_them():
    extractor = FeatureExtractor(pooling=pooling_named("rmac"))
    frames = [frame_at(BBB, 803)[0], frame_at(BIKES, 100)[0]]
    features = extractor.transform(np.stack([extractor.resize(f) for f in frames]))
    assert features.descriptors.shape == (2, 512) and features.index.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(features.descriptors, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(features.index, extractor.pooling.coarse(features.descriptors))
    with pytest.raises(ValueError, match="unknown pooling"):
        pooling_named("sum")


def screenshot(frame: np.ndarray) -> np.ndarray:
    """A frame shown small inside a browser-like page (grey bars, side text)."""
    h, w = frame.shape[:2]
    page = Image.new("RGB", (w * 2, h * 2), (246, 246, 246))
    page.paste(Image.fromarray(frame), (w // 3, h // 2))
    return np.asarray(page)


def test_an_rmac_index_stores_its_pooling_and_finds_a_screenshot(tmp_path, sample_videos):
    """Built with "rmac", reopened without saying so: queries are embedded the index's way, and
    a frame shown inside a page (trimmed, then searched) comes back as its video and moment."""
    directory = tmp_path / "rmac-index"
    with Index.create(directory, IndexConfig(pooling="rmac")) as index:
        index.add([sample_videos / "bikes.mp4", sample_videos / "big_buck_bunny_60s.mp4"])
    frame, time = frame_at(BBB, 803)
    with Index.open(directory) as index:
        assert index.config.pooling == "rmac"
        vectors = index.store.vectors()
        np.testing.assert_allclose(np.linalg.norm(vectors.descriptors.astype(np.float32), axis=1),
                                   1, atol=2e-3)  # float16 storage
        top = index.search(screenshot(frame), top=3)[0]
        assert top.video.endswith("big_buck_bunny_60s.mp4")
        assert abs(top.time - time) < 1.0
    with pytest.raises(ConfigMismatch, match="pooling"):
        Index.open(directory, IndexConfig(pooling="mean"))


def frameseek_imports(path: Path) -> set[str]:
    """The frameseek modules a source file imports, at module level and inside functions."""
    tree = ast.parse(path.read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    return {name for name in imported if name and name.startswith("frameseek")}


def test_the_pooling_does_not_import_the_features_that_import_it() -> None:
    """Imports run one way, features → rmac (the whitening's fitting, which runs the CNN, lives
    in frameseek/fit_whitening.py): rmac imports only modules that import nothing of ours."""
    package = Path(rmac.__file__).parent.parent
    for module in frameseek_imports(Path(rmac.__file__)):
        source = package / (module.replace(".", "/") + ".py")
        assert source.is_file(), module
        assert not frameseek_imports(source), module
