"""Image scaling, dequantization and bits per dimension for flows on discrete pixel data.

Images enter as integer arrays whose values are below 2**n_bits (ordinary uint8 images
with ``n_bits=8``), shaped (N, C, H, W) or (N, H, W). A flow models continuous values
``y = (x + u) / 2**n_bits - 0.5`` in [-0.5, 0.5], where ``u`` in [0, 1) is the
dequantization noise: uniform by default, or drawn from a learned ``VariationalDequantizer``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from glow.layers import ActNorm, CouplingNetwork, bounded_log_scale, gaussian_log_prob, squeeze2d, unsqueeze2d

Dequantization = Literal["uniform", "variational"]


def as_image_batch(images: np.ndarray, n_bits: int = 8) -> np.ndarray:
    """Check an integer image array and return it as (N, C, H, W).

    A 3-dimensional array is read as (N, H, W), one channel. Raises ValueError for float
    arrays, negative values or values of 2**n_bits and above.
    """
    array = np.asarray(images)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"images must be an integer array (uint8 for 8-bit), got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[:, None, :, :]
    if array.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W) or (N, H, W), got {array.shape}")
    if not 1 <= n_bits <= 16:
        raise ValueError(f"n_bits must be between 1 and 16, got {n_bits}")
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= 2**n_bits:
            hint = f"; reduce 8-bit images with reduce_bits(images, {n_bits}) first" if n_bits < 8 else ""
            raise ValueError(f"image values must lie in [0, {2**n_bits - 1}] for n_bits={n_bits}, got [{low}, {high}]{hint}")
    return array


def reduce_bits(images: np.ndarray, n_bits: int, source_bits: int = 8) -> np.ndarray:
    """Keep the top ``n_bits`` of ``source_bits``-bit images, ``floor(x / 2**(source_bits - n_bits))``."""
    if not 1 <= n_bits <= source_bits:
        raise ValueError(f"n_bits must be between 1 and source_bits={source_bits}, got {n_bits}")
    array = np.asarray(images)
    return (array >> (source_bits - n_bits)).astype(array.dtype)


def image_dtype(n_bits: int) -> type[np.unsignedinteger]:
    """Return the smallest unsigned integer type for ``n_bits``-bit values."""
    return np.uint8 if n_bits <= 8 else np.uint16


def to_tensor(images: np.ndarray, n_bits: int = 8, device: torch.device | str | None = None) -> torch.Tensor:
    """Return checked integer images as a float tensor of bin indices (N, C, H, W)."""
    array = as_image_batch(images, n_bits)
    return torch.from_numpy(array.astype(np.float32)).to(device)


def bin_centres(bins: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Return the centre of each bin, ``(x + 0.5) / 2**n_bits - 0.5``: deterministic preprocessing."""
    return (bins + 0.5) / 2**n_bits - 0.5


def dequantize(bins: torch.Tensor, noise: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Return the continuous input ``(x + u) / 2**n_bits - 0.5`` for noise ``u`` in [0, 1)."""
    return (bins + noise) / 2**n_bits - 0.5


def quantize(y: torch.Tensor, n_bits: int) -> np.ndarray:
    """Map continuous values back to integer images: ``floor((y + 0.5) * 2**n_bits)``, clipped.

    Infinite values are clipped like finite ones and NaN becomes 0 (black).
    """
    levels = 2**n_bits
    finite = torch.nan_to_num(y.detach().float(), nan=-0.5, posinf=0.5, neginf=-0.5)
    bins = torch.floor((finite + 0.5) * levels).clamp_(0, levels - 1)
    return bins.cpu().numpy().astype(image_dtype(n_bits))


def uniform_noise(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) noise drawn on the generator's device (CPU by default), then moved."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def standard_normal_noise(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


class ConditionalAffineCoupling(nn.Module):
    """Affine channel coupling whose network also takes a conditioning feature map as input."""

    def __init__(self, channels: int, condition_channels: int, hidden_channels: int, scale_bound: float = 2.0) -> None:
        super().__init__()
        self.conditioning_channels = channels // 2
        self.transformed_channels = channels - self.conditioning_channels
        self.scale_bound = scale_bound
        self.network = CouplingNetwork(
            self.conditioning_channels + condition_channels, hidden_channels, 2 * self.transformed_channels
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x.split([self.conditioning_channels, self.transformed_channels], dim=1)
        shift, raw = self.network(torch.cat([x_a, condition], dim=1)).chunk(2, dim=1)
        log_s = bounded_log_scale(raw, self.scale_bound)
        y = torch.cat([x_a, x_b * torch.exp(log_s) + shift], dim=1)
        return y.flip(1), log_s.flatten(1).sum(dim=1)


class VariationalDequantizer(nn.Module):
    """Learned dequantization noise q(u | x), u in (0, 1), as in Flow++.

    Standard normal noise of the image's shape is squeezed to 2x2 blocks, passed through
    ``steps`` affine couplings conditioned on features of the image, unsqueezed and mapped
    into (0, 1) by a sigmoid. ``forward`` returns ``u`` and log q(u | x) per image, the
    change-of-variables density of that construction. Image height and width must be even.
    """

    def __init__(self, in_channels: int, hidden_channels: int = 32, steps: int = 4, scale_bound: float = 2.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, hidden_channels, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        squeezed = 4 * in_channels
        self.actnorm = ActNorm(squeezed)
        self.couplings = nn.ModuleList(
            ConditionalAffineCoupling(squeezed, 4 * hidden_channels, hidden_channels, scale_bound) for _ in range(steps)
        )

    def transform(self, epsilon: torch.Tensor, bins: torch.Tensor, n_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Map standard normal ``epsilon`` to noise ``u`` in (0, 1); return (u, log q(u | x))."""
        log_q = gaussian_log_prob(epsilon, torch.zeros_like(epsilon), torch.zeros_like(epsilon))

        condition = squeeze2d(self.features(bin_centres(bins, n_bits)))
        h, logdet = self.actnorm(squeeze2d(epsilon))
        log_q = log_q - logdet
        for coupling in self.couplings:
            h, logdet = coupling(h, condition)
            log_q = log_q - logdet
        h = unsqueeze2d(h)

        # log |du/dh| of the sigmoid is log sigmoid(h) + log sigmoid(-h).
        u = torch.sigmoid(h)
        log_q = log_q - (nn.functional.logsigmoid(h) + nn.functional.logsigmoid(-h)).flatten(1).sum(dim=1)
        return u, log_q

    def forward(
        self, bins: torch.Tensor, n_bits: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw noise ``u`` for integer images ``bins`` and return (u, log q(u | x))."""
        epsilon = standard_normal_noise(bins.shape, generator, bins.device)
        return self.transform(epsilon, bins, n_bits)


def resolve_dequantization(model: nn.Module, dequantization: Dequantization | None) -> nn.Module | None:
    """Return the variational dequantizer to use, or None for uniform noise.

    ``None`` means the model's own choice: its ``dequantizer`` submodule if it has one.
    """
    dequantizer = getattr(model, "dequantizer", None)
    if dequantization is None:
        return dequantizer
    if dequantization == "uniform":
        return None
    if dequantization == "variational":
        if dequantizer is None:
            raise ValueError("variational dequantization requested but the model has no dequantizer; build it with dequantization='variational'")
        return dequantizer
    raise ValueError(f"dequantization must be 'uniform' or 'variational', got {dequantization!r}")


def batch_bits_per_dim(
    model: nn.Module,
    bins: torch.Tensor,
    n_bits: int,
    dequantization: Dequantization | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bits per dimension of each image in a batch of integer bins, shape (N,), differentiable.

    This is the training objective; ``bits_per_dim`` gives the formula and the meaning of
    ``dequantization``. Noise is drawn from ``generator`` (a CPU generator works on any device).
    """
    dequantizer = resolve_dequantization(model, dequantization)
    dimensions = bins[0].numel()
    if dequantizer is None:
        noise = uniform_noise(bins.shape, generator, bins.device)
        log_q = bins.new_zeros(bins.shape[0])
    else:
        noise, log_q = dequantizer(bins, n_bits, generator)
    log_p = model.log_prob(dequantize(bins, noise, n_bits))
    nats = -log_p + log_q + dimensions * n_bits * math.log(2.0)
    return nats / (dimensions * math.log(2.0))


def bits_per_dim(
    model: nn.Module,
    images: np.ndarray,
    n_bits: int = 8,
    dequantization: Dequantization | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> float:
    """Mean bits per dimension of integer images under a flow, an upper bound on -log2 P(x) / D.

    For an image x of D values in {0, ..., 2**n - 1}, noise u ~ q(u | x) in [0, 1)^D and
    y = (x + u) / 2**n - 0.5, the flow's density p(y) on [-0.5, 0.5]^D gives the discrete
    model P(x) >= exp(E_q[log p(y) - D * n * ln 2 - log q(u | x)]), the D * n * ln 2 term
    being the volume change of the scaling by 1 / 2**n. Hence, per image,

        bpd = (-log p(y) + log q(u | x) + D * n * ln 2) / (D * ln 2),

    with log q = 0 for uniform noise, one noise draw per image, averaged over the images.
    ``dequantization=None`` uses the model's own dequantizer if it has one, else uniform.
    The noise comes from a CPU generator seeded with ``seed``, so repeated calls agree.
    """
    array = as_image_batch(images, n_bits)
    if len(array) == 0:
        raise ValueError("bits_per_dim needs at least one image")
    resolve_dequantization(model, dequantization)  # fail before any work on a bad choice
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)

    was_training = model.training
    model.eval()
    total = 0.0
    try:
        with torch.no_grad():
            for start in range(0, len(array), batch_size):
                bins = to_tensor(array[start : start + batch_size], n_bits, device)
                total += float(batch_bits_per_dim(model, bins, n_bits, dequantization, generator).sum())
    finally:
        model.train(was_training)
    return total / len(array)
