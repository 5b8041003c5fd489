"""Breast geometry checks on synthetic films: chest-wall side, dataset conventions, canonical flip."""

from __future__ import annotations

import numpy as np
import pytest

from curator.detectors.geometry import (
    check_geometry,
    chest_wall_side,
    ddsm_scanner,
    expected_chest_wall,
    from_canonical,
    looks_like_mlo,
    normalise_dataset,
    to_canonical,
)
from curator.detectors.synthetic import add_paint, synthetic_film


@pytest.fixture(scope="module")
def left_film() -> np.ndarray:
    return synthetic_film(height=1200, width=600, chest_wall="left")


def _synthetic_mlo(chest_wall: str = "left") -> np.ndarray:
    """A film with a bright pectoral triangle in the upper chest-wall corner and breast tissue below it."""
    film = synthetic_film(height=1200, width=600, chest_wall="left", breast_depth=0.75, breast_height=0.7)
    y, x = np.mgrid[0:1200, 0:600]
    # The pectoral muscle: from the whole top edge of the chest wall down to 60 %
    # of the height, its edge running diagonally.
    pectoral = x / 330 + y / 720 < 1.0
    film[pectoral] = 215
    return film if chest_wall == "left" else np.ascontiguousarray(film[:, ::-1])


def test_breast_on_left_gives_left(left_film: np.ndarray) -> None:
    assert chest_wall_side(left_film) == "left"


def test_breast_on_right_gives_right(left_film: np.ndarray) -> None:
    assert chest_wall_side(np.ascontiguousarray(left_film[:, ::-1])) == "right"


def test_chest_wall_found_with_black_margin(left_film: np.ndarray) -> None:
    # MIAS films have a black margin between the chest wall and the image edge.
    padded = np.pad(left_film, ((0, 0), (120, 0)), constant_values=8)
    assert chest_wall_side(padded) == "left"


def test_chest_wall_ignores_paint_on_other_side(left_film: np.ndarray) -> None:
    painted = add_paint(left_film, (430, 60, 170, 300))
    assert chest_wall_side(painted) == "left"


def test_canonical_flip_round_trips(left_film: np.ndarray) -> None:
    mirrored = np.ascontiguousarray(left_film[:, ::-1])

    canonical, transform = to_canonical(mirrored, "right")

    assert transform == {"flip": "horizontal"}
    assert np.array_equal(canonical, left_film)
    assert np.array_equal(from_canonical(canonical, transform), mirrored)


def test_canonical_of_left_film_is_identity(left_film: np.ndarray) -> None:
    canonical, transform = to_canonical(left_film, "left")

    assert transform == {}
    assert np.array_equal(canonical, left_film)
    assert canonical is not left_film
    assert np.array_equal(from_canonical(canonical, transform), left_film)


def test_canonical_rejects_unknown_side(left_film: np.ndarray) -> None:
    with pytest.raises(ValueError, match="chest_wall"):
        to_canonical(left_film, "top")
    with pytest.raises(ValueError, match="transform"):
        from_canonical(left_film, {"flip": "vertical"})


@pytest.mark.parametrize(
    ("side", "dataset", "scanner", "expected"),
    [
        ("LEFT", "mini-ddsm", "A", "right"),
        ("RIGHT", "mini-ddsm", "A", "left"),
        ("LEFT", "mini-ddsm", "C", "left"),
        ("right", "MINI-DDSM", "c", "right"),
        ("LEFT", "mini-ddsm", "B", None),
        ("LEFT", "mini-ddsm", None, None),
        ("LEFT", "mias", None, "left"),
        ("RIGHT", "mini-MIAS", None, "right"),
        ("LEFT", "inbreast", None, None),
    ],
)
def test_expected_chest_wall_conventions(side: str, dataset: str, scanner: str | None, expected: str | None) -> None:
    assert expected_chest_wall(side, dataset, scanner) == expected


def test_expected_chest_wall_rejects_bad_side() -> None:
    with pytest.raises(ValueError, match="invalid side"):
        expected_chest_wall("UP", "mias")


def test_ddsm_scanner_from_file_name() -> None:
    assert ddsm_scanner("A_0003_1.LEFT_CC.jpg") == "A"
    assert ddsm_scanner("C_0236_1.RIGHT_MLO.jpg") == "C"
    assert ddsm_scanner("mdb274.pgm") is None
    assert ddsm_scanner("C_0236_1.RIGHT_CC_Mask.jpg") == "C"


def test_normalise_dataset_aliases() -> None:
    assert normalise_dataset("Mini_DDSM") == "mini-ddsm"
    assert normalise_dataset("mini-MIAS") == "mias"
    assert normalise_dataset("VinDr") == "vindr"


def test_pectoral_triangle_raises_mlo_score(left_film: np.ndarray) -> None:
    # A plain half ellipse is not a realistic CC outline, because real CC breasts
    # taper more towards the top, so CC films are checked on real images. Here the
    # pectoral triangle must make the guess MLO and raise the score well above the
    # plain film's.
    _, plain_score = looks_like_mlo(left_film)
    for chest_wall in ("left", "right"):
        is_mlo, score = looks_like_mlo(_synthetic_mlo(chest_wall))
        assert is_mlo, chest_wall
        assert score > 0.95, chest_wall
        assert score > plain_score + 0.2, chest_wall


def test_check_geometry_flags_side_mismatch(left_film: np.ndarray) -> None:
    # A mini-DDSM letter-A film of a LEFT breast should face right.
    result = check_geometry(left_film, "LEFT", "CC", "mini-ddsm", scanner="A")

    assert result.chest_wall == "left"
    assert result.expected_chest_wall == "right"
    assert result.side_agrees is False
    assert result.view_agrees is (result.view_guess == "CC")


def test_check_geometry_agrees_and_reports_view() -> None:
    result = check_geometry(_synthetic_mlo("left"), "LEFT", "CC", "mias")

    assert result.side_agrees is True
    assert result.view_guess == "MLO"
    assert result.view_agrees is False
    assert result.to_dict()["view_guess"] == "MLO"


def test_check_geometry_without_convention(left_film: np.ndarray) -> None:
    result = check_geometry(left_film, None, None, "mini-ddsm")

    assert result.expected_chest_wall is None
    assert result.side_agrees is None
    assert result.view_agrees is None
