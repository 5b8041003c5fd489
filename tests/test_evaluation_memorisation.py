"""Tests of the SSIM nearest-neighbour memorisation check."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from evaluation.memorisation import (
    NEAR_COPY_SSIM,
    NeighbourPair,
    gaussian_window,
    nearest_neighbours,
    plot_nearest_pairs,
    ssim_matrix,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def reference_ssim(first: np.ndarray, second: np.ndarray) -> float:
    return structural_similarity(
        first, second, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )


def smooth_images(count: int, size: int, seed: int) -> np.ndarray:
    """Make blurred random images, which have the local structure SSIM is sensitive to."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = rng.normal(128, 60, size=(count, size, size))
    blurred = ndimage.gaussian_filter(noise, sigma=(0, 2, 2))
    return np.clip((blurred - 128) * 3 + 128, 0, 255).astype(np.uint8)


def test_gaussian_window_matches_eleven_taps() -> None:
    window = gaussian_window()

    assert window.shape == (11,)
    assert window.sum() == pytest.approx(1.0)
    assert window[5] == window.max()
    assert window[0] == pytest.approx(window[10])


@pytest.mark.parametrize("shape", [(64, 64), (40, 57), (11, 11)])
def test_ssim_matrix_matches_skimage(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(2)
    first = rng.integers(0, 256, size=(3, *shape), dtype=np.uint8)
    second = rng.integers(0, 256, size=(5, *shape), dtype=np.uint8)
    # A noisy copy gives a value near 1, where errors in the variance terms show.
    second[1] = np.clip(first[0].astype(int) + rng.integers(-8, 9, size=shape), 0, 255)

    result = ssim_matrix(first, second)

    expected = np.array([[reference_ssim(a, b) for b in second] for a in first])
    assert result.shape == (3, 5)
    assert np.max(np.abs(result - expected)) < 1e-3
    assert result[0, 1] > 0.9


def test_ssim_matrix_matches_skimage_across_blocks() -> None:
    # More images than one block holds on either side (4 by 128).
    first = smooth_images(6, 32, seed=3)
    second = smooth_images(140, 32, seed=4)

    result = ssim_matrix(first, second)

    for row, column in [(0, 0), (5, 139), (4, 128), (3, 127), (1, 70)]:
        assert result[row, column] == pytest.approx(reference_ssim(first[row], second[column]), abs=1e-3)


def test_ssim_matrix_matches_skimage_on_mammograms() -> None:
    sample = DATA / "mias-sample"
    if not sample.is_dir():
        pytest.skip("shared/data/mias-sample is not present next to the repository")
    from PIL import Image

    images = []
    for name in ("mdb003.pgm", "mdb018.pgm", "mdb023.pgm"):
        with Image.open(sample / name) as image:
            images.append(np.asarray(image.convert("L").resize((64, 64), Image.BILINEAR)))
    stack = np.stack(images)

    result = ssim_matrix(stack, stack)

    expected = np.array([[reference_ssim(a, b) for b in stack] for a in stack])
    assert np.max(np.abs(result - expected)) < 1e-3
    assert np.allclose(np.diag(result), 1.0, atol=1e-6)


def test_exact_copy_is_found_and_flagged() -> None:
    training = smooth_images(30, 64, seed=5)
    synthetic = smooth_images(4, 64, seed=6)
    synthetic[2] = training[17]

    pairs = nearest_neighbours(synthetic, training)

    assert len(pairs) == 4
    copy = pairs[2]
    assert isinstance(copy, NeighbourPair)
    assert copy.synthetic_index == 2
    assert copy.training_index == 17
    assert copy.ssim == pytest.approx(1.0, abs=1e-6)
    assert copy.l2 == 0.0
    assert copy.near_copy is True
    others = [pair for pair in pairs if pair.synthetic_index != 2]
    assert all(pair.ssim < NEAR_COPY_SSIM for pair in others)
    assert not any(pair.near_copy for pair in others)


def test_nearest_neighbour_is_the_most_similar_image() -> None:
    training = smooth_images(12, 32, seed=7)
    synthetic = smooth_images(3, 32, seed=8)
    expected = [
        int(np.argmax([reference_ssim(image, candidate) for candidate in training]))
        for image in synthetic
    ]

    pairs = nearest_neighbours(synthetic, training)

    assert [pair.training_index for pair in pairs] == expected
    for pair in pairs:
        difference = synthetic[pair.synthetic_index] / 255.0 - training[pair.training_index] / 255.0
        assert pair.l2 == pytest.approx(np.sqrt(np.mean(difference**2)))


def test_l2_metric_finds_closest_pixels() -> None:
    training = smooth_images(10, 32, seed=9)
    synthetic = np.clip(training[[4, 7]].astype(int) + 3, 0, 255).astype(np.uint8)

    pairs = nearest_neighbours(synthetic, training, metric="l2")

    assert [pair.training_index for pair in pairs] == [4, 7]
    assert pairs[0].l2 == pytest.approx(3 / 255, abs=2e-3)
    assert pairs[0].ssim == pytest.approx(reference_ssim(synthetic[0], training[4]), abs=1e-3)


@pytest.mark.parametrize(
    ("synthetic", "training", "metric", "message"),
    [
        (np.zeros((2, 32, 32), np.uint8), np.zeros((2, 16, 16), np.uint8), "ssim", "one size"),
        (np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8), np.uint8), "ssim", "SSIM window"),
        (np.zeros((2, 32, 32), np.float32), np.zeros((2, 32, 32), np.uint8), "ssim", "uint8"),
        (np.zeros((2, 32, 32), np.uint8), np.zeros((2, 32, 32), np.uint8), "psnr", "metric"),
    ],
)
def test_nearest_neighbours_rejects_bad_input(
    synthetic: np.ndarray, training: np.ndarray, metric: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        nearest_neighbours(synthetic, training, metric=metric)


def test_plot_nearest_pairs_writes_png(tmp_path: Path) -> None:
    training = smooth_images(10, 64, seed=10)
    synthetic = smooth_images(5, 64, seed=11)
    synthetic[3] = training[2]
    pairs = nearest_neighbours(synthetic, training)

    path = plot_nearest_pairs(pairs, synthetic, training, tmp_path / "pairs" / "nearest.png", top=4)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000


@pytest.mark.slow
def test_ssim_search_handles_500_by_2000() -> None:
    rng = np.random.default_rng(12)
    training = rng.integers(0, 256, size=(2000, 64, 64), dtype=np.uint8)
    synthetic = rng.integers(0, 256, size=(500, 64, 64), dtype=np.uint8)
    synthetic[123] = training[1999]

    started = time.perf_counter()
    pairs = nearest_neighbours(synthetic, training)
    seconds = time.perf_counter() - started

    assert len(pairs) == 500
    assert pairs[123].training_index == 1999
    assert pairs[123].near_copy
    assert sum(pair.near_copy for pair in pairs) == 1
    print(f"SSIM search 500 x 2000 at 64x64 took {seconds:.1f} s")


def test_ssim_matrix_restores_blas_threads() -> None:
    from evaluation.memorisation import _openblas_thread_controls

    controls = _openblas_thread_controls()
    if not controls:
        pytest.skip("no OpenBLAS thread control found in this process")
    before = [get_threads() for get_threads, _ in controls]

    ssim_matrix(smooth_images(2, 16, seed=13), smooth_images(3, 16, seed=14))

    assert [get_threads() for get_threads, _ in controls] == before
