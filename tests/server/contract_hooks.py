"""Schemathesis hooks for tests/server/test_contract.py (loaded with SCHEMATHESIS_HOOKS).

The search's `image` field takes any picture Pillow reads ("image/*" in the description); left to
itself, Schemathesis would send bytes of no format, which the server rightly refuses. Here the
valid uploads are real pictures: random sizes, colours and noise, as PNG or JPEG. Likewise the
clip search's `clip` field gets real MP4 videos of a few frames.
"""

from __future__ import annotations

import io

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image


@st.composite
def pictures(draw: st.DrawFn, format: str) -> bytes:
    width = draw(st.integers(1, 96))
    height = draw(st.integers(1, 96))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


@st.composite
def clips(draw: st.DrawFn) -> bytes:
    """A real video of a few frames (the clip search's `clip` field takes any video)."""
    import av

    width, height = 2 * draw(st.integers(8, 40)), 2 * draw(st.integers(8, 40))
    count = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(count):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


schemathesis.openapi.media_type("video/mp4", clips())
schemathesis.openapi.media_type("image/png", pictures("PNG"))
schemathesis.openapi.media_type("image/jpeg", pictures("JPEG"))
