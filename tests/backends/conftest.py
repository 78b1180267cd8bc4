"""The cut VGG16 model, once per run, for the tests that load back ends themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from frameseek.features import pool5_model


@pytest.fixture(scope="session")
def model() -> Path:
    return pool5_model()
