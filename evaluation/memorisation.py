"""Memorisation check: finds, for each synthetic image, its most similar training image.

A generator that copies its training images is not augmenting anything, so
each synthetic image is paired with its nearest training image by SSIM (or
by pixel distance), and pairs above NEAR_COPY_SSIM are flagged.
"""

from __future__ import annotations

import ctypes
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Two 64-128 px mammograms with an SSIM of 0.95 or more are visually the same
# image. Measured on the 40 MIAS and 92 mini-DDSM sample images resized to 64
# and 128 px: no two different images reached 0.92 (99th percentile 0.72-0.78),
# while a copy with Gaussian noise of s.d. 2 grey levels scored 0.91-0.96.
# NOTE: a copy with stronger noise falls below the threshold (s.d. 4 grey
# levels gave 0.73-0.88), so the flag misses noisy copies; read the SSIM too.
NEAR_COPY_SSIM = 0.95

# Gaussian-weighted SSIM as defined by Wang et al. (2004): sigma 1.5, window
# cut at 3.5 sigma (11 x 11 pixels), K1 = 0.01, K2 = 0.03, population
# covariances, and the mean taken over pixels whose window lies inside the
# image. These match skimage.metrics.structural_similarity with
# gaussian_weights=True, sigma=1.5, use_sample_covariance=False.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# Images compared per block. At 64 x 64 pixels each block's float32 maps
# take about 6 MB; larger blocks measured slower on a 2-core machine.
FIRST_BLOCK = 4
SECOND_BLOCK = 128


class NeighbourPair(NamedTuple):
    """A synthetic image, its nearest training image, and how close they are.

    `l2` is the root-mean-square pixel difference on a 0-1 scale (the
    Euclidean distance divided by the square root of the pixel count).
    """

    synthetic_index: int
    training_index: int
    ssim: float
    l2: float
    near_copy: bool


def gaussian_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> np.ndarray:
    """Return the normalised 1-D Gaussian weights, radius int(truncate * sigma + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def ssim_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Compute the SSIM of every image in `first` (M, H, W) with every image in `second` (N, H, W).

    Images are uint8 (data range 255). Returns an (M, N) float64 array.
    """
    first_images = _as_unit_float(first, "first")
    second_images = _as_unit_float(second, "second")
    _check_same_size(first_images, second_images)
    height, width = first_images.shape[1:]
    window = gaussian_window().astype(np.float32)
    filters = _ValidFilters(
        rows=_valid_filter_matrix(height, window), columns=_valid_filter_matrix(width, window)
    )

    # Stacks are laid out (row, image, column), so that filtering along the
    # rows of a whole stack is one matrix product.
    first_by_row = np.ascontiguousarray(first_images.transpose(1, 0, 2))
    second_by_row = np.ascontiguousarray(second_images.transpose(1, 0, 2))
    first_stats = _local_statistics(
        first_by_row, filters, luminance_offset=SSIM_K1**2, contrast_offset=SSIM_K2**2
    )
    second_stats = _local_statistics(second_by_row, filters)

    result = np.empty((len(first_images), len(second_images)), dtype=np.float64)
    with _single_blas_thread():
        for first_start in range(0, len(first_images), FIRST_BLOCK):
            first_slice = slice(first_start, first_start + FIRST_BLOCK)
            weighted_columns = _weighted_columns(first_images[first_slice], filters.columns)
            for second_start in range(0, len(second_images), SECOND_BLOCK):
                second_slice = slice(second_start, second_start + SECOND_BLOCK)
                block = _ssim_block(
                    weighted_columns,
                    second_by_row[:, second_slice],
                    first_stats.select(first_slice),
                    second_stats.select(second_slice),
                    filters.rows,
                )
                result[first_slice, second_slice] = block
    return result


def nearest_neighbours(
    synthetic_uint8: np.ndarray, training_uint8: np.ndarray, metric: str = "ssim"
) -> list[NeighbourPair]:
    """Pair each synthetic image with its most similar training image.

    Both arrays are uint8 (N, H, W) at the same working resolution. With
    metric='ssim' the nearest image has the highest SSIM. With metric='l2'
    it has the smallest pixel distance, which is much faster to search. Both
    the SSIM and the l2 distance of each chosen pair are reported, and
    `near_copy` is set when the SSIM is at least NEAR_COPY_SSIM.
    """
    if metric not in ("ssim", "l2"):
        raise ValueError(f"metric must be 'ssim' or 'l2', got {metric!r}")
    synthetic = _as_unit_float(synthetic_uint8, "synthetic")
    training = _as_unit_float(training_uint8, "training")
    _check_same_size(synthetic, training)

    if metric == "ssim":
        similarity = ssim_matrix(synthetic_uint8, training_uint8)
        nearest = np.argmax(similarity, axis=1)
        ssim_values = similarity[np.arange(len(synthetic)), nearest]
    else:
        nearest = np.argmin(_squared_distances(synthetic, training), axis=1)
        ssim_values = np.array(
            [
                ssim_matrix(synthetic_uint8[index : index + 1], training_uint8[match : match + 1])[0, 0]
                for index, match in enumerate(nearest)
            ]
        )

    pixel_count = synthetic.shape[1] * synthetic.shape[2]
    pairs = []
    for index, match in enumerate(nearest):
        difference = synthetic[index].astype(np.float64) - training[match].astype(np.float64)
        l2 = float(np.sqrt(np.sum(difference**2) / pixel_count))
        ssim = float(ssim_values[index])
        pairs.append(NeighbourPair(index, int(match), ssim, l2, ssim >= NEAR_COPY_SSIM))
    return pairs


def plot_nearest_pairs(
    pairs: Sequence[NeighbourPair],
    synthetic: np.ndarray,
    training: np.ndarray,
    path: str | Path,
    top: int = 8,
) -> Path:
    """Save a PNG of the `top` closest pairs: synthetic images above, their nearest training images below."""
    if not pairs:
        raise ValueError("no pairs to plot")
    closest = sorted(pairs, key=lambda pair: pair.ssim, reverse=True)[:top]

    figure = Figure(figsize=(1.8 * len(closest), 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, len(closest), squeeze=False)
    for column, pair in enumerate(closest):
        upper, lower = axes[0, column], axes[1, column]
        upper.imshow(np.asarray(synthetic[pair.synthetic_index]).squeeze(), cmap="gray", vmin=0, vmax=255)
        lower.imshow(np.asarray(training[pair.training_index]).squeeze(), cmap="gray", vmin=0, vmax=255)
        upper.set_title(f"synthetic {pair.synthetic_index}", fontsize=8)
        caption = f"training {pair.training_index}\nSSIM {pair.ssim:.3f}"
        if pair.near_copy:
            caption += "\nnear copy"
        lower.set_xlabel(caption, fontsize=8, color="tab:red" if pair.near_copy else "black")
        for axis in (upper, lower):
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle(
        f"Synthetic images closest to a training image (near copy: SSIM >= {NEAR_COPY_SSIM})",
        fontsize=10,
    )

    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    return output


class _ValidFilters(NamedTuple):
    """Matrices that apply the 1-D Gaussian along image rows and columns, valid pixels only."""

    rows: np.ndarray
    columns: np.ndarray


class _LocalStatistics(NamedTuple):
    """Per-image filtered maps laid out (row, image, column).

    `luminance` is mean^2 and `contrast` the variance, each plus an offset.
    The first stack carries c1 and c2 as offsets and the second none, so that
    adding a first and a second map gives one factor of the SSIM denominator.
    """

    double_mean: np.ndarray
    mean: np.ndarray
    luminance: np.ndarray
    contrast: np.ndarray

    def select(self, images: slice) -> _LocalStatistics:
        return _LocalStatistics(*(values[:, images] for values in self))


def _ssim_block(
    weighted_columns: np.ndarray,
    second_by_row: np.ndarray,
    first_stats: _LocalStatistics,
    second_stats: _LocalStatistics,
    rows: np.ndarray,
) -> np.ndarray:
    """Compute the (m, n) SSIM values of m first images against n second images.

    Maps are (row, second image, first image, column) so that both stacks
    broadcast against each other.
    """
    height, n, _ = second_by_row.shape
    valid_height = rows.shape[0]
    m = first_stats.mean.shape[1]

    # Filtered x * y: the column pass multiplies by the first image inside
    # `weighted_columns`, the row pass is one matrix product over all pairs.
    along_columns = np.matmul(second_by_row, weighted_columns)
    cross = (rows @ along_columns.reshape(height, -1)).reshape(valid_height, n, m, -1)

    double_mean_product = first_stats.double_mean[:, np.newaxis] * second_stats.mean[:, :, np.newaxis]
    c1 = np.float32(SSIM_K1**2)
    c2 = np.float32(SSIM_K2**2)

    # 2 * covariance + c2 = 2 * E[xy] - 2 * mean_x * mean_y + c2, computed in place.
    covariance_term = cross
    covariance_term *= 2.0
    covariance_term -= double_mean_product
    covariance_term += c2

    numerator = double_mean_product
    numerator += c1
    numerator *= covariance_term

    denominator = first_stats.luminance[:, np.newaxis] + second_stats.luminance[:, :, np.newaxis]
    denominator *= first_stats.contrast[:, np.newaxis] + second_stats.contrast[:, :, np.newaxis]
    numerator /= denominator

    pixel_count = valid_height * numerator.shape[3]
    return (numerator.sum(axis=(0, 3), dtype=np.float64) / pixel_count).T


def _weighted_columns(images: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Return (H, W, m * W') matrices whose product with a row of y filters x * y along that row.

    Entry [i, l, k * W' + j] is x_k[i, l] * columns[j, l], so that a row of
    a second image times slice i gives the column-filtered x_k * y at row i.
    """
    height, width = images.shape[1:]
    weighted = images.transpose(1, 2, 0)[:, :, :, np.newaxis] * columns.T[np.newaxis, :, np.newaxis, :]
    return weighted.reshape(height, width, -1)


def _local_statistics(
    stack_by_row: np.ndarray,
    filters: _ValidFilters,
    luminance_offset: float = 0.0,
    contrast_offset: float = 0.0,
) -> _LocalStatistics:
    """Compute the Gaussian-weighted mean and variance maps of a (row, image, column) stack."""
    mean = _filter_valid(stack_by_row, filters)
    mean_squared = mean * mean
    variance = _filter_valid(stack_by_row * stack_by_row, filters) - mean_squared
    return _LocalStatistics(
        double_mean=2.0 * mean,
        mean=mean,
        luminance=mean_squared + np.float32(luminance_offset),
        contrast=variance + np.float32(contrast_offset),
    )


def _filter_valid(stack_by_row: np.ndarray, filters: _ValidFilters) -> np.ndarray:
    """Apply the separable Gaussian to a (H, N, W) stack, keeping pixels with a full window.

    Returns (H', N, W') with H' = H - 2 * radius and W' = W - 2 * radius.
    """
    height, count, _ = stack_by_row.shape
    along_columns = np.matmul(stack_by_row, filters.columns.T)
    along_rows = filters.rows @ along_columns.reshape(height, -1)
    return along_rows.reshape(filters.rows.shape[0], count, -1)


def _valid_filter_matrix(length: int, window: np.ndarray) -> np.ndarray:
    """Return the (length - len(window) + 1, length) matrix that correlates a line with `window`."""
    output_length = length - len(window) + 1
    matrix = np.zeros((output_length, length), dtype=window.dtype)
    for row in range(output_length):
        matrix[row, row : row + len(window)] = window
    return matrix


def _squared_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Return the (M, N) squared Euclidean distances between flattened images, in float64."""
    first_flat = first.reshape(len(first), -1).astype(np.float64)
    second_flat = second.reshape(len(second), -1).astype(np.float64)
    first_norms = np.einsum("ij,ij->i", first_flat, first_flat)
    second_norms = np.einsum("ij,ij->i", second_flat, second_flat)
    return first_norms[:, np.newaxis] + second_norms[np.newaxis, :] - 2.0 * first_flat @ second_flat.T


def _as_unit_float(images: np.ndarray, name: str) -> np.ndarray:
    """Return uint8 (N, H, W) images as float32 in [0, 1], raising ValueError on other input."""
    array = np.asarray(images)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8 or array.ndim != 3:
        raise ValueError(
            f"{name} images must be a uint8 array of shape (N, H, W), got {array.dtype} {array.shape}"
        )
    if len(array) == 0:
        raise ValueError(f"{name} images are empty")
    window_size = len(gaussian_window())
    if min(array.shape[1:]) < window_size:
        raise ValueError(
            f"{name} images are {array.shape[1:]}, smaller than the {window_size}-pixel SSIM window"
        )
    return array.astype(np.float32) / np.float32(255.0)


@contextmanager
def _single_blas_thread() -> Iterator[None]:
    """Run the enclosed block with numpy's OpenBLAS limited to one thread, then restore it.

    The SSIM blocks are many small matrix products. On a 2-core machine that
    is busy (or after TensorFlow started its own thread pools), OpenBLAS
    threads waiting on each other made the 500 x 2000 search 4 to 6 times
    slower than one thread. The limit applies to the whole process while the
    block runs.
    """
    controls = _openblas_thread_controls()
    previous = [get_threads() for get_threads, _ in controls]
    for _, set_threads in controls:
        set_threads(1)
    try:
        yield
    finally:
        for (_, set_threads), count in zip(controls, previous):
            set_threads(count)


@functools.cache
def _openblas_thread_controls() -> list[tuple[Callable[[], int], Callable[[int], None]]]:
    """Find the get/set thread-count functions of every OpenBLAS library loaded in this process.

    NOTE: libraries are found through /proc/self/maps, so outside Linux, or
    with another BLAS, no control is found and the thread count is left as is.
    """
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so[\w.]*)", maps)))
    symbol_pairs = [
        ("openblas_get_num_threads", "openblas_set_num_threads"),
        ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
        ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ]
    controls = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in symbol_pairs:
            if hasattr(library, get_name) and hasattr(library, set_name):
                get_threads = getattr(library, get_name)
                get_threads.restype = ctypes.c_int
                set_threads = getattr(library, set_name)
                set_threads.argtypes = [ctypes.c_int]
                controls.append((get_threads, set_threads))
                break
    return controls


def _check_same_size(first: np.ndarray, second: np.ndarray) -> None:
    if first.shape[1:] != second.shape[1:]:
        raise ValueError(
            f"images must share one size, got {first.shape[1:]} and {second.shape[1:]}"
        )
