"""The cut VGG16 model, once per run, for the tests that load back ends themselves."""

from __future__ import annotations

import pytest

from frameseek.features import pool5_model


@pytest.fixture(scope="session")
def model() -> bytes:
    return pool5_model()
