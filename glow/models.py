"""Multi-scale normalizing flows: Glow and the simpler RealNVP baseline.

Both map an image batch (N, C, H, W) of preprocessed values in [-0.5, 0.5] to a list of
latents, one per level, and back. The latent list contains every value needed to rebuild the
image, so ``decode(encode(x)[0])`` returns ``x`` up to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from glow.layers import (
    AffineCoupling,
    ChannelFlip,
    CheckerboardCoupling,
    FlowStep,
    LearnedPrior,
    Split,
    Squeeze,
)


class FlowLevel(nn.Module):
    """One scale of a multi-scale flow: invertible transforms, then an optional split."""

    def __init__(self, transforms: list[nn.Module], split: Split | None) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        self.split = split


class MultiScaleFlow(nn.Module):
    """Shared encode/decode/sample logic for flows built from ``FlowLevel``s and a top prior.

    Latent order: ``latents[i]`` is the half factored out by level ``i`` (largest first),
    and ``latents[-1]`` is the output of the last level, scored by ``top_prior``.
    An optional ``dequantizer`` submodule (a ``VariationalDequantizer``) is trained and
    saved with the flow; ``encode`` and ``decode`` never use it.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        levels: list[FlowLevel],
        top_prior: LearnedPrior,
        latent_shapes: list[tuple[int, int, int]],
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.levels = nn.ModuleList(levels)
        self.top_prior = top_prior
        self._latent_shapes = latent_shapes
        self.register_module("dequantizer", None)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)

    @property
    def dimensions(self) -> int:
        """Number of values per image, C * H * W."""
        return self.in_channels * self.image_size * self.image_size

    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """Return the (C, H, W) shape of every level's latent for a single image."""
        return list(self._latent_shapes)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected a batch of shape (N, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Map images to (latents, logdet, log_prior); logdet and log_prior have shape (N,)."""
        self._check_input(x)
        h = x
        logdet = x.new_zeros(x.shape[0])
        log_prior = x.new_zeros(x.shape[0])
        latents: list[torch.Tensor] = []

        for level in self.levels:
            for transform in level.transforms:
                h, step_logdet = transform(h)
                logdet = logdet + step_logdet
            if level.split is not None:
                h, factored, factored_log_prior = level.split(h)
                latents.append(factored)
                log_prior = log_prior + factored_log_prior

        latents.append(h)
        log_prior = log_prior + self.top_prior.log_prob(h)
        return latents, logdet, log_prior

    def _decode_level(self, level: FlowLevel, h: torch.Tensor) -> torch.Tensor:
        for transform in reversed(level.transforms):
            h = transform.inverse(h)
        return h

    def decode(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """Map a full latent list (as returned by ``encode``) back to images."""
        expected = len(self._latent_shapes)
        if len(latents) != expected:
            raise ValueError(f"expected {expected} latents (one per level plus the top), got {len(latents)}")
        for index, (latent, shape) in enumerate(zip(latents, self._latent_shapes)):
            if latent.dim() != 4 or tuple(latent.shape[1:]) != shape:
                raise ValueError(f"latent {index} should have shape (N, {', '.join(map(str, shape))}), got {tuple(latent.shape)}")

        h = latents[-1]
        factored = list(latents[:-1])
        for level in reversed(self.levels):
            if level.split is not None:
                h = level.split.inverse(h, factored.pop())
            h = self._decode_level(level, h)
        return h

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density of continuous (dequantized, preprocessed) images, in nats, shape (N,)."""
        _, logdet, log_prior = self.encode(x)
        return log_prior + logdet

    def sample_with_latents(
        self,
        count: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Draw images and the latents they decode from.

        The top latent comes from the top prior and each factored latent from its
        conditional prior given the partly decoded image, all with std times ``temperature``.
        """
        top = self.top_prior.sample(count, temperature, generator)
        h = top
        factored: list[torch.Tensor] = []
        for level in reversed(self.levels):
            if level.split is not None:
                z = level.split.sample(h, temperature, generator)
                factored.append(z)
                h = level.split.inverse(h, z)
            h = self._decode_level(level, h)
        return h, list(reversed(factored)) + [top]

    def sample(self, count: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``count`` images with prior std scaled by ``temperature``."""
        images, _ = self.sample_with_latents(count, temperature, generator)
        return images


class Glow(MultiScaleFlow):
    """Glow: per level, squeeze, K steps of (ActNorm, 1x1 convolution, coupling), split.

    The last level has no split. Every split has a learned conditional prior and the top
    latent a learned diagonal Gaussian prior. ``image_size`` must be divisible by
    2**levels.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        levels: int,
        steps_per_level: int,
        hidden_channels: int,
        coupling: str = "affine",
        lu: bool = True,
        scale_bound: float = 2.0,
        actnorm_min_std: float = 1e-2,
    ) -> None:
        _check_geometry(in_channels, image_size, levels, squeezes=levels)
        flow_levels: list[FlowLevel] = []
        shapes: list[tuple[int, int, int]] = []
        channels, size = in_channels, image_size
        for index in range(levels):
            channels, size = channels * 4, size // 2
            transforms: list[nn.Module] = [Squeeze()]
            transforms += [
                FlowStep(channels, hidden_channels, coupling, lu, scale_bound, actnorm_min_std) for _ in range(steps_per_level)
            ]
            split = None
            if index < levels - 1:
                split = Split(channels)
                shapes.append((split.factored_channels, size, size))
                channels = split.kept_channels
            flow_levels.append(FlowLevel(transforms, split))
        shapes.append((channels, size, size))

        super().__init__(in_channels, image_size, flow_levels, LearnedPrior(shapes[-1]), shapes)
        self.steps_per_level = steps_per_level
        self.hidden_channels = hidden_channels
        self.coupling = coupling
        self.lu = lu


class RealNVP(MultiScaleFlow):
    """RealNVP baseline with fixed permutations and standard normal priors.

    Each level but the last runs K checkerboard couplings (alternating parity) at its
    resolution, squeezes, runs K channel couplings separated by channel flips, and factors
    out half of the channels. The last level runs K checkerboard couplings and keeps all
    channels. There is no ActNorm, no 1x1 convolution and no learned prior; that is what
    makes it the simpler baseline. ``image_size`` must be divisible by 2**(levels - 1).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        levels: int,
        steps_per_level: int,
        hidden_channels: int,
        scale_bound: float = 2.0,
    ) -> None:
        _check_geometry(in_channels, image_size, levels, squeezes=levels - 1)
        flow_levels: list[FlowLevel] = []
        shapes: list[tuple[int, int, int]] = []
        channels, size = in_channels, image_size
        for index in range(levels):
            transforms: list[nn.Module] = [
                CheckerboardCoupling(channels, hidden_channels, parity=step % 2, scale_bound=scale_bound)
                for step in range(steps_per_level)
            ]
            split = None
            if index < levels - 1:
                transforms.append(Squeeze())
                channels, size = channels * 4, size // 2
                for _ in range(steps_per_level):
                    transforms.append(AffineCoupling(channels, hidden_channels, scale_bound))
                    transforms.append(ChannelFlip())
                split = Split(channels, learned_prior=False)
                shapes.append((split.factored_channels, size, size))
                channels = split.kept_channels
            flow_levels.append(FlowLevel(transforms, split))
        shapes.append((channels, size, size))

        super().__init__(in_channels, image_size, flow_levels, LearnedPrior(shapes[-1], learned=False), shapes)
        self.steps_per_level = steps_per_level
        self.hidden_channels = hidden_channels


def _check_geometry(in_channels: int, image_size: int, levels: int, squeezes: int) -> None:
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, got {in_channels}")
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    if image_size < 2**squeezes or image_size % (2**squeezes):
        raise ValueError(f"image_size {image_size} must be a positive multiple of 2**{squeezes} = {2**squeezes} for {levels} levels")
