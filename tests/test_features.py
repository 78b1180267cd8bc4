"""Frame representation: preprocessing, the two poolings, and the VGG16 forward on real weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from frameseek import features
from frameseek.features import (
    CAFFE_BGR_MEAN,
    WEIGHTS_SHA256,
    FeatureExtractor,
    WeightsError,
    _verified_model_bytes,
    cut_at_pool5,
    mean_pool_channels,
    mean_pool_spatial,
    preprocess,
    weights_path,
)
from tests.conftest import SAMPLES

REFERENCE = Path(__file__).parent / "data" / "vgg16_reference.npz"


def reference_inputs() -> np.ndarray:
    """Two fixed 224×224 RGB images: a chequered colour gradient and the sample query photo."""
    y, x = np.mgrid[0:224, 0:224]
    gradient = np.stack([x, y, (x + y) // 2], axis=-1)
    chequer = ((x // 28 + y // 28) % 2)[..., None]
    gradient = (gradient // (1 + chequer)).astype(np.uint8)  # dark squares: edges and texture
    query = Image.open(SAMPLES / "query.jpg").convert("RGB")
    query = np.asarray(query.resize((224, 224), Image.Resampling.BILINEAR))
    return np.stack([gradient, query])


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    # The back end the stored reference was computed with; tests/backends holds the others to it.
    return FeatureExtractor(backend="onnxruntime-fp32")


# -- preprocessing and pooling ------------------------------------------------------------------

def test_preprocess_is_bgr_minus_caffe_means() -> None:
    image = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    image[0, 0, 0] = (10, 20, 30)  # R, G, B
    image[0, 1, 1] = (255, 0, 128)
    out = preprocess(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)
    np.testing.assert_allclose(out[0, 1, 1], [128 - 103.939, 0 - 116.779, 255 - 123.68],
                               rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 1], -CAFFE_BGR_MEAN)


def test_mean_pool_spatial_matches_loops() -> None:
    pool5 = np.random.default_rng(1).random((3, 512, 7, 5), dtype=np.float32)
    expected = np.zeros((3, 512))
    for n in range(3):
        for c in range(512):
            total = 0.0
            for i in range(7):
                for j in range(5):
                    total += float(pool5[n, c, i, j])
            expected[n, c] = total / 35
    pooled = mean_pool_spatial(pool5)
    assert pooled.shape == (3, 512) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, expected, rtol=1e-5)


def test_mean_pool_channels_matches_loops() -> None:
    descriptors = np.random.default_rng(2).normal(size=(4, 512)).astype(np.float32)
    expected = np.zeros((4, 64))
    for n in range(4):
        for group in range(64):
            expected[n, group] = sum(float(descriptors[n, group * 8 + k]) for k in range(8)) / 8
    pooled = mean_pool_channels(descriptors)
    assert pooled.shape == (4, 64) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
    # Other group sizes pool the same way.
    np.testing.assert_allclose(mean_pool_channels(descriptors, 64),
                               descriptors.reshape(4, 8, 64).mean(axis=2), rtol=1e-5)


# -- the weights --------------------------------------------------------------------------------

def test_sha256_check_refuses_another_file(tmp_path: Path) -> None:
    impostor = tmp_path / "vgg16.onnx"
    impostor.write_bytes(b"not the verified weights")
    with pytest.raises(WeightsError, match="sha256"):
        _verified_model_bytes(impostor)


def test_cut_graph_keeps_the_imagenet_conv_layers() -> None:
    data = _verified_model_bytes(weights_path())
    cut = cut_at_pool5(onnx.load_from_string(data))
    weights = {init.name: numpy_helper.to_array(init) for init in cut.graph.initializer}
    bias = weights["functional_1/block1_conv1_1/Squeeze:0"]
    # The published Keras VGG16 ImageNet values: these are not the tumour model's own layers.
    np.testing.assert_allclose(bias[:4], [0.73429835, 0.09340367, 0.06775674, 0.8862966],
                               rtol=1e-7)
    kernels = [w for w in weights.values() if w.ndim == 4]
    assert len(kernels) == 13  # VGG16's conv layers; the classification head is cut away
    assert not any("dense" in name for name in weights)
    assert [o.name for o in cut.graph.output] == ["functional_1/block5_pool_1/MaxPool2d:0"]


# -- the forward pass ---------------------------------------------------------------------------

def test_vgg16_forward_matches_stored_reference(extractor: FeatureExtractor) -> None:
    reference = np.load(REFERENCE)
    assert str(reference["weights_sha256"]) == WEIGHTS_SHA256
    images = reference_inputs()
    pool5 = extractor.pool5(images)
    assert pool5.shape == (2, 512, 7, 7)
    assert (pool5 >= 0).all()  # ReLU then max-pool
    features = extractor.transform(images)
    np.testing.assert_allclose(features.descriptors, reference["descriptors"], atol=1e-3)
    np.testing.assert_allclose(pool5[:, :8, :, :], reference["pool5_head"], atol=1e-3)
    np.testing.assert_allclose(features.index, mean_pool_channels(features.descriptors))


def test_batches_give_the_same_features_as_single_images(extractor: FeatureExtractor) -> None:
    images = reference_inputs()
    together = extractor.transform(images).descriptors
    alone = np.concatenate([extractor.transform(image[None]).descriptors for image in images])
    np.testing.assert_allclose(together, alone, atol=1e-3)


def test_any_input_size_gives_a_map_of_a_32nd(extractor: FeatureExtractor) -> None:
    images = np.zeros((1, 96, 160, 3), dtype=np.uint8)
    assert extractor.backbone(images).shape == (1, 512, 3, 5)


def test_resize_brings_any_image_to_the_input_size(extractor: FeatureExtractor) -> None:
    image = np.zeros((180, 320, 3), dtype=np.uint8)
    assert extractor.resize(image).shape == (224, 224, 3)
    square = np.zeros((224, 224, 3), dtype=np.uint8)
    assert extractor.resize(square) is square


def test_the_cut_model_is_made_once_and_kept(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("FRAMESEEK_CACHE_DIR", str(tmp_path))
    path = features.pool5_model()
    assert path.parent == tmp_path and path.stat().st_size > 50e6
    made = path.stat().st_mtime_ns
    assert features.pool5_model() == path and path.stat().st_mtime_ns == made
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no half-written file left


def test_a_damaged_cut_model_is_rebuilt_from_the_weights(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("FRAMESEEK_CACHE_DIR", str(tmp_path))
    path = features.pool5_model()
    path.write_bytes(path.read_bytes()[: 1 << 20])  # truncated, as by a disk fault
    features._backend.cache_clear()
    try:
        extractor = features.FeatureExtractor(input_size=64, backend="onnxruntime-fp32")
        assert extractor.transform(np.zeros((1, 64, 64, 3), np.uint8)).descriptors.shape == (1, 512)
        assert path.stat().st_size > 50e6
    finally:
        features._backend.cache_clear()


def test_an_unwritable_cache_falls_back_to_a_temporary_folder(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FRAMESEEK_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    monkeypatch.setattr(features.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert features.pool5_model().parent.parent == tmp_path / "tmp"
