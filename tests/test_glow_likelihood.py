"""Image scaling, dequantization and the bits-per-dimension formula in glow.likelihood."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from glow.config import FlowConfig, build_model
from glow.likelihood import (
    as_image_batch,
    batch_bits_per_dim,
    bin_centres,
    bits_per_dim,
    dequantize,
    quantize,
    reduce_bits,
    to_tensor,
)
from glow.models import Glow


def test_three_dimensional_array_is_one_channel_batch() -> None:
    images = np.zeros((5, 6, 7), np.uint8)

    assert as_image_batch(images).shape == (5, 1, 6, 7)


def test_values_above_n_bits_rejected() -> None:
    images = np.full((1, 1, 2, 2), 40, np.uint8)

    with pytest.raises(ValueError, match=r"\[0, 31\] for n_bits=5"):
        as_image_batch(images, n_bits=5)


def test_float_images_rejected() -> None:
    with pytest.raises(ValueError, match="integer array"):
        as_image_batch(np.zeros((1, 1, 2, 2), np.float32))


def test_reduce_bits_keeps_top_bits() -> None:
    images = np.array([0, 7, 8, 255], np.uint8)

    assert reduce_bits(images, 5).tolist() == [0, 0, 1, 31]


def test_bin_centres_quantize_back_exactly() -> None:
    for n_bits, dtype in ((8, np.uint8), (5, np.uint8), (12, np.uint16)):
        values = np.arange(2**n_bits, dtype=dtype).reshape(1, 1, 1, -1)
        bins = to_tensor(values, n_bits)

        restored = quantize(bin_centres(bins, n_bits), n_bits)

        assert restored.dtype == dtype
        assert np.array_equal(restored, values)


def test_dequantized_values_stay_in_their_bin() -> None:
    bins = torch.tensor([[[[0.0, 255.0]]]])
    noise = torch.tensor([[[[0.999, 0.0]]]])

    y = dequantize(bins, noise, 8)

    assert float(y.min()) >= -0.5
    assert float(y.max()) < 0.5
    assert np.array_equal(quantize(y, 8), np.array([[[[0, 255]]]], np.uint8))


def test_bits_per_dim_identity_flow_matches_hand_computation() -> None:
    # With no flow steps, Glow is a volume-preserving regrouping and all priors are N(0, 1),
    # so log p(y) is the standard normal log-density of the dequantized values.
    model = Glow(1, 8, levels=2, steps_per_level=0, hidden_channels=4)
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)

    measured = bits_per_dim(model, images, n_bits=8, seed=11)

    noise = torch.rand((3, 1, 8, 8), generator=torch.Generator().manual_seed(11)).numpy().astype(np.float64)
    y = (images.astype(np.float64) + noise) / 256.0 - 0.5
    log_density = (-0.5 * math.log(2 * math.pi) - 0.5 * y**2).reshape(3, -1).sum(axis=1)
    expected = np.mean((-log_density + 64 * 8 * math.log(2)) / (64 * math.log(2)))
    assert measured == pytest.approx(expected, abs=1e-5)
    # Uniform y in [-0.5, 0.5] under N(0, 1) costs 0.5 * log2(2 pi) + E[y^2] / (2 ln 2) bits.
    assert measured == pytest.approx(8 + (0.5 * math.log(2 * math.pi) + 1 / 24) / math.log(2), abs=0.1)


def test_bits_per_dim_scales_with_n_bits() -> None:
    model = Glow(1, 4, levels=1, steps_per_level=0, hidden_channels=2)
    images = np.zeros((2, 1, 4, 4), np.uint8)

    at_8_bits = bits_per_dim(model, images, n_bits=8, seed=0)
    at_5_bits = bits_per_dim(model, images, n_bits=5, seed=0)

    # All-zero images map to y near -0.5 at either depth, so the difference is the 3 bits of scaling
    # plus the change of y within the first bin, under 0.1 bit here.
    assert at_8_bits - at_5_bits == pytest.approx(3.0, abs=0.1)


def test_untrained_glow_on_uniform_noise_near_8_bits() -> None:
    # After ActNorm initialisation each value is a unit-variance uniform under N(0, 1):
    # 0.5 * log2(2 pi e / 12) = 0.2546 bits above the 8 bits of the data.
    torch.manual_seed(0)
    model = Glow(1, 16, levels=2, steps_per_level=2, hidden_channels=8)
    images = np.random.default_rng(1).integers(0, 256, (32, 1, 16, 16), dtype=np.uint8)
    with torch.no_grad():
        batch_bits_per_dim(model, to_tensor(images), 8)

    measured = bits_per_dim(model, images, n_bits=8)

    assert measured == pytest.approx(8 + 0.5 * math.log2(2 * math.pi * math.e / 12), abs=0.03)


def test_bits_per_dim_same_seed_same_value() -> None:
    model = Glow(1, 8, levels=1, steps_per_level=1, hidden_channels=4)
    images = np.random.default_rng(2).integers(0, 256, (4, 1, 8, 8), dtype=np.uint8)

    first = bits_per_dim(model, images, seed=3)
    second = bits_per_dim(model, images, seed=3)
    other = bits_per_dim(model, images, seed=4)

    assert first == second
    assert first != other


def test_bits_per_dim_restores_training_mode() -> None:
    model = Glow(1, 8, levels=1, steps_per_level=1, hidden_channels=4).train()

    bits_per_dim(model, np.zeros((1, 1, 8, 8), np.uint8))

    assert model.training


def test_variational_bpd_finite_and_distinct() -> None:
    torch.manual_seed(0)
    model = build_model(FlowConfig(image_size=8, levels=1, steps_per_level=1, hidden_channels=4, dequantization="variational"))
    images = np.random.default_rng(3).integers(0, 256, (4, 1, 8, 8), dtype=np.uint8)

    variational = bits_per_dim(model, images)
    uniform = bits_per_dim(model, images, dequantization="uniform")

    assert math.isfinite(variational)
    assert variational != pytest.approx(uniform, abs=1e-3)


def test_variational_dequantizer_trains_jointly() -> None:
    torch.manual_seed(0)
    model = build_model(FlowConfig(image_size=8, levels=1, steps_per_level=1, hidden_channels=4, dequantization="variational"))
    bins = to_tensor(np.random.default_rng(4).integers(0, 256, (4, 1, 8, 8), dtype=np.uint8))

    batch_bits_per_dim(model, bins, 8).mean().backward()

    assert model.dequantizer is not None
    gradients = [parameter.grad for parameter in model.dequantizer.parameters()]
    assert all(gradient is not None for gradient in gradients)
    assert sum(float(gradient.abs().sum()) for gradient in gradients) > 0


def test_variational_requested_without_dequantizer_raises() -> None:
    model = Glow(1, 8, levels=1, steps_per_level=1, hidden_channels=4)

    with pytest.raises(ValueError, match="no dequantizer"):
        bits_per_dim(model, np.zeros((1, 1, 8, 8), np.uint8), dequantization="variational")


def test_quantize_handles_non_finite_values() -> None:
    y = torch.tensor([[[[float("nan"), float("inf"), -float("inf"), 0.0]]]])

    assert quantize(y, 8).tolist() == [[[[0, 255, 0, 128]]]]
