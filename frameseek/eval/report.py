"""results.json → report.md and theta_sweep.png."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display on servers and CI

from frameseek.eval.methods import DEFAULT, TRIMMED

# The paper's accuracy (Tables 5 and 6) and query time in seconds. Its text quotes 0.9153 for
# Ours on TREC where Table 6 prints 0.9213; the table is used here.
PAPER = {
    "Ours": {"ntu": 0.9691, "trec": 0.9213, "ntu_s": 1.67, "dim": "64, 512"},
    "DFSP": {"ntu": 0.9516, "trec": 0.8841, "ntu_s": 1.613, "dim": "64"},
    "DF": {"ntu": 0.9198, "trec": 0.8313, "ntu_s": 1.892, "dim": "25088"},
    "DFSE": {"ntu": 0.8441, "trec": 0.8106, "ntu_s": 1.606, "dim": "64"},
    "DFTA": {"ntu": 0.8254, "trec": 0.8027, "ntu_s": 1.739, "dim": "512"},
    "LBTT": {"ntu": 0.9096, "trec": 0.8174, "ntu_s": 1.693, "dim": "256"},
}
SETS = ("plain", "perturbed", "hard")
PLOT = "theta_sweep.png"


def write_report(out: Path, results: dict) -> Path:
    plot_theta_sweep(results["theta_sweep"], out / PLOT)
    path = out / "report.md"
    path.write_text("\n".join(render(results)) + "\n", encoding="utf-8")
    return path


def render(r: dict) -> list[str]:
    meta, corpus, methods = r["meta"], r["corpus"], r["methods"]
    lines = [
        "# frameseek evaluation" + (" (smoke run)" if meta["smoke"] else ""),
        "",
        f"Generated {meta['date']} on {meta['machine']}, Python {meta['python']}, in "
        f"{meta['seconds']:.0f} s (cached analysis reused where present). CNN: "
        + (f"{meta['inference']['name']} ({meta['inference']['precision']} on "
           f"{meta['inference']['device']})." if "inference" in meta else "back end not recorded."),
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Corpus: {corpus['videos']} videos ({corpus['query_videos']} with queries, "
        f"{corpus['distractor_videos']} distractors), {corpus['duration_s'] / 60:.1f} min, "
        f"{corpus['frames']} frames, {corpus['samples']} frames sampled for the CNN at "
        f"{meta['config']['sample_fps']} fps. Queries: "
        + ", ".join(f"{n} {s}" for s, n in corpus["queries"].items())
        + f" ({meta['queries_per_video']} per query video and set, seed {meta['seed']}). "
        f"Key frames at θ = {meta['config']['theta']}: {methods['Ours']['entries']} "
        f"(compression ratio {methods['Ours']['compression_ratio']:.2%}).",
        "",
    ]
    for set_name in SETS:
        lines += [f"## Accuracy, {set_name} queries", "", *_main_table(methods, set_name), ""]
    lines += ["## Compared with the paper", "", *_paper_table(methods), "",
              *_ordering(methods), ""]
    lines += ["## Perturbed queries by kind of damage (top-1 video accuracy)", "",
              *_perturbation_table(methods), ""]
    lines += ["## Hard queries by family (top-1 video accuracy)", "",
              *_perturbation_table(methods, "families"), ""]
    lines += ["## Cost of the default query", "", *_cost(methods), ""]
    if r.get("verdicts"):
        lines += ["## The verdict: true matches kept at outside-query FPR ≤ 1%", "",
                  *_verdicts(r["verdicts"]), ""]
    lines += ["## Localisation (the exact moment)", "", *_localisation(r["localisation"]), ""]
    lines += ["## Size and speed", "", *_speed_table(r), "", *_indexing(r), ""]
    lines += ["## θ sweep (paper Figure 4)", "", *_sweep_table(r["theta_sweep"]), "",
              f"![θ sweep]({PLOT})", ""]
    lines += [f"Gallery of queries and their top 12 key frames ({DEFAULT}): `gallery.html`.",
              "",
              *_definitions()]
    return lines


def _main_table(methods: dict, set_name: str) -> list[str]:
    rows = ["| Method | Dim | Acc@1 | Acc@5 | Acc@12 | Top-1 video | MRR | Median Δt (s) "
            "| Δt ≤ 2 s | Search ms (median / p95) | With CNN ms (median / p95) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in methods.items():
        f = m["sets"][set_name]
        error = "–" if f["time_error_median_s"] is None else f"{f['time_error_median_s']:.2f}"
        rows.append(
            f"| {name} | {m['dimension']} | {f['acc@1']:.3f} | {f['acc@5']:.3f} "
            f"| {f['acc@12']:.3f} | {f['top1_video']:.3f} | {f['mrr']:.3f} | {error} "
            f"| {f['within_2s']:.3f} | {f['search_ms_median']:.2f} / {f['search_ms_p95']:.2f} "
            f"| {f['with_cnn_ms_median']:.0f} / {f['with_cnn_ms_p95']:.0f} |"
        )
    return rows


def _paper_table(methods: dict) -> list[str]:
    rows = ["| Method | Paper NTU Acc | Paper TREC Acc | Paper NTU time (s) | Ours plain Acc@12 "
            "| Ours plain Acc@1 | Ours perturbed Acc@12 | Ours perturbed Acc@1 |",
            "|---|---|---|---|---|---|---|---|"]
    for name, m in methods.items():
        paper = PAPER.get(name)
        cells = (f"{paper['ntu']:.4f} | {paper['trec']:.4f} | {paper['ntu_s']}" if paper
                 else "– | – | –")
        p, q = m["sets"]["plain"], m["sets"]["perturbed"]
        rows.append(f"| {name} | {cells} | {p['acc@12']:.4f} | {p['acc@1']:.4f} "
                    f"| {q['acc@12']:.4f} | {q['acc@1']:.4f} |")
    return rows


def ordering_differences(methods: dict, set_name: str, figure: str = "acc@12"
                         ) -> list[tuple[str, str]]:
    """Pairs (a, b) the paper ranks a > b (NTU) that measure the other way round here."""
    names = [n for n in PAPER if n in methods]
    flipped = []
    for a, b in combinations(names, 2):
        first, second = (a, b) if PAPER[a]["ntu"] > PAPER[b]["ntu"] else (b, a)
        if methods[first]["sets"][set_name][figure] < methods[second]["sets"][set_name][figure]:
            flipped.append((first, second))
    return flipped


def _ordering(methods: dict) -> list[str]:
    paper_order = " > ".join(sorted(PAPER, key=lambda n: -PAPER[n]["ntu"]))
    lines = [f"Paper order (NTU): {paper_order}."]
    for set_name in SETS:
        measured = sorted((n for n in PAPER if n in methods),
                          key=lambda n: -methods[n]["sets"][set_name]["acc@12"])
        flipped = ordering_differences(methods, set_name)
        lines.append(
            f"Measured order ({set_name}, Acc@12): {' > '.join(measured)}; pairs reversed "
            "against the paper: "
            + (", ".join(f"{a} < {b}" for a, b in flipped) if flipped else "none") + "."
        )
    return [line + "  " for line in lines]


def _perturbation_table(methods: dict, key: str = "perturbations") -> list[str]:
    kinds = sorted({k for m in methods.values() for k in m.get(key, {})})
    rows = ["| Method | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for name, m in methods.items():
        cells = [f"{m[key][k]['top1_video']:.2f}" if k in m.get(key, {}) else "–"
                 for k in kinds]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = [str(next(iter(methods.values())).get(key, {}).get(k, {}).get("queries", 0))
              for k in kinds]
    rows.append("| (queries) | " + " | ".join(counts) + " |")
    return rows


def _cost(methods: dict) -> list[str]:
    """Each Ours variant's query latency on all sets (decoding, CNN forwards of the query and
    its regions, search, verification), against the default before regions and verification."""
    rows = ["Median over all queries of the three sets of the time from the image file to the "
            "ranked key frames (decoding, trimming, the CNN forwards of the query and of its "
            "regions, the search, the verification; without the moment's refinement, measured "
            "under Localisation), and its ratio to the former default's measured in the same "
            "run.", "",
            "| Method | Median ms | p95 ms | × former default |", "|---|---|---|---|"]
    base = _all_sets(methods[TRIMMED])[0] if TRIMMED in methods else None
    for name, m in methods.items():
        if not name.startswith("Ours"):
            continue
        median, p95 = _all_sets(m)
        ratio = f"{median / base:.2f}" if base else "–"
        rows.append(f"| {name} | {median:.0f} | {p95:.0f} | {ratio} |")
    return rows


def _all_sets(method: dict) -> tuple[float, float]:
    """Query-weighted mean over the sets of the per-set medians and p95s (the per-query times
    are not kept in results.json)."""
    sets = method["sets"].values()
    total = sum(f["queries"] for f in sets)
    median = sum(f["with_cnn_ms_median"] * f["queries"] for f in sets) / total
    p95 = sum(f["with_cnn_ms_p95"] * f["queries"] for f in sets) / total
    return median, p95


def _verdicts(verdicts: dict) -> list[str]:
    rows = ["Kept: share of the collection's queries answered as a match with the right video "
            "first. Outside queries: the outside videos' and each work's against the index "
            "without it; FPR is the share of them answered as a match. Thresholds cross-validated "
            "by work (frameseek/eval/verdicts.py); \"shipped\" is the rule frameseek ships "
            "(similarity 0.58, or MATCH_INLIERS inliers), not cross-validated.", "",
            "| Method | Rule | Thresholds (all works) | Outside queries | FPR (CV) | Kept plain "
            "| Kept perturbed | Kept hard | Shipped: FPR | Shipped: kept hard |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rules in verdicts.items():
        for rule, f in rules.items():
            similarity, inliers = f["thresholds_all_works"]
            shown = f"{similarity:.2f}" + (f", {inliers}" if inliers < 1 << 29 else "")
            kept = [f"{f['sets'][s]['kept']:.3f}" if s in f["sets"] else "–" for s in SETS]
            shipped = f["sets"].get("hard", {}).get("kept_shipped")
            rows.append(f"| {name} | {rule} | {shown} | {f['outside_queries']} | {f['fpr']:.3f} "
                        f"| {' | '.join(kept)} | {f['shipped']['fpr']:.3f} "
                        f"| {'–' if shipped is None else f'{shipped:.3f}'} |")
    families = sorted({k for rules in verdicts.values() for f in rules.values()
                       for k in f["families"]})
    rows += ["", "Kept per hard family (cross-validated thresholds):", "",
             "| Method | Rule | " + " | ".join(families) + " |",
             "|---|---|" + "---|" * len(families)]
    for name, rules in verdicts.items():
        for rule, f in rules.items():
            cells = [f"{f['families'][k]['kept']:.2f}" if k in f["families"] else "–"
                     for k in families]
            rows.append(f"| {name} | {rule} | " + " | ".join(cells) + " |")
    return rows


def _localisation(by_method: dict) -> list[str]:
    rows = ["The top result for each query, at its key frame's time and refined to the moment "
            "(`Index.search` with `refine=False` and by default; frameseek/localize.py). Within: "
            "share of all queries whose top result is the right video within that many seconds "
            "of the true time; the median error is over right-video results.",
            "",
            "| Method | Queries | Mode | Right video | ≤ 0.5 s | ≤ 1 s | ≤ 2 s "
            "| Median error (s) | Added ms (median / p95) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, found in by_method.items():
        for set_name, modes in found["sets"].items():
            for mode, f in modes.items():
                error = "–" if f["median_error_s"] is None else f"{f['median_error_s']:.3f}"
                rows.append(
                    f"| {name} | {set_name} ({f['queries']}) | {mode} "
                    f"| {f['correct_video']:.3f} | {f['within_0.5s']:.3f} | {f['within_1s']:.3f} "
                    f"| {f['within_2s']:.3f} | {error} "
                    f"| {f['added_ms_median']:.1f} / {f['added_ms_p95']:.1f} |")
    found = next(iter(by_method.values()))
    minutes = found["track_bytes"] / found["track_bytes_per_minute"] if found["track_bytes"] else 0
    share = found["track_bytes"] / max(1, found["index_bytes_without_tracks"])
    rows += ["", f"Signature tracks: {found['track_bytes'] / 1024:.0f} KiB for {minutes:.1f} min "
                 f"of video ({found['track_bytes_per_minute'] / 1024:.1f} KiB per indexed minute, "
                 f"{share:.1%} of the index without them); not counted in the bytes per key "
                 "frame below."]
    return rows


def _speed_table(r: dict) -> list[str]:
    rows = ["| Method | Entries | Compression ratio | Bytes per entry (vector) "
            "| Build beyond the shared pass (s) | Query CNN |",
            "|---|---|---|---|---|---|"]
    for name, m in r["methods"].items():
        build = r["indexing"]["method_build_s"][name]
        rows.append(f"| {name} | {m['entries']} | {m['compression_ratio']:.4f} "
                    f"| {m['vector_bytes']} | {build:.2f} | {'yes' if m['uses_cnn'] else 'no'} |")
    rows += ["", f"{DEFAULT} on disk (SQLite with vectors, spans and thumbnails): "
                 f"{r['ours_index_bytes_per_keyframe']:.0f} bytes per key frame."]
    return rows


def _indexing(r: dict) -> list[str]:
    i = r["indexing"]
    return [
        f"Indexing: the shared analysis pass (decode every frame, colour histograms, VGG16 on "
        f"the sampled frames, cached) took {i['analysis_wall_s']:.0f} s wall, "
        f"{i['analysis_cpu_s']:.0f} s CPU, i.e. {i['analysis_wall_s_per_video_s']:.2f} s wall "
        "per second of video; it is what `frameseek index` spends too. Key-frame selection and "
        "writing the index are in Ours' build time above. Wall times depend on other load on "
        "the machine."
    ]


def _sweep_table(sweep: list[dict]) -> list[str]:
    rows = ["| θ | Key frames | Compression ratio | m-rule compression ratio | Plain Acc@12 "
            "| Plain top-1 video | Perturbed Acc@12 | Perturbed top-1 video |",
            "|---|---|---|---|---|---|---|---|"]
    for row in sweep:
        p, q = row.get("plain", {}), row.get("perturbed", {})
        rows.append(
            f"| {row['theta']:.1f} | {row['keyframes']} | {row['compression_ratio']:.4f} "
            f"| {row['m_rule_compression_ratio']:.4f} | {p.get('acc@12', 0):.3f} "
            f"| {p.get('top1_video', 0):.3f} | {q.get('acc@12', 0):.3f} "
            f"| {q.get('top1_video', 0):.3f} |"
        )
    return rows


def plot_theta_sweep(sweep: list[dict], path: Path) -> Path:
    thetas = [row["theta"] for row in sweep]
    figure, axis = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    axis.plot(thetas, [row["compression_ratio"] for row in sweep], "o-", color="black",
              label="compression ratio (as indexed)")
    axis.plot(thetas, [row["m_rule_compression_ratio"] for row in sweep], "x:", color="grey",
              label="compression ratio (m rule alone)")
    for set_name, colour in (("plain", "tab:blue"), ("perturbed", "tab:orange")):
        if sweep and set_name in sweep[0]:
            axis.plot(thetas, [row[set_name]["acc@12"] for row in sweep], "s-", color=colour,
                      label=f"Acc@12, {set_name} queries")
    axis.set_xlabel("θ")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    axis.set_title("Key-frame threshold θ: compression and accuracy (Ours)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _definitions() -> list[str]:
    return [
        "## Definitions",
        "",
        "- Acc@n: the paper's accuracy (Eq. 2), results from the query's video / results, "
        "over the top n, averaged over queries. A video with fewer than n key frames cannot "
        "reach 1 at depth n.",
        "- Top-1 video: share of queries whose first result is from the right video. MRR: mean "
        "of 1/rank of the first result from the right video within the top 12 (0 if none).",
        "- Δt: seconds between the query's moment and the top-1 result, over queries whose "
        "top-1 video is right (DFTA: distance to the shot's span, 0 inside it). "
        "Δt ≤ 2 s: share of all queries with the right video and Δt ≤ 2 s.",
        "- Search ms: the method's own query encoding and search, the query's CNN features "
        "given. With CNN: plus decoding the query image and the VGG16 forward (LBTT: decoding "
        "only, it needs no CNN).",
        "- Compression ratio: 1 − entries / frames (paper Eq. 3); the m-rule ratio is "
        "1 − m / frames with m from Algorithm 1 steps 1-5 before frameseek caps it at one key "
        "frame per two sampled frames.",
    ]
