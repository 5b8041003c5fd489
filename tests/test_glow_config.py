"""FlowConfig serialisation and validation, the presets, build_model and choose_device."""

from __future__ import annotations

import json

import pytest
import torch

from glow.config import PRESETS, FlowConfig, build_model, choose_device, move_to_device
from glow.likelihood import VariationalDequantizer
from glow.models import Glow, RealNVP


def test_config_json_round_trip() -> None:
    config = FlowConfig(model="realnvp", image_size=32, levels=2, coupling="additive", dequantization="variational", seed=9)

    restored = FlowConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert restored == config


def test_config_unknown_field_rejected() -> None:
    values = FlowConfig().to_dict() | {"depth": 3}

    with pytest.raises(ValueError, match="unknown FlowConfig fields: depth"):
        FlowConfig.from_dict(values)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "vae"}, "model must be one of"),
        ({"coupling": "spline"}, "coupling must be one of"),
        ({"dequantization": "none"}, "dequantization must be one of"),
        ({"image_size": 60, "levels": 3}, "divisible by 8"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"n_bits": 17}, "n_bits must be between"),
        ({"heldout_fraction": 1.0}, "heldout_fraction"),
    ],
)
def test_config_invalid_values_rejected(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlowConfig(**changes)


def test_realnvp_needs_one_squeeze_fewer() -> None:
    config = FlowConfig(model="realnvp", image_size=4, levels=3)

    assert config.levels == 3


def test_presets_match_their_purpose() -> None:
    small, study = PRESETS["small"], PRESETS["study"]

    assert (small.image_size, small.channels) == (64, 1)
    assert (study.image_size, study.levels, study.steps_per_level, study.hidden_channels) == (128, 5, 14, 512)
    assert study.model == small.model == "glow"


def test_build_model_follows_config() -> None:
    glow = build_model(FlowConfig(image_size=16, levels=2, steps_per_level=3, hidden_channels=8, coupling="additive", lu=False))
    realnvp = build_model(FlowConfig(model="realnvp", image_size=16, levels=2, steps_per_level=1, hidden_channels=8))

    assert isinstance(glow, Glow)
    assert (glow.steps_per_level, glow.hidden_channels, glow.coupling, glow.lu) == (3, 8, "additive", False)
    assert glow.dequantizer is None
    assert isinstance(realnvp, RealNVP)


def test_build_model_adds_variational_dequantizer() -> None:
    model = build_model(FlowConfig(image_size=16, levels=2, steps_per_level=1, hidden_channels=8, dequantization="variational"))

    assert isinstance(model.dequantizer, VariationalDequantizer)
    assert any(name.startswith("dequantizer.") for name in model.state_dict())


def test_choose_device_defaults_and_overrides() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"

    assert choose_device(None).type == expected
    assert choose_device("auto").type == expected
    assert choose_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is absent")
def test_choose_device_cuda_unavailable_raises() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        choose_device("cuda")


def test_move_to_cpu_channels_last() -> None:
    torch.manual_seed(0)
    model = build_model(FlowConfig(image_size=16, levels=2, steps_per_level=1, hidden_channels=8))
    x = torch.rand(2, 1, 16, 16) - 0.5
    with torch.no_grad():
        model.log_prob(x)
        expected = model.log_prob(x)

    moved = move_to_device(model, torch.device("cpu"))
    with torch.no_grad():
        actual = moved.log_prob(x)

    convolution = moved.levels[0].transforms[1].coupling.network.layers[0]
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(actual, expected, atol=1e-3)
