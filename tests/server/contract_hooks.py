"""Schemathesis hooks for tests/server/test_contract.py (loaded with SCHEMATHESIS_HOOKS).

The search's `image` field takes any picture Pillow reads ("image/*" in the description); left to
itself, Schemathesis would send bytes of no format, which the server rightly refuses. Here the
valid uploads are real pictures: random sizes, colours and noise, as PNG or JPEG.
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


schemathesis.openapi.media_type("image/png", pictures("PNG"))
schemathesis.openapi.media_type("image/jpeg", pictures("JPEG"))
