"""Query sets from a real video: ground truth, every kind of damage, seeding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek.eval.queries import HARD_FAMILIES, HARD_PER_FRAME, PERTURBATIONS, make_queries
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


@pytest.fixture(scope="module")
def hard(queries):
    out, listed = queries
    return out, [q for q in listed if q.set == "hard"]


def test_the_hard_set_holds_every_family_from_the_plain_frames(queries, hard) -> None:
    _, listed = queries
    out, hard_queries = hard
    # 7 frames × HARD_PER_FRAME queries, rotating over the nine families.
    assert len(hard_queries) == 7 * HARD_PER_FRAME
    assert {q.perturbation["kind"] for q in hard_queries} == set(HARD_FAMILIES)
    plain = {q.frame: q for q in listed if q.set == "plain"}
    for q in hard_queries:
        assert (q.video, q.time) == (plain[q.frame].video, plain[q.frame].time)
        assert (out / q.file).is_file()


def test_hard_families_change_the_picture_as_their_parameters_say(queries, hard) -> None:
    out, listed = queries
    frame = Image.open(out / next(q.file for q in listed if q.set == "plain"))
    width, height = frame.size
    by_kind = {q.perturbation["kind"]: q for q in hard[1]}

    def picture(kind: str) -> Image.Image:
        return Image.open(out / by_kind[kind].file)

    inset = by_kind["inset"].perturbation
    x, y, w, h = inset["box"]
    assert 0.28 <= inset["share"] <= 0.45 and picture("inset").width >= width
    assert x + w <= picture("inset").width and y + h <= picture("inset").height
    assert 96 <= picture("thumbnail").width <= 160
    assert by_kind["thumbnail"].perturbation["quality"] <= 35
    vertical = picture("vertical")
    assert vertical.height == height and vertical.width < vertical.height
    crop = by_kind["tight_crop"].perturbation
    assert 0.12 <= crop["area"] <= 0.30 and picture("tight_crop").size == tuple(crop["box"][2:])
    grey = np.asarray(picture("grey_contrast").convert("RGB"), dtype=np.int16)
    assert np.abs(grey[..., 0] - grey[..., 2]).mean() < 3  # grey, up to JPEG's chroma noise
    assert abs(by_kind["phone_moire"].perturbation["angle"]) <= 15
    assert 0.30 <= by_kind["text_block"].perturbation["cover"] <= 0.45
    stretched = picture("stretch")
    assert stretched.height == height
    assert stretched.width == round(width * by_kind["stretch"].perturbation["factor"])
    steps = by_kind["mixture"].perturbation["steps"]
    assert steps[0] in ("inset", "vertical", "tight_crop", "stretch") and len(steps) >= 2


def test_the_hard_set_leaves_the_plain_and_perturbed_sets_as_they_were(
        queries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, listed = queries
    monkeypatch.setattr("frameseek.eval.queries.HARD_PER_FRAME", 0)
    without = make_queries([BIKES], tmp_path, per_video=7, seed=3)
    assert not [q for q in without if q.set == "hard"]
    before = [q for q in listed if q.set != "hard"]
    assert [(q.file, q.time, q.perturbation) for q in without] == [
        (q.file, q.time, q.perturbation) for q in before]
    assert all((tmp_path / q.file).read_bytes() == (out / q.file).read_bytes() for q in before)
