"""Invertible layers of Glow and RealNVP, each a small module with an exact inverse.

Every transform maps ``x`` to ``(y, logdet)`` in ``forward``, where ``logdet`` has one
value per sample (shape ``(N,)``), and maps ``y`` back to ``x`` in ``inverse``.
``Split`` and the priors are the exceptions: they factor out or score latents.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_TWO_PI = math.log(2.0 * math.pi)


def squeeze2d(x: torch.Tensor) -> torch.Tensor:
    """Move each 2x2 spatial block into channels: (N, C, H, W) -> (N, 4C, H/2, W/2)."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs an even height and width, got {h}x{w}")
    x = x.reshape(n, c, h // 2, 2, w // 2, 2)
    x = x.permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * 4, h // 2, w // 2)


def unsqueeze2d(x: torch.Tensor) -> torch.Tensor:
    """Undo ``squeeze2d``: (N, 4C, H, W) -> (N, C, 2H, 2W)."""
    n, c, h, w = x.shape
    if c % 4:
        raise ValueError(f"unsqueeze needs a channel count divisible by 4, got {c}")
    x = x.reshape(n, c // 4, 2, 2, h, w)
    x = x.permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, h * 2, w * 2)


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Sum of log N(z; mean, exp(log_std)^2) over all but the batch dimension, shape (N,)."""
    standardized = (z - mean) * torch.exp(-log_std)
    per_value = -0.5 * (LOG_TWO_PI + standardized**2) - log_std
    return per_value.flatten(1).sum(dim=1)


def gaussian_sample(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw from N(mean, (temperature * exp(log_std))^2).

    The noise is drawn on the generator's device and moved to ``mean``'s device, so a
    CPU generator gives the same draw whatever device the model is on.
    """
    if generator is None:
        noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype)
    else:
        noise = torch.randn(mean.shape, generator=generator, device=generator.device, dtype=mean.dtype)
        noise = noise.to(mean.device)
    return mean + torch.exp(log_std) * temperature * noise


def _per_sample(value: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Broadcast a scalar log-determinant to one value per sample."""
    return value.reshape(()).expand(batch_size)


class ActNorm(nn.Module):
    """Per-channel affine normalisation, ``y = (x + bias) * exp(log_scale)``.

    The first forward batch initialises ``bias`` and ``log_scale`` so that each channel of
    that batch has zero mean and unit variance. The standard deviation is floored at
    ``min_std`` (default 0.01, which caps the initial scale at 100), so a constant first
    batch, such as all-black images, still gives finite parameters. Whether the layer is
    initialised is the boolean buffer ``initialized``, saved in the state dict, so a model
    reloaded from its state dict keeps its trained parameters on the next batch.
    """

    def __init__(self, channels: int, min_std: float = 1e-2) -> None:
        super().__init__()
        if min_std <= 0:
            raise ValueError(f"min_std must be positive, got {min_std}")
        self.channels = channels
        self.min_std = min_std
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))
        # Reading the buffer costs a device synchronisation on GPU, so its value is mirrored
        # here once it is known to be True. Loading a state dict clears the mirror.
        self._known_initialized = False

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._known_initialized = False
        super()._load_from_state_dict(*args, **kwargs)

    def is_initialized(self) -> bool:
        """Return whether the data-dependent initialisation has run."""
        if not self._known_initialized:
            self._known_initialized = bool(self.initialized.item())
        return self._known_initialized

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set bias and scale from the per-channel mean and std of ``x``."""
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(self.min_std)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std))
        self.initialized.fill_(True)
        self._known_initialized = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized():
            self.initialize(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        height, width = x.shape[2], x.shape[3]
        logdet = height * width * self.log_scale.sum()
        return y, _per_sample(logdet, x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvertibleConv1x1(nn.Module):
    """Invertible 1x1 convolution, a learned channel mixing shared by all pixels.

    With ``lu=True`` the weight is ``P @ L @ (U + diag(sign * exp(log_abs_s)))`` where P is
    a fixed permutation, L is unit lower triangular and U strictly upper triangular, so
    ``logdet = H * W * sum(log_abs_s)`` costs nothing. With ``lu=False`` the weight is a
    free matrix and its log-determinant comes from ``torch.linalg.slogdet``.

    Outside training (``eval()`` mode or under ``torch.no_grad``) the weight, its inverse
    and its log-determinant are computed once and reused until a parameter or buffer
    changes in place (an optimizer step, ``load_state_dict``) or ``train()`` is called.
    """

    def __init__(self, channels: int, lu: bool = True) -> None:
        super().__init__()
        self.channels = channels
        self.lu = lu
        rotation = torch.linalg.qr(torch.randn(channels, channels))[0]
        if lu:
            permutation, lower, upper = torch.linalg.lu(rotation)
            diagonal = torch.diagonal(upper)
            self.register_buffer("permutation", permutation)
            self.register_buffer("sign_s", torch.sign(diagonal))
            self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), diagonal=-1))
            self.register_buffer("identity", torch.eye(channels))
            self.lower = nn.Parameter(lower)
            self.upper = nn.Parameter(torch.triu(upper, diagonal=1))
            self.log_abs_s = nn.Parameter(torch.log(torch.abs(diagonal)))
        else:
            self.weight = nn.Parameter(rotation)
        self._cache: tuple[tuple[tuple[int, int], ...], torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _weight_and_log_det(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Build the (C, C) weight and log|det| of the weight from the parameters."""
        if not self.lu:
            return self.weight, torch.linalg.slogdet(self.weight)[1]
        lower = self.lower * self.lower_mask + self.identity
        upper_mask = self.lower_mask.transpose(0, 1)
        upper = self.upper * upper_mask + torch.diag(self.sign_s * torch.exp(self.log_abs_s))
        weight = self.permutation @ lower @ upper
        return weight, self.log_abs_s.sum()

    def _state_key(self) -> tuple[tuple[int, int], ...]:
        """Identify the current parameter values by storage and in-place version counter."""
        tensors = list(self.parameters()) + list(self.buffers())
        return tuple((tensor.data_ptr(), tensor._version) for tensor in tensors)

    def _uses_cache(self) -> bool:
        return not self.training or not torch.is_grad_enabled()

    def _cached(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (weight, inverse weight, log|det|), recomputed only when parameters changed.

        NOTE: the cached tensors are detached. In eval mode no gradient reaches this layer's
        parameters even when autograd is on, so call ``train()`` before fitting them.
        """
        key = self._state_key()
        if self._cache is None or self._cache[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                weight, log_det = self._weight_and_log_det()
                inverse = torch.linalg.inv(weight.double()).to(weight.dtype)
                self._cache = (key, weight.detach().clone(), inverse, log_det.detach().clone())
        return self._cache[1], self._cache[2], self._cache[3]

    def train(self, mode: bool = True) -> InvertibleConv1x1:
        self._cache = None
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._uses_cache():
            weight, _, log_det = self._cached()
        else:
            weight, log_det = self._weight_and_log_det()
        y = F.conv2d(x, weight.view(self.channels, self.channels, 1, 1))
        height, width = x.shape[2], x.shape[3]
        return y, _per_sample(height * width * log_det, x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self._uses_cache():
            _, inverse, _ = self._cached()
        else:
            weight, _ = self._weight_and_log_det()
            inverse = torch.linalg.inv(weight)
        return F.conv2d(y, inverse.view(self.channels, self.channels, 1, 1))


class ZeroConv2d(nn.Module):
    """3x3 convolution that starts at zero, with a learned per-channel output scale exp(3 * s)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.log_scale = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.exp(3.0 * self.log_scale)


class CouplingNetwork(nn.Module):
    """The conditioner of a coupling: 3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, hidden_channels, kernel_size=1),
            nn.ReLU(),
            ZeroConv2d(hidden_channels, out_channels),
        )
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.05)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def bounded_log_scale(raw: torch.Tensor, scale_bound: float) -> torch.Tensor:
    """Squash a raw log-scale into (-scale_bound, scale_bound) with a tanh, identity near 0."""
    return scale_bound * torch.tanh(raw / scale_bound)


class AffineCoupling(nn.Module):
    """Affine coupling: the second channel half becomes ``x_b * exp(log_s) + shift``.

    ``log_s`` and ``shift`` come from a network of the first half. ``log_s`` is bounded to
    (-scale_bound, scale_bound) by a tanh, so one layer scales by at most exp(scale_bound).
    The network's last convolution starts at zero, so the layer starts as the identity.
    """

    def __init__(self, channels: int, hidden_channels: int, scale_bound: float = 2.0) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a channel coupling needs at least 2 channels, got {channels}")
        self.conditioning_channels = channels // 2
        self.transformed_channels = channels - self.conditioning_channels
        self.scale_bound = scale_bound
        self.network = CouplingNetwork(self.conditioning_channels, hidden_channels, 2 * self.transformed_channels)

    def _shift_and_log_scale(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.network(x_a).chunk(2, dim=1)
        return shift, bounded_log_scale(raw, self.scale_bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x.split([self.conditioning_channels, self.transformed_channels], dim=1)
        shift, log_s = self._shift_and_log_scale(x_a)
        y_b = x_b * torch.exp(log_s) + shift
        return torch.cat([x_a, y_b], dim=1), log_s.flatten(1).sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y.split([self.conditioning_channels, self.transformed_channels], dim=1)
        shift, log_s = self._shift_and_log_scale(y_a)
        x_b = (y_b - shift) * torch.exp(-log_s)
        return torch.cat([y_a, x_b], dim=1)


class AdditiveCoupling(nn.Module):
    """Additive coupling: the second channel half becomes ``x_b + shift(x_a)``; logdet is 0."""

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a channel coupling needs at least 2 channels, got {channels}")
        self.conditioning_channels = channels // 2
        self.transformed_channels = channels - self.conditioning_channels
        self.network = CouplingNetwork(self.conditioning_channels, hidden_channels, self.transformed_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x.split([self.conditioning_channels, self.transformed_channels], dim=1)
        y_b = x_b + self.network(x_a)
        return torch.cat([x_a, y_b], dim=1), x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y.split([self.conditioning_channels, self.transformed_channels], dim=1)
        x_b = y_b - self.network(y_a)
        return torch.cat([y_a, x_b], dim=1)


class CheckerboardCoupling(nn.Module):
    """RealNVP affine coupling with a spatial checkerboard mask.

    Pixels where ``(row + column) % 2 == parity`` condition the network and pass through.
    The others become ``x * exp(log_s) + shift``, with ``log_s`` tanh-bounded as in
    ``AffineCoupling``. Works for any channel count, including a single channel.
    """

    def __init__(self, channels: int, hidden_channels: int, parity: int, scale_bound: float = 2.0) -> None:
        super().__init__()
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity}")
        self.parity = parity
        self.scale_bound = scale_bound
        self.network = CouplingNetwork(channels, hidden_channels, 2 * channels)

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2], x.shape[3]
        rows = torch.arange(height, device=x.device).view(height, 1)
        columns = torch.arange(width, device=x.device).view(1, width)
        return ((rows + columns) % 2 == self.parity).to(x.dtype).view(1, 1, height, width)

    def _shift_and_log_scale(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.network(x * mask).chunk(2, dim=1)
        transformed = 1.0 - mask
        return shift * transformed, bounded_log_scale(raw, self.scale_bound) * transformed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self._mask(x)
        shift, log_s = self._shift_and_log_scale(x, mask)
        y = x * torch.exp(log_s) + shift
        return y, log_s.flatten(1).sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        mask = self._mask(y)
        shift, log_s = self._shift_and_log_scale(y, mask)
        return (y - shift) * torch.exp(-log_s)


class ChannelFlip(nn.Module):
    """Reverse the channel order, so the next channel coupling transforms the other half."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.flip(1), x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y.flip(1)


class Squeeze(nn.Module):
    """Space-to-depth on 2x2 blocks, (N, C, H, W) -> (N, 4C, H/2, W/2); logdet is 0."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return squeeze2d(x), x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return unsqueeze2d(y)


class Split(nn.Module):
    """Factor out half of the channels as a latent, scored by a conditional Gaussian prior.

    The first ``kept_channels`` continue through the flow. The rest are the latent ``z``,
    whose prior N(mean, exp(log_std)^2) is predicted from the kept half by a zero-initialised
    convolution (so it starts as a standard normal). With ``learned_prior=False`` the prior
    stays a standard normal, as in RealNVP. Splitting only regroups values, so its logdet is 0.
    """

    def __init__(self, channels: int, learned_prior: bool = True) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a split needs at least 2 channels, got {channels}")
        self.kept_channels = channels - channels // 2
        self.factored_channels = channels // 2
        self.prior = ZeroConv2d(self.kept_channels, 2 * self.factored_channels) if learned_prior else None

    def prior_parameters(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the mean and log-std of the factored half given the kept half."""
        if self.prior is None:
            shape = (kept.shape[0], self.factored_channels, kept.shape[2], kept.shape[3])
            zeros = kept.new_zeros(shape)
            return zeros, zeros
        mean, log_std = self.prior(kept).chunk(2, dim=1)
        return mean, log_std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (kept half, factored latent z, log prior of z per sample)."""
        kept, factored = x.split([self.kept_channels, self.factored_channels], dim=1)
        mean, log_std = self.prior_parameters(kept)
        return kept, factored, gaussian_log_prob(factored, mean, log_std)

    def inverse(self, kept: torch.Tensor, factored: torch.Tensor) -> torch.Tensor:
        return torch.cat([kept, factored], dim=1)

    def sample(self, kept: torch.Tensor, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw the factored latent from its prior given the kept half."""
        mean, log_std = self.prior_parameters(kept)
        return gaussian_sample(mean, log_std, temperature, generator)


class LearnedPrior(nn.Module):
    """Diagonal Gaussian prior of the top latent, with a learned mean and log-std per value.

    Both start at zero, so the prior starts as a standard normal. With ``learned=False`` it
    stays a standard normal.
    """

    def __init__(self, shape: tuple[int, int, int], learned: bool = True) -> None:
        super().__init__()
        self.shape = tuple(shape)
        if learned:
            self.mean = nn.Parameter(torch.zeros(1, *shape))
            self.log_std = nn.Parameter(torch.zeros(1, *shape))
        else:
            self.register_buffer("mean", torch.zeros(1, *shape))
            self.register_buffer("log_std", torch.zeros(1, *shape))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(z, self.mean, self.log_std)

    def sample(self, count: int, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
        mean = self.mean.expand(count, *self.shape)
        log_std = self.log_std.expand(count, *self.shape)
        return gaussian_sample(mean, log_std, temperature, generator)


class FlowStep(nn.Module):
    """One Glow step of flow: ActNorm, then invertible 1x1 convolution, then a coupling."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        coupling: str = "affine",
        lu: bool = True,
        scale_bound: float = 2.0,
        actnorm_min_std: float = 1e-2,
    ) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels, min_std=actnorm_min_std)
        self.invconv = InvertibleConv1x1(channels, lu=lu)
        if coupling == "affine":
            self.coupling: AffineCoupling | AdditiveCoupling = AffineCoupling(channels, hidden_channels, scale_bound)
        elif coupling == "additive":
            self.coupling = AdditiveCoupling(channels, hidden_channels)
        else:
            raise ValueError(f"coupling must be 'affine' or 'additive', got {coupling!r}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, logdet_actnorm = self.actnorm(x)
        x, logdet_invconv = self.invconv(x)
        x, logdet_coupling = self.coupling(x)
        return x, logdet_actnorm + logdet_invconv + logdet_coupling

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y = self.coupling.inverse(y)
        y = self.invconv.inverse(y)
        return self.actnorm.inverse(y)
