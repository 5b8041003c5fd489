"""Whole-model behaviour of Glow and RealNVP: exact inversion, log-determinants, shapes and sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from glow.config import PRESETS, build_model
from glow.models import Glow, MultiScaleFlow, RealNVP


def randomize(module: nn.Module, scale: float = 0.05, seed: int = 0) -> nn.Module:
    """Add noise to every parameter so zero-initialised layers are no longer the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def initialized(model: MultiScaleFlow, seed: int = 0) -> MultiScaleFlow:
    """Run ActNorm initialisation on image-like data, then perturb every parameter."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand((8, *model.image_shape), generator=generator) - 0.5
    with torch.no_grad():
        model.log_prob(images)
    return randomize(model, seed=seed)


TINY_MODELS = {
    "glow_affine": lambda: Glow(1, 8, levels=2, steps_per_level=2, hidden_channels=4),
    "glow_additive_plain": lambda: Glow(1, 8, levels=2, steps_per_level=2, hidden_channels=4, coupling="additive", lu=False),
    "glow_rgb": lambda: Glow(3, 4, levels=2, steps_per_level=1, hidden_channels=4),
    "realnvp": lambda: RealNVP(1, 8, levels=2, steps_per_level=2, hidden_channels=4),
}


def tiny_model(name: str) -> MultiScaleFlow:
    torch.manual_seed(0)
    return initialized(TINY_MODELS[name]())


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_model_logdet_matches_jacobian(name: str) -> None:
    model = tiny_model(name).double().eval()
    x = torch.rand((1, *model.image_shape), dtype=torch.float64) - 0.5

    with torch.no_grad():
        _, logdet, _ = model.encode(x)

    def flat_encode(values: torch.Tensor) -> torch.Tensor:
        latents, _, _ = model.encode(values.reshape(x.shape))
        return torch.cat([latent.reshape(-1) for latent in latents])

    jacobian = torch.autograd.functional.jacobian(flat_encode, x.reshape(-1), vectorize=True)
    _, expected = torch.linalg.slogdet(jacobian)

    assert float(logdet[0]) == pytest.approx(float(expected), abs=1e-7)
    assert abs(float(expected)) > 0.1


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_model_decode_inverts_encode(name: str) -> None:
    model = tiny_model(name).eval()
    x = torch.rand((3, *model.image_shape)) - 0.5

    with torch.no_grad():
        latents, _, _ = model.encode(x)
        restored = model.decode(latents)

    assert (restored - x).abs().max() < 1e-5


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_latent_shapes_match_encode(name: str) -> None:
    model = tiny_model(name)
    x = torch.rand((2, *model.image_shape)) - 0.5

    with torch.no_grad():
        latents, _, _ = model.encode(x)

    assert [tuple(latent.shape[1:]) for latent in latents] == model.latent_shapes()
    assert sum(math.prod(shape) for shape in model.latent_shapes()) == model.dimensions


def test_glow_latent_shapes_for_study_geometry() -> None:
    model = Glow(1, 128, levels=5, steps_per_level=1, hidden_channels=2)

    assert model.latent_shapes() == [(2, 64, 64), (4, 32, 32), (8, 16, 16), (16, 8, 8), (64, 4, 4)]


def test_realnvp_latent_shapes() -> None:
    model = RealNVP(1, 64, levels=3, steps_per_level=1, hidden_channels=2)

    assert model.latent_shapes() == [(2, 32, 32), (4, 16, 16), (4, 16, 16)]


@pytest.mark.parametrize("model_name", ["glow", "realnvp"])
def test_round_trip_error_at_64x64(model_name: str) -> None:
    config = PRESETS["small"].replace(model=model_name, steps_per_level=2 if model_name == "realnvp" else PRESETS["small"].steps_per_level)
    torch.manual_seed(0)
    model = initialized(build_model(config)).eval()
    x = torch.rand(2, 1, 64, 64) - 0.5

    with torch.no_grad():
        latents, _, _ = model.encode(x)
        restored = model.decode(latents)

    assert restored.dtype == torch.float32
    assert float((restored - x).abs().max()) < 1e-4


def test_log_prob_is_prior_plus_logdet() -> None:
    model = tiny_model("glow_affine")
    x = torch.rand(2, 1, 8, 8) - 0.5

    with torch.no_grad():
        _, logdet, log_prior = model.encode(x)
        log_prob = model.log_prob(x)

    assert torch.allclose(log_prob, logdet + log_prior)


def test_identity_flow_log_prob_is_standard_normal() -> None:
    # With no steps, Glow only squeezes and splits, and fresh priors are standard normal.
    model = Glow(1, 8, levels=2, steps_per_level=0, hidden_channels=4)
    x = torch.randn(2, 1, 8, 8)

    with torch.no_grad():
        log_prob = model.log_prob(x)
    expected = (-0.5 * math.log(2 * math.pi) - 0.5 * x**2).sum(dim=(1, 2, 3))

    assert torch.allclose(log_prob, expected, atol=1e-4)


def test_sample_latents_decode_to_samples() -> None:
    model = tiny_model("glow_affine").eval()

    with torch.no_grad():
        images, latents = model.sample_with_latents(3, 0.8, torch.Generator().manual_seed(0))
        decoded = model.decode(latents)

    assert images.shape == (3, 1, 8, 8)
    assert [tuple(latent.shape[1:]) for latent in latents] == model.latent_shapes()
    assert torch.allclose(decoded, images, atol=1e-5)


def test_sample_same_generator_seed_same_images() -> None:
    model = tiny_model("realnvp").eval()

    with torch.no_grad():
        first = model.sample(2, 0.7, torch.Generator().manual_seed(5))
        second = model.sample(2, 0.7, torch.Generator().manual_seed(5))
        other = model.sample(2, 0.7, torch.Generator().manual_seed(6))

    assert torch.equal(first, second)
    assert not torch.allclose(first, other)


def test_sample_temperature_scales_latent_spread() -> None:
    model = Glow(1, 8, levels=2, steps_per_level=1, hidden_channels=4).eval()

    with torch.no_grad():
        _, hot = model.sample_with_latents(200, 1.0, torch.Generator().manual_seed(0))
        _, cold = model.sample_with_latents(200, 0.25, torch.Generator().manual_seed(0))
        _, frozen = model.sample_with_latents(2, 0.0, torch.Generator().manual_seed(0))

    assert float(hot[-1].std()) == pytest.approx(1.0, abs=0.05)
    assert float(cold[-1].std()) == pytest.approx(0.25, abs=0.02)
    assert torch.equal(frozen[-1], torch.zeros_like(frozen[-1]))


def test_encode_rejects_wrong_shape() -> None:
    model = Glow(1, 8, levels=2, steps_per_level=1, hidden_channels=4)

    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        model.encode(torch.zeros(1, 3, 8, 8))


def test_decode_rejects_missing_level() -> None:
    model = Glow(1, 8, levels=2, steps_per_level=1, hidden_channels=4)
    latents, _, _ = model.encode(torch.zeros(1, 1, 8, 8))

    with pytest.raises(ValueError, match="expected 2 latents"):
        model.decode(latents[1:])


def test_glow_rejects_indivisible_image_size() -> None:
    with pytest.raises(ValueError, match="multiple of 2\\*\\*3"):
        Glow(1, 20, levels=3, steps_per_level=1, hidden_channels=4)


def test_glow_gradients_reach_every_parameter() -> None:
    model = Glow(1, 8, levels=2, steps_per_level=1, hidden_channels=4)
    x = torch.rand(4, 1, 8, 8) - 0.5
    with torch.no_grad():
        model.log_prob(x)
    randomize(model)

    model.log_prob(x).mean().backward()

    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None or not parameter.grad.abs().sum() > 0]
    assert missing == []
