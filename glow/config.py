"""Flow training configuration, the named presets, and the model and device builders."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from glow.likelihood import VariationalDequantizer
from glow.models import Glow, MultiScaleFlow, RealNVP

MODELS = ("glow", "realnvp")
COUPLINGS = ("affine", "additive")
DEQUANTIZATIONS = ("uniform", "variational")


@dataclass(frozen=True)
class FlowConfig:
    """Everything needed to build, train and sample a flow; JSON-serialisable via ``to_dict``.

    ``steps`` counts optimizer steps of ``batch_size`` images. ``learning_rate`` rises
    linearly from 0 over ``warmup_steps``. ``heldout_fraction`` is for callers that split a
    set themselves, because ``train`` receives the training and held-out images separately.
    ``temperature`` is the prior std scale of the sample grids written at checkpoints.
    """

    model: str = "glow"
    image_size: int = 64
    channels: int = 1
    levels: int = 3
    steps_per_level: int = 8
    hidden_channels: int = 64
    coupling: str = "affine"
    lu: bool = True
    n_bits: int = 8
    dequantization: str = "uniform"
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    max_grad_norm: float = 50.0
    steps: int = 1500
    eval_every: int = 250
    checkpoint_every: int = 500
    heldout_fraction: float = 0.2
    seed: int = 0
    temperature: float = 0.7

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if self.dequantization not in DEQUANTIZATIONS:
            raise ValueError(f"dequantization must be one of {DEQUANTIZATIONS}, got {self.dequantization!r}")
        positive = ("image_size", "channels", "levels", "steps_per_level", "hidden_channels", "batch_size", "eval_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps < 0 or self.warmup_steps < 0:
            raise ValueError(f"steps and warmup_steps must be non-negative, got {self.steps} and {self.warmup_steps}")
        if not 1 <= self.n_bits <= 16:
            raise ValueError(f"n_bits must be between 1 and 16, got {self.n_bits}")
        if self.learning_rate <= 0 or self.max_grad_norm <= 0 or self.temperature < 0:
            raise ValueError("learning_rate and max_grad_norm must be positive and temperature non-negative")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        squeezes = self.levels if self.model == "glow" else self.levels - 1
        if self.image_size % (2**squeezes):
            raise ValueError(f"image_size {self.image_size} must be divisible by {2**squeezes} for {self.levels} {self.model} levels")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FlowConfig:
        """Build a config from ``to_dict`` output; unknown keys raise ValueError."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown FlowConfig fields: {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> FlowConfig:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# `small` is sized for two CPU cores: bench/bench_glow.py measures its training rate.
# On a couple of dozen images it overfits within a few hundred steps (held-out bits per
# dimension fall, then climb), so it evaluates often and train() keeps the best weights
# in best.pt. `study` is the 128x128, L=5, K=14, 512-channel Glow that worked best on
# mini-DDSM, sized for a GPU.
PRESETS: dict[str, FlowConfig] = {
    "small": FlowConfig(
        model="glow",
        image_size=64,
        channels=1,
        levels=3,
        steps_per_level=6,
        hidden_channels=48,
        batch_size=16,
        learning_rate=1e-3,
        warmup_steps=100,
        steps=1500,
        eval_every=50,
        checkpoint_every=250,
    ),
    "study": FlowConfig(
        model="glow",
        image_size=128,
        channels=1,
        levels=5,
        steps_per_level=14,
        hidden_channels=512,
        batch_size=32,
        learning_rate=1e-3,
        warmup_steps=500,
        steps=50_000,
        eval_every=1000,
        checkpoint_every=2500,
    ),
}


def build_model(config: FlowConfig) -> MultiScaleFlow:
    """Build the untrained flow the config describes, with its dequantizer if variational."""
    if config.model == "glow":
        model: MultiScaleFlow = Glow(
            config.channels,
            config.image_size,
            config.levels,
            config.steps_per_level,
            config.hidden_channels,
            coupling=config.coupling,
            lu=config.lu,
        )
    else:
        model = RealNVP(config.channels, config.image_size, config.levels, config.steps_per_level, config.hidden_channels)
    if config.dequantization == "variational":
        model.dequantizer = VariationalDequantizer(config.channels, hidden_channels=min(32, config.hidden_channels))
    return model


def move_to_device(model: MultiScaleFlow, device: torch.device) -> MultiScaleFlow:
    """Move a model to ``device``; on CPU also store its convolution weights channels-last.

    Channels-last weights made the oneDNN convolutions faster on CPU: about 20% for a
    training step and 40% for sampling with the ``small`` preset (torch 2.13, two cores).
    NOTE: on CUDA the layout is left as is because its effect there was not measured.
    """
    model = model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


def choose_device(requested: str | None = None) -> torch.device:
    """Return the requested device, or CUDA when available and CPU otherwise.

    ``None`` and ``"auto"`` pick automatically. Raises ValueError when CUDA is requested
    but not available.
    """
    if requested is None or requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available; use 'cpu'")
    return device


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
