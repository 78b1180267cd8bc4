"""A page like the paper's Tables 3 and 4: each query beside its top 12 key frames."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from frameseek.eval.metrics import Outcome
from frameseek.video import format_time

QUERY_WIDTH = 192

STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
.row { display: flex; gap: 8px; margin-bottom: 1.5em; align-items: flex-start; }
figure { margin: 0; width: 150px; font-size: 11px; }
figure img { width: 150px; border: 4px solid #ccc; }
figure.hit img { border-color: #2a2; }
figure.miss img { border-color: #d22; }
figure.query { width: 200px; }
figure.query img { width: 192px; border-color: #333; }
"""


def write_gallery(path: Path, outcomes: Sequence[Outcome], query_dir: Path,
                  thumbnail: Callable[[int], bytes | None]) -> Path:
    """An HTML page with every picture embedded, so the one file can be moved or committed."""
    rows = []
    for outcome in outcomes:
        q = outcome.query
        cells = [_figure("query", _query_thumbnail(query_dir / q.file),
                         f"{q.set}: {Path(q.video).name} {format_time(q.time)}"
                         f" ({q.perturbation['kind']})")]
        for rank, result in enumerate(outcome.results, 1):
            picture = thumbnail(result.keyframe_id) if result.keyframe_id is not None else None
            kind = "hit" if result.video == q.video else "miss"
            cells.append(_figure(kind, picture,
                                 f"{rank}. {Path(result.video).name} {format_time(result.time)}"))
        rows.append(f'<div class="row">{"".join(cells)}</div>')
    page = (
        "<!doctype html><meta charset='utf-8'><title>frameseek eval gallery</title>"
        f"<style>{STYLE}</style><h1>Top 12 key frames per query (Ours)</h1>"
        "<p>Green: a key frame of the query's video (a visual match in the paper's sense); "
        "red: another video.</p>" + "".join(rows)
    )
    path.write_text(page, encoding="utf-8")
    return path


def _query_thumbnail(file: Path) -> bytes:
    image = Image.open(file).convert("RGB")
    height = max(2, round(image.height * QUERY_WIDTH / image.width))
    buffer = io.BytesIO()
    image.resize((QUERY_WIDTH, height), Image.Resampling.BILINEAR).save(
        buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _figure(kind: str, jpeg: bytes | None, caption: str) -> str:
    image = (f'<img src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}">'
             if jpeg else "")
    return f'<figure class="{kind}">{image}<figcaption>{html.escape(caption)}</figcaption></figure>'
