"""Sampling, interpolation, random balls and latent manipulation in glow.operations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from glow.config import PRESETS, build_model, move_to_device
from glow.latent import load_latent, save_latent
from glow.likelihood import bin_centres, to_tensor
from glow.models import Glow, MultiScaleFlow
from glow.operations import (
    Generated,
    ball,
    decode_latents,
    direction,
    encode_images,
    interpolate,
    manipulate,
    sample,
)


def trained_like(model: MultiScaleFlow, seed: int = 0) -> MultiScaleFlow:
    """Initialise ActNorm on random images and perturb every parameter away from the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.log_prob(torch.rand((8, *model.image_shape), generator=generator) - 0.5)
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def model() -> MultiScaleFlow:
    torch.manual_seed(0)
    return trained_like(Glow(1, 16, levels=2, steps_per_level=2, hidden_channels=8))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 1, 16, 16), dtype=np.uint8)


def test_encode_is_deterministic_bin_centre(model: MultiScaleFlow, images: np.ndarray) -> None:
    first = encode_images(model, images)
    second = encode_images(model, images)
    with torch.no_grad():
        expected, _, _ = model.encode(bin_centres(to_tensor(images), 8))

    for level_first, level_second, level_expected in zip(first, second, expected):
        assert torch.equal(level_first, level_second)
        assert torch.allclose(level_first, level_expected, atol=1e-6)


def test_decode_of_encode_gives_images_back(model: MultiScaleFlow, images: np.ndarray) -> None:
    restored = decode_latents(model, encode_images(model, images))

    assert restored.dtype == np.uint8
    assert np.array_equal(restored, images)


def test_sample_shape_dtype_and_latents(model: MultiScaleFlow) -> None:
    generated = sample(model, count=5, temperature=0.7, seed=1, batch_size=2)

    assert isinstance(generated, Generated)
    assert generated.images.shape == (5, 1, 16, 16)
    assert generated.images.dtype == np.uint8
    assert len(generated.latents) == 5
    assert [level.shape for level in generated.latents[0]] == model.latent_shapes()


def test_sample_same_seed_same_images(model: MultiScaleFlow) -> None:
    first = sample(model, 3, 0.7, seed=4)
    second = sample(model, 3, 0.7, seed=4)
    other = sample(model, 3, 0.7, seed=5)

    assert np.array_equal(first.images, second.images)
    assert not np.array_equal(first.images, other.images)


def test_sample_latents_decode_to_its_images(model: MultiScaleFlow) -> None:
    generated = sample(model, 3, 0.9, seed=2)
    stacked = [np.stack([latents[level] for latents in generated.latents]) for level in range(len(generated.latents[0]))]

    assert np.array_equal(decode_latents(model, stacked), generated.images)


def test_sample_restores_training_mode(model: MultiScaleFlow) -> None:
    model.train()
    sample(model, 1, 0.5, seed=0)

    assert model.training
    model.eval()


@pytest.mark.parametrize("spherical", [False, True])
def test_interpolation_endpoints_are_the_images(model: MultiScaleFlow, images: np.ndarray, spherical: bool) -> None:
    generated = interpolate(model, images[0], images[1], [0.0, 0.5, 1.0], spherical=spherical)

    assert generated.images.shape == (3, 1, 16, 16)
    assert np.array_equal(generated.images[0], images[0])
    assert np.array_equal(generated.images[2], images[1])
    assert not np.array_equal(generated.images[1], images[0])
    assert not np.array_equal(generated.images[1], images[1])


def test_linear_interpolation_midpoint_latent(model: MultiScaleFlow, images: np.ndarray) -> None:
    generated = interpolate(model, images[0][0], images[1][0], [0.25])
    latents_a = encode_images(model, images[:1])
    latents_b = encode_images(model, images[1:2])

    for level, (level_a, level_b) in enumerate(zip(latents_a, latents_b)):
        expected = (0.75 * level_a + 0.25 * level_b)[0].numpy()
        assert np.allclose(generated.latents[0][level], expected, atol=1e-6)


def test_spherical_interpolation_keeps_norm_between_equal_norm_latents(model: MultiScaleFlow, images: np.ndarray) -> None:
    generated = interpolate(model, images[0], images[1], [0.0, 0.5, 1.0], spherical=True)
    norms = [np.sqrt(sum(float(np.square(level).sum()) for level in latents)) for latents in generated.latents]

    # Slerp's midpoint norm lies between the end norms; linear would fall below both.
    assert min(norms[0], norms[2]) - 1e-3 <= norms[1] <= max(norms[0], norms[2]) + 1e-3


def test_ball_radius_zero_returns_image(model: MultiScaleFlow, images: np.ndarray) -> None:
    generated = ball(model, images[2], radius=0.0, count=3, seed=0)

    assert generated.images.shape == (3, 1, 16, 16)
    for image in generated.images:
        assert np.array_equal(image, images[2])


def test_ball_offsets_lie_within_radius(model: MultiScaleFlow, images: np.ndarray) -> None:
    centre = [level[0].numpy() for level in encode_images(model, images[2:3])]

    generated = ball(model, images[2], radius=3.0, count=4, seed=1)
    distances = [
        np.sqrt(sum(float(np.square(level - centre_level).sum()) for level, centre_level in zip(latents, centre)))
        for latents in generated.latents
    ]

    assert all(distance <= 3.0 + 1e-4 for distance in distances)
    # In 256 dimensions a uniform ball's radius quantiles sit close to the surface.
    assert all(distance > 2.5 for distance in distances)
    assert not np.array_equal(generated.images[0], images[2])


def test_direction_is_difference_of_mean_latents(model: MultiScaleFlow, images: np.ndarray) -> None:
    offset = direction(model, images[:2], images[2:5])
    latents_a = encode_images(model, images[:2])
    latents_b = encode_images(model, images[2:5])

    assert [tuple(level.shape) for level in offset] == model.latent_shapes()
    for level, level_a, level_b in zip(offset, latents_a, latents_b):
        assert torch.allclose(level, level_b.mean(0) - level_a.mean(0))


def test_manipulate_strength_zero_returns_originals(model: MultiScaleFlow, images: np.ndarray) -> None:
    offset = direction(model, images[:3], images[3:])

    generated = manipulate(model, images, offset, strength=0.0)

    assert np.array_equal(generated.images, images)


def test_manipulate_moves_latents_by_strength(model: MultiScaleFlow, images: np.ndarray) -> None:
    offset = direction(model, images[:3], images[3:])
    original = encode_images(model, images[:2])

    generated = manipulate(model, images[:2], [level.numpy() for level in offset], strength=1.5)

    for level, (latent, shift) in enumerate(zip(original, offset)):
        assert np.allclose(generated.latents[1][level], (latent[1] + 1.5 * shift).numpy(), atol=1e-5)
    assert not np.array_equal(generated.images, images[:2])


def test_manipulate_rejects_wrong_direction(model: MultiScaleFlow, images: np.ndarray) -> None:
    offset = direction(model, images[:3], images[3:])

    with pytest.raises(ValueError, match="direction has 1 levels"):
        manipulate(model, images, offset[:1], strength=1.0)


def test_generated_latents_survive_latent_file(model: MultiScaleFlow, tmp_path: Path) -> None:
    generated = sample(model, 1, 0.8, seed=3)

    save_latent(tmp_path / "sample.npz", generated.latents[0], {"method": "sample"})
    loaded, _ = load_latent(tmp_path / "sample.npz")
    decoded = decode_latents(model, [level[None] for level in loaded])

    assert np.array_equal(decoded, generated.images)


def test_operations_exact_at_64x64_small_preset() -> None:
    torch.manual_seed(0)
    # move_to_device stores the weights channels-last on CPU, as train and load_checkpoint do.
    flow = trained_like(move_to_device(build_model(PRESETS["small"]), torch.device("cpu")))
    images = np.random.default_rng(5).integers(0, 256, (2, 1, 64, 64), dtype=np.uint8)
    images[:, :, :, :20] = 0  # a black background strip like a mammogram's

    interpolated = interpolate(flow, images[0], images[1], [0.0, 1.0])
    manipulated = manipulate(flow, images, direction(flow, images[:1], images[1:]), strength=0.0)
    balled = ball(flow, images[0], radius=0.0, count=1)

    assert np.array_equal(interpolated.images, images)
    assert np.array_equal(manipulated.images, images)
    assert np.array_equal(balled.images[0], images[0])


def test_decode_warns_about_non_finite_images(model: MultiScaleFlow, caplog: pytest.LogCaptureFixture) -> None:
    latents = [torch.zeros(2, *shape) for shape in model.latent_shapes()]
    latents[-1][1, 0, 0, 0] = float("nan")

    with caplog.at_level("WARNING", logger="glow.operations"):
        images = decode_latents(model, latents)

    assert images.shape == (2, 1, 16, 16)
    assert "decoded 1 of 2 images with NaN or infinite values" in caplog.text
