"""Invertibility, log-determinants and state handling of the layers in glow.layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from glow.layers import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelFlip,
    CheckerboardCoupling,
    FlowStep,
    InvertibleConv1x1,
    LearnedPrior,
    Split,
    Squeeze,
    gaussian_log_prob,
    squeeze2d,
    unsqueeze2d,
)
from glow.likelihood import VariationalDequantizer


def randomize(module: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """Add noise to every parameter so zero-initialised layers are no longer the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def brute_force_logdet(function, x: torch.Tensor) -> torch.Tensor:
    """log|det J| of ``function`` at a single input, from the full autograd Jacobian."""
    flat = x.reshape(-1)

    def flat_function(values: torch.Tensor) -> torch.Tensor:
        return function(values.reshape(x.shape)).reshape(-1)

    jacobian = torch.autograd.functional.jacobian(flat_function, flat)
    sign, logabsdet = torch.linalg.slogdet(jacobian)
    assert sign != 0
    return logabsdet


def make_transforms() -> dict[str, nn.Module]:
    torch.manual_seed(1)
    actnorm = ActNorm(2)
    actnorm.initialize(torch.randn(8, 2, 4, 4) * 3.0 + 1.0)
    return {
        "actnorm": actnorm,
        "invconv_lu": randomize(InvertibleConv1x1(2, lu=True)),
        "invconv_plain": randomize(InvertibleConv1x1(2, lu=False)),
        "affine": randomize(AffineCoupling(2, hidden_channels=6)),
        "additive": randomize(AdditiveCoupling(2, hidden_channels=6)),
        "checkerboard": randomize(CheckerboardCoupling(2, hidden_channels=6, parity=1)),
        "channel_flip": ChannelFlip(),
        "squeeze": Squeeze(),
        "flow_step": randomize(FlowStep(2, hidden_channels=6)),
        "flow_step_additive": randomize(FlowStep(2, hidden_channels=6, coupling="additive", lu=False)),
    }


@pytest.mark.parametrize("name", list(make_transforms()))
def test_layer_inverse_restores_input(name: str) -> None:
    layer = make_transforms()[name].double()
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)

    y, logdet = layer(x)
    restored = layer.inverse(y)

    assert logdet.shape == (3,)
    assert torch.allclose(restored, x, atol=1e-10)
    assert y.shape != x.shape or not torch.allclose(y, x)


@pytest.mark.parametrize("name", list(make_transforms()))
def test_layer_logdet_matches_jacobian(name: str) -> None:
    layer = make_transforms()[name].double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)

    _, logdet = layer(x)
    expected = brute_force_logdet(lambda values: layer(values)[0], x)

    assert torch.allclose(logdet[0], expected, atol=1e-8), (float(logdet[0]), float(expected))


def test_layer_logdet_is_per_sample() -> None:
    layer = make_transforms()["affine"].double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)

    _, batch_logdet = layer(x)
    _, first_logdet = layer(x[:1])
    _, second_logdet = layer(x[1:])

    assert torch.allclose(batch_logdet, torch.cat([first_logdet, second_logdet]))
    assert not torch.allclose(batch_logdet[0], batch_logdet[1])


def test_squeeze_moves_2x2_blocks_into_channels() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)

    squeezed = squeeze2d(x)

    assert squeezed.shape == (1, 4, 2, 2)
    # Channel k holds the pixel at offset (k // 2, k % 2) inside each 2x2 block.
    assert squeezed[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    assert squeezed[0, 3, 1, 1].item() == 15.0
    assert torch.equal(unsqueeze2d(squeezed), x)


def test_squeeze_rejects_odd_size() -> None:
    with pytest.raises(ValueError, match="even height and width"):
        squeeze2d(torch.zeros(1, 1, 3, 4))


def test_split_regroups_and_scores_factored_half() -> None:
    torch.manual_seed(2)
    split = randomize(Split(4)).double()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)

    kept, factored, log_prior = split(x)
    restored = split.inverse(kept, factored)
    mean, log_std = split.prior_parameters(kept)
    by_hand = (-0.5 * math.log(2 * math.pi) - log_std - 0.5 * ((factored - mean) / log_std.exp()) ** 2).sum(dim=(1, 2, 3))

    assert kept.shape == (2, 2, 3, 3)
    assert factored.shape == (2, 2, 3, 3)
    assert torch.equal(restored, x)
    assert torch.allclose(log_prior, by_hand)
    assert not torch.allclose(mean, torch.zeros_like(mean))


def test_split_is_volume_preserving() -> None:
    split = Split(2).double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)

    def regroup(values: torch.Tensor) -> torch.Tensor:
        kept, factored, _ = split(values)
        return torch.cat([kept.reshape(-1), factored.reshape(-1)])

    assert brute_force_logdet(regroup, x).abs() < 1e-12


def test_split_prior_starts_standard_normal() -> None:
    split = Split(4)
    kept = torch.randn(2, 2, 3, 3)

    mean, log_std = split.prior_parameters(kept)

    assert torch.equal(mean, torch.zeros_like(mean))
    assert torch.equal(log_std, torch.zeros_like(log_std))


def test_split_sample_uses_temperature() -> None:
    split = Split(2)
    kept = torch.zeros(4000, 1, 1, 1)

    with torch.no_grad():
        cold = split.sample(kept, 0.5, torch.Generator().manual_seed(0))
        frozen = split.sample(kept, 0.0, torch.Generator().manual_seed(0))

    assert abs(float(cold.std()) - 0.5) < 0.03
    assert torch.equal(frozen, torch.zeros_like(frozen))


def test_learned_prior_log_prob_matches_formula() -> None:
    prior = LearnedPrior((2, 2, 2))
    with torch.no_grad():
        prior.mean.fill_(0.5)
        prior.log_std.fill_(math.log(2.0))
    z = torch.ones(1, 2, 2, 2)

    expected = 8 * (-0.5 * math.log(2 * math.pi) - math.log(2.0) - 0.5 * (0.5 / 2.0) ** 2)

    assert prior.log_prob(z).item() == pytest.approx(expected, rel=1e-6)


def test_gaussian_log_prob_standard_normal_at_zero() -> None:
    z = torch.zeros(3, 1, 2, 2)

    value = gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))

    assert value.tolist() == pytest.approx([-2 * math.log(2 * math.pi)] * 3)


def test_actnorm_first_batch_gives_zero_mean_unit_std() -> None:
    layer = ActNorm(3)
    x = torch.randn(16, 3, 8, 8) * torch.tensor([1.0, 5.0, 0.2]).view(1, 3, 1, 1) + 4.0

    y, _ = layer(x)

    assert bool(layer.initialized)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_actnorm_initializes_only_once() -> None:
    layer = ActNorm(1)
    layer(torch.randn(4, 1, 4, 4))
    bias = layer.bias.detach().clone()

    layer(torch.randn(4, 1, 4, 4) * 10.0 + 3.0)

    assert torch.equal(layer.bias, bias)


def test_actnorm_all_black_batch_is_finite() -> None:
    layer = ActNorm(2, min_std=1e-2)
    black = torch.full((4, 2, 8, 8), -0.5)

    y, logdet = layer(black)

    assert torch.isfinite(layer.log_scale).all()
    assert torch.isfinite(y).all()
    assert torch.isfinite(logdet).all()
    assert torch.allclose(layer.log_scale, torch.full_like(layer.log_scale, math.log(100.0)))


def test_actnorm_flag_saved_in_state_dict() -> None:
    layer = ActNorm(2)
    layer(torch.randn(4, 2, 4, 4) * 3.0)

    state = layer.state_dict()

    assert "initialized" in state
    assert bool(state["initialized"])


def test_reloaded_actnorm_does_not_reinitialize() -> None:
    trained = ActNorm(2)
    trained(torch.randn(8, 2, 4, 4) * 3.0 + 1.0)
    reloaded = ActNorm(2)
    reloaded.load_state_dict(trained.state_dict())
    other_data = torch.randn(8, 2, 4, 4) * 0.1 - 2.0

    expected, _ = trained(other_data)
    actual, _ = reloaded(other_data)

    assert torch.equal(actual, expected)
    assert torch.equal(reloaded.bias, trained.bias)


def test_actnorm_flag_cleared_by_loading_fresh_state() -> None:
    layer = ActNorm(1)
    layer(torch.randn(4, 1, 4, 4))

    layer.load_state_dict(ActNorm(1).state_dict())
    layer(torch.randn(4, 1, 4, 4) * 5.0)

    assert bool(layer.initialized)
    assert layer.log_scale.item() == pytest.approx(-math.log(5.0), abs=0.2)


def test_invconv_lu_logdet_is_sum_of_log_s() -> None:
    layer = randomize(InvertibleConv1x1(4, lu=True))
    x = torch.randn(2, 4, 3, 5)

    _, logdet = layer(x)

    assert torch.allclose(logdet, torch.full((2,), 15 * layer.log_abs_s.sum().item()))


def test_invconv_starts_orthogonal() -> None:
    layer = InvertibleConv1x1(4, lu=True)

    weight, _ = layer._weight_and_log_det()

    assert torch.allclose(weight @ weight.T, torch.eye(4), atol=1e-5)


def test_invconv_eval_reuses_cached_inverse() -> None:
    layer = randomize(InvertibleConv1x1(3)).eval()
    y = torch.randn(1, 3, 2, 2)

    layer.inverse(y)
    first = layer._cache
    layer.inverse(y)

    assert first is not None
    assert layer._cache is first


def test_invconv_cache_follows_parameter_updates() -> None:
    layer = randomize(InvertibleConv1x1(3)).eval()
    x = torch.randn(2, 3, 2, 2)
    before, _ = layer(x)

    with torch.no_grad():
        layer.log_abs_s.add_(0.5)
    after, logdet = layer(x)

    assert not torch.allclose(before, after)
    assert torch.allclose(logdet, torch.full((2,), 4 * layer.log_abs_s.sum().item()))
    assert torch.allclose(layer.inverse(after), x, atol=1e-5)


def test_invconv_cache_follows_optimizer_step_and_load() -> None:
    layer = randomize(InvertibleConv1x1(3))
    x = torch.randn(2, 3, 2, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer.eval()
    with torch.no_grad():
        cached_before, _ = layer(x)

    layer.train()
    output, logdet = layer(x)
    (output.square().sum() + logdet.sum()).backward()
    optimizer.step()
    layer.eval()
    with torch.no_grad():
        after_step, _ = layer(x)
    fresh = InvertibleConv1x1(3)
    layer.load_state_dict(fresh.state_dict())
    with torch.no_grad():
        after_load, _ = layer(x)
        expected_after_load, _ = fresh.eval()(x)

    assert not torch.allclose(cached_before, after_step)
    assert torch.allclose(after_load, expected_after_load)


def test_invconv_train_mode_gradients_reach_parameters() -> None:
    layer = InvertibleConv1x1(3).train()
    x = torch.randn(2, 3, 2, 2)

    output, logdet = layer(x)
    (output.sum() + logdet.sum()).backward()

    assert layer.log_abs_s.grad is not None
    assert layer.lower.grad is not None
    assert float(layer.log_abs_s.grad.abs().sum()) > 0


def test_couplings_start_as_identity() -> None:
    x = torch.randn(2, 4, 4, 4)
    for layer in (AffineCoupling(4, 8), AdditiveCoupling(4, 8), CheckerboardCoupling(4, 8, parity=0)):
        y, logdet = layer(x)
        assert torch.equal(y, x), type(layer).__name__
        assert torch.equal(logdet, torch.zeros(2)), type(layer).__name__


def test_affine_coupling_scale_is_bounded() -> None:
    layer = randomize(AffineCoupling(2, 4, scale_bound=1.5), scale=50.0)
    x = torch.randn(1, 2, 4, 4) * 10.0

    with torch.no_grad():
        _, logdet = layer(x)

    # 16 transformed values, each with |log s| < 1.5.
    assert float(logdet.abs()) < 16 * 1.5


def test_affine_coupling_keeps_conditioning_half() -> None:
    layer = randomize(AffineCoupling(4, 8))
    x = torch.randn(2, 4, 3, 3)

    y, _ = layer(x)

    assert torch.equal(y[:, :2], x[:, :2])
    assert not torch.allclose(y[:, 2:], x[:, 2:])


def test_checkerboard_coupling_keeps_masked_pixels() -> None:
    layer = randomize(CheckerboardCoupling(1, 8, parity=0))
    x = torch.randn(1, 1, 4, 4)

    y, _ = layer(x)

    assert y[0, 0, 0, 0] == x[0, 0, 0, 0]
    assert y[0, 0, 1, 1] == x[0, 0, 1, 1]
    assert y[0, 0, 0, 1] != x[0, 0, 0, 1]


def test_flow_step_rejects_unknown_coupling() -> None:
    with pytest.raises(ValueError, match="coupling must be"):
        FlowStep(2, 4, coupling="spline")


def test_variational_dequantizer_log_q_matches_jacobian() -> None:
    torch.manual_seed(3)
    dequantizer = randomize(VariationalDequantizer(1, hidden_channels=4, steps=2), scale=0.2).double()
    bins = torch.randint(0, 256, (1, 1, 4, 4)).double()
    epsilon = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    dequantizer.transform(epsilon, bins, 8)  # initialise ActNorm before measuring

    u, log_q = dequantizer.transform(epsilon, bins, 8)
    log_jacobian = brute_force_logdet(lambda values: dequantizer.transform(values, bins, 8)[0], epsilon)
    log_normal = -0.5 * (math.log(2 * math.pi) * 16 + float(epsilon.square().sum()))

    assert ((u > 0) & (u < 1)).all()
    assert log_q.item() == pytest.approx(log_normal - log_jacobian.item(), abs=1e-8)
