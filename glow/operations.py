"""Making new images with a trained flow: sampling, interpolation, random balls and latent manipulation.

Images go in and come out as integer arrays (N, C, H, W) with values below 2**n_bits (uint8
for 8-bit). Encoding for these operations is deterministic: each pixel is taken at the centre
of its bin, x + 0.5, so decoding an unchanged latent rounds back to exactly the same image.
Every operation returns a ``Generated`` holding the images and each image's latents.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from glow.likelihood import as_image_batch, bin_centres, quantize, to_tensor
from glow.models import MultiScaleFlow

logger = logging.getLogger(__name__)


@dataclass
class Generated:
    """Images made by an operation and the latents they were decoded from.

    ``images`` has shape (N, C, H, W). ``latents[i]`` is image i's list of per-level arrays,
    each of shape (C, H, W), in the order ``save_latent`` expects.
    """

    images: np.ndarray
    latents: list[list[np.ndarray]]

    def __len__(self) -> int:
        return len(self.images)


@contextmanager
def _inference(model: MultiScaleFlow) -> Iterator[torch.device]:
    """Run with the model in eval mode (cached 1x1 inverses) and no autograd; restore the mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)


def _split_per_image(latents: list[torch.Tensor]) -> list[list[np.ndarray]]:
    arrays = [latent.detach().cpu().numpy() for latent in latents]
    return [[array[index] for array in arrays] for index in range(arrays[0].shape[0])]


def _single_image(image: np.ndarray, n_bits: int) -> np.ndarray:
    """Accept (H, W), (C, H, W) or (1, C, H, W) and return (1, C, H, W)."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[None, None]
    elif array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[0] != 1:
        raise ValueError(f"expected one image of shape (H, W), (C, H, W) or (1, C, H, W), got {np.asarray(image).shape}")
    return as_image_batch(array, n_bits)


def encode_images(model: MultiScaleFlow, images: np.ndarray, n_bits: int = 8, batch_size: int = 32) -> list[torch.Tensor]:
    """Encode integer images at their bin centres; return one (N, C, H, W) tensor per level."""
    array = as_image_batch(images, n_bits)
    if len(array) == 0:
        raise ValueError("no images to encode")
    batches: list[list[torch.Tensor]] = []
    with _inference(model) as device:
        for start in range(0, len(array), batch_size):
            bins = to_tensor(array[start : start + batch_size], n_bits, device)
            latents, _, _ = model.encode(bin_centres(bins, n_bits))
            batches.append(latents)
    return [torch.cat(level, dim=0) for level in zip(*batches)]


def decode_latents(model: MultiScaleFlow, latents: Sequence[torch.Tensor | np.ndarray], n_bits: int = 8, batch_size: int = 32) -> np.ndarray:
    """Decode per-level latent batches to integer images (N, C, H, W)."""
    images: list[np.ndarray] = []
    non_finite = 0
    with _inference(model) as device:
        tensors = [torch.as_tensor(latent, dtype=torch.float32).to(device) for latent in latents]
        for start in range(0, tensors[0].shape[0], batch_size):
            decoded = model.decode([latent[start : start + batch_size] for latent in tensors])
            non_finite += int((~torch.isfinite(decoded)).flatten(1).any(dim=1).sum())
            images.append(quantize(decoded, n_bits))
    if non_finite:
        # Latents far from the training data (high temperature, large radius or strength)
        # can overflow in the inverse couplings.
        logger.warning("decoded %d of %d images with NaN or infinite values; they were clipped to the pixel range", non_finite, tensors[0].shape[0])
    return np.concatenate(images, axis=0)


def _generated(model: MultiScaleFlow, latents: list[torch.Tensor], n_bits: int) -> Generated:
    return Generated(decode_latents(model, latents, n_bits), _split_per_image(latents))


def sample(model: MultiScaleFlow, count: int, temperature: float = 0.7, seed: int = 0, n_bits: int = 8, batch_size: int = 32) -> Generated:
    """Draw ``count`` images from the prior with std scaled by ``temperature``.

    The draws come from a CPU generator seeded with ``seed``, so the same seed, count and
    batch size give the same images on any device.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    generator = torch.Generator().manual_seed(seed)
    batches: list[list[torch.Tensor]] = []
    with _inference(model):
        for start in range(0, count, batch_size):
            _, latents = model.sample_with_latents(min(batch_size, count - start), temperature, generator)
            batches.append(latents)
    latents = [torch.cat(level, dim=0) for level in zip(*batches)]
    return _generated(model, latents, n_bits)


def _flatten(latents: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-level latents of a batch into (N, D)."""
    return torch.cat([latent.flatten(1) for latent in latents], dim=1)


def _unflatten(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    pieces: list[torch.Tensor] = []
    offset = 0
    for latent in like:
        size = latent[0].numel()
        pieces.append(flat[:, offset : offset + size].reshape(flat.shape[0], *latent.shape[1:]))
        offset += size
    return pieces


def interpolate(
    model: MultiScaleFlow,
    image_a: np.ndarray,
    image_b: np.ndarray,
    weights: Sequence[float],
    spherical: bool = False,
    n_bits: int = 8,
) -> Generated:
    """Decode latents between two images; weight 0 gives ``image_a`` back, weight 1 ``image_b``.

    Linear interpolation is ``(1 - w) * z_a + w * z_b`` at every level. Spherical
    interpolation (slerp) runs on the concatenated latent vector of all levels and falls back
    to linear when the two latents are nearly parallel.
    """
    if len(weights) == 0:
        raise ValueError("weights must not be empty")
    latents_a = encode_images(model, _single_image(image_a, n_bits), n_bits)
    latents_b = encode_images(model, _single_image(image_b, n_bits), n_bits)
    flat_a, flat_b = _flatten(latents_a)[0], _flatten(latents_b)[0]

    angle = 0.0
    if spherical:
        cosine = torch.dot(flat_a.double(), flat_b.double()) / (flat_a.double().norm() * flat_b.double().norm())
        angle = math.acos(float(cosine.clamp(-1.0, 1.0)))

    rows: list[torch.Tensor] = []
    for weight in weights:
        if spherical and math.sin(angle) > 1e-6:
            coefficient_a = math.sin((1.0 - weight) * angle) / math.sin(angle)
            coefficient_b = math.sin(weight * angle) / math.sin(angle)
        else:
            coefficient_a, coefficient_b = 1.0 - weight, float(weight)
        rows.append(coefficient_a * flat_a + coefficient_b * flat_b)
    latents = _unflatten(torch.stack(rows), latents_a)
    return _generated(model, latents, n_bits)


def ball(model: MultiScaleFlow, image: np.ndarray, radius: float, count: int, seed: int = 0, n_bits: int = 8) -> Generated:
    """Decode ``count`` latents drawn uniformly from a ball around the image's latent.

    The ball lives in the concatenated latent space of all levels (D = C * H * W values) and
    has Euclidean radius ``radius``. In that many dimensions almost all of a uniform ball's
    volume lies near its surface, so the offsets have norms close to ``radius``. Radius 0
    gives the image itself ``count`` times.
    """
    if radius < 0:
        raise ValueError(f"radius must be non-negative, got {radius}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    centre_latents = encode_images(model, _single_image(image, n_bits), n_bits)
    centre = _flatten(centre_latents)
    dimensions = centre.shape[1]

    # A normalised Gaussian gives a uniform direction; U ** (1 / D) a uniform radius in volume.
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(count, dimensions, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=1, keepdim=True)
    radii = radius * torch.rand(count, 1, generator=generator, dtype=torch.float64) ** (1.0 / dimensions)
    offsets = (directions * radii).to(centre.dtype).to(centre.device)

    latents = _unflatten(centre + offsets, centre_latents)
    return _generated(model, latents, n_bits)


def direction(model: MultiScaleFlow, group_a: np.ndarray, group_b: np.ndarray, n_bits: int = 8, batch_size: int = 32) -> list[torch.Tensor]:
    """Mean latent of group B minus mean latent of group A, one (C, H, W) tensor per level."""
    latents_a = encode_images(model, group_a, n_bits, batch_size)
    latents_b = encode_images(model, group_b, n_bits, batch_size)
    return [level_b.mean(dim=0) - level_a.mean(dim=0) for level_a, level_b in zip(latents_a, latents_b)]


def manipulate(
    model: MultiScaleFlow,
    images: np.ndarray,
    direction: Sequence[torch.Tensor | np.ndarray],
    strength: float,
    n_bits: int = 8,
    batch_size: int = 32,
) -> Generated:
    """Move each image's latent by ``strength`` times ``direction``; strength 0 returns the originals."""
    latents = encode_images(model, images, n_bits, batch_size)
    if len(direction) != len(latents):
        raise ValueError(f"direction has {len(direction)} levels, the model has {len(latents)}")
    moved: list[torch.Tensor] = []
    for level, (latent, offset) in enumerate(zip(latents, direction)):
        offset_tensor = torch.as_tensor(offset, dtype=latent.dtype).to(latent.device)
        if tuple(offset_tensor.shape) != tuple(latent.shape[1:]):
            raise ValueError(f"direction level {level} has shape {tuple(offset_tensor.shape)}, expected {tuple(latent.shape[1:])}")
        moved.append(latent + strength * offset_tensor)
    return _generated(model, moved, n_bits)
