"""Query sets from a real video: ground truth, every kind of damage, seeding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek.eval.queries import PERTURBATIONS, make_queries
from tests.conftest import BIKES, frame_at


@pytest.fixture(scope="module")
def queries(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("queries")
    # Seven queries per video: the kinds of damage rotate, so each appears exactly once.
    return out, make_queries([BIKES], out, per_video=7, seed=3)


def test_plain_queries_are_the_decoded_frames_at_their_ground_truth(queries) -> None:
    out, listed = queries
    plain = [q for q in listed if q.set == "plain"]
    assert len(plain) == 7
    assert len({q.frame for q in plain}) == 7
    for q in plain[:3]:
        pixels, time = frame_at(BIKES, q.frame)
        assert q.time == pytest.approx(time, abs=1e-3)
        image = np.asarray(Image.open(out / q.file).convert("RGB"), dtype=np.int16)
        assert image.shape == pixels.shape
        assert np.abs(image - pixels).mean() < 4  # only JPEG loss


def test_every_kind_of_damage_is_applied_with_its_parameters(queries) -> None:
    out, listed = queries
    perturbed = {q.perturbation["kind"]: q for q in listed if q.set == "perturbed"}
    assert set(perturbed) == set(PERTURBATIONS)
    frame = Image.open(out / next(q.file for q in listed if q.set == "plain"))
    width, height = frame.size

    def size(kind: str) -> tuple[int, int]:
        return Image.open(out / perturbed[kind].file).size

    crop = perturbed["crop"].perturbation
    assert 0.5 <= crop["area"] <= 0.8 and size("crop") == tuple(crop["box"][2:])
    scale = perturbed["downscale"].perturbation["scale"]
    assert 0.3 <= scale <= 0.5 and size("downscale")[0] == round(width * scale)
    assert 20 <= perturbed["jpeg"].perturbation["quality"] <= 40
    assert all(0.7 <= perturbed["brightness_contrast"].perturbation[k] <= 1.3
               for k in ("brightness", "contrast"))
    assert size("screenshot")[0] > width * 1.4 and size("screenshot")[1] > height
    assert 0.10 <= perturbed["occlusion"].perturbation["cover"] <= 0.20
    assert size("phone_photo")[0] > width  # the bezel around the screen
    for kind, q in perturbed.items():
        plain = next(p for p in listed if p.set == "plain" and p.frame == q.frame)
        assert (q.video, q.time) == (plain.video, plain.time), kind


def test_queries_are_seeded_and_reused(queries, tmp_path: Path) -> None:
    out, listed = queries
    again = make_queries([BIKES], tmp_path / "a", per_video=7, seed=3)
    assert [(q.file, q.time, q.perturbation) for q in again] == [
        (q.file, q.time, q.perturbation) for q in listed]
    other = make_queries([BIKES], tmp_path / "b", per_video=7, seed=4)
    assert [q.time for q in other] != [q.time for q in listed]
    stored = json.loads((out / "queries.json").read_text())
    assert stored["settings"] == {"seed": 3, "per_video": 7, "videos": [str(BIKES)]}
