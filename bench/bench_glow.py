"""Benchmark glow's Glow against a plain reference Glow of the same architecture.

Measures training images per second, sampling images per second and peak memory for the
``small`` preset and, over a few steps, the ``study`` preset. The reference below is the
straightforward way to write Glow: a free 1x1 convolution weight whose log-determinant
comes from ``torch.slogdet`` on every call and whose inverse from ``torch.inverse`` on
every call. Each measurement runs in its own subprocess so peak memory is its own.

Usage: python bench/bench_glow.py [--quick] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glow.config import PRESETS, FlowConfig, build_model, move_to_device  # noqa: E402
from glow.likelihood import batch_bits_per_dim  # noqa: E402

# --- reference implementation -------------------------------------------------------------


class ReferenceActNorm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.initialized = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.initialized:
            with torch.no_grad():
                self.bias.copy_(-x.mean(dim=(0, 2, 3), keepdim=True))
                self.log_scale.copy_(-torch.log(x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-2)))
            self.initialized = True
        logdet = x.shape[2] * x.shape[3] * self.log_scale.sum()
        return (x + self.bias) * torch.exp(self.log_scale), logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class ReferenceInvConv(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(channels, channels))[0])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        channels = self.weight.shape[0]
        logdet = x.shape[2] * x.shape[3] * torch.slogdet(self.weight)[1]
        return F.conv2d(x, self.weight.view(channels, channels, 1, 1)), logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        channels = self.weight.shape[0]
        return F.conv2d(y, torch.inverse(self.weight).view(channels, channels, 1, 1))


class ReferenceZeroConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.log_scale = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.exp(3.0 * self.log_scale)


class ReferenceCoupling(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(channels // 2, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            ReferenceZeroConv(hidden, channels),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x.chunk(2, dim=1)
        shift, raw = self.network(x_a).chunk(2, dim=1)
        log_s = 2.0 * torch.tanh(raw / 2.0)
        return torch.cat([x_a, x_b * torch.exp(log_s) + shift], dim=1), log_s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y.chunk(2, dim=1)
        shift, raw = self.network(y_a).chunk(2, dim=1)
        log_s = 2.0 * torch.tanh(raw / 2.0)
        return torch.cat([y_a, (y_b - shift) * torch.exp(-log_s)], dim=1)


def reference_squeeze(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, c * 4, h // 2, w // 2)


def reference_unsqueeze(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, h * 2, w * 2)


def reference_log_normal(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    return (-0.5 * math.log(2 * math.pi) - log_std - 0.5 * ((z - mean) * torch.exp(-log_std)) ** 2).flatten(1).sum(1)


class ReferenceGlow(nn.Module):
    def __init__(self, in_channels: int, image_size: int, levels: int, steps: int, hidden: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.priors = nn.ModuleList()
        channels, size = in_channels, image_size
        for index in range(levels):
            channels, size = channels * 4, size // 2
            flow = nn.ModuleList()
            for _ in range(steps):
                flow.extend([ReferenceActNorm(channels), ReferenceInvConv(channels), ReferenceCoupling(channels, hidden)])
            self.blocks.append(flow)
            if index < levels - 1:
                self.priors.append(ReferenceZeroConv(channels // 2, channels))
                channels //= 2
        self.top_mean = nn.Parameter(torch.zeros(1, channels, size, size))
        self.top_log_std = nn.Parameter(torch.zeros(1, channels, size, size))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(x.shape[0])
        for index, flow in enumerate(self.blocks):
            x = reference_squeeze(x)
            for layer in flow:
                x, logdet = layer(x)
                total = total + logdet
            if index < len(self.priors):
                x, z = x.chunk(2, dim=1)
                mean, log_std = self.priors[index](x).chunk(2, dim=1)
                total = total + reference_log_normal(z, mean, log_std)
        return total + reference_log_normal(x, self.top_mean, self.top_log_std)

    def sample(self, count: int, temperature: float) -> torch.Tensor:
        x = self.top_mean + torch.exp(self.top_log_std) * temperature * torch.randn(count, *self.top_mean.shape[1:])
        for index in reversed(range(len(self.blocks))):
            if index < len(self.priors):
                mean, log_std = self.priors[index](x).chunk(2, dim=1)
                x = torch.cat([x, mean + torch.exp(log_std) * temperature * torch.randn_like(mean)], dim=1)
            for layer in reversed(self.blocks[index]):
                x = layer.inverse(x)
            x = reference_unsqueeze(x)
        return x


def reference_bits_per_dim(model: ReferenceGlow, bins: torch.Tensor) -> torch.Tensor:
    dimensions = bins[0].numel()
    y = (bins + torch.rand_like(bins)) / 256.0 - 0.5
    return (-model.log_prob(y) + dimensions * math.log(256.0)) / (dimensions * math.log(2.0))


# --- measurement ----------------------------------------------------------------------------


def build(implementation: str, config: FlowConfig, device: torch.device) -> nn.Module:
    if implementation == "glow":
        return move_to_device(build_model(config), device)
    return ReferenceGlow(config.channels, config.image_size, config.levels, config.steps_per_level, config.hidden_channels).to(device)


def loss_of(implementation: str, model: nn.Module, bins: torch.Tensor) -> torch.Tensor:
    if implementation == "glow":
        return batch_bits_per_dim(model, bins, 8).mean()
    return reference_bits_per_dim(model, bins).mean()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(implementation: str, preset: str, batch_size: int, warmup: int, timed: int, sample_batches: int, device: torch.device) -> dict:
    """Train ``warmup + timed`` steps and sample ``sample_batches`` batches; report rates and memory."""
    torch.manual_seed(0)
    config = PRESETS[preset].replace(batch_size=batch_size)
    model = build(implementation, config, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    bins = torch.randint(0, 256, (batch_size, config.channels, config.image_size, config.image_size), device=device).float()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    with torch.no_grad():
        loss_of(implementation, model, bins)  # ActNorm initialisation
    # Each step is timed alone and the median kept, so a burst of load from other
    # processes on a shared machine moves the result less than a total would.
    model.train()
    step_seconds: list[float] = []
    for step in range(warmup + timed):
        synchronize(device)
        started = time.perf_counter()
        loss = loss_of(implementation, model, bins)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        optimizer.step()
        synchronize(device)
        if step >= warmup:
            step_seconds.append(time.perf_counter() - started)

    model.eval()
    sample_seconds: list[float] = []
    with torch.no_grad():
        model.sample(batch_size, 0.7)  # the first call builds glow's cached inverses
        for _ in range(sample_batches):
            synchronize(device)
            started = time.perf_counter()
            model.sample(batch_size, 0.7)
            synchronize(device)
            sample_seconds.append(time.perf_counter() - started)

    result = {
        "implementation": implementation,
        "preset": preset,
        "batch_size": batch_size,
        "timed_steps": timed,
        "train_images_per_second": batch_size / statistics.median(step_seconds),
        "sample_images_per_second": batch_size / statistics.median(sample_seconds),
        "final_loss": float(loss.detach()),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_rss_mib": baseline_rss / 1024,
    }
    if device.type == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def run_child(arguments: list[str]) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--child", *arguments], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark child {arguments} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and a smaller study batch (about two minutes on two CPU cores)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for every measurement (default: torch's own choice)")
    parser.add_argument("--child", nargs=8, metavar=("IMPL", "PRESET", "BATCH", "WARMUP", "TIMED", "SAMPLE_BATCHES", "DEVICE", "THREADS"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.child:
        implementation, preset, batch, warmup, timed, sample_batches, device, threads = arguments.child
        if int(threads) > 0:
            torch.set_num_threads(int(threads))
        print(json.dumps(measure(implementation, preset, int(batch), int(warmup), int(timed), int(sample_batches), torch.device(device))))
        return

    device = arguments.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.startswith("cuda")
    if arguments.quick:
        plans = [("small", 16, 2, 10, 4), ("study", 8 if on_gpu else 2, 1, 2, 1)]
    else:
        plans = [("small", 16, 5, 40, 10), ("study", 32 if on_gpu else 4, 2, 5, 2)]

    threads = arguments.threads or torch.get_num_threads()
    print(f"device {device}, torch {torch.__version__}, {threads} CPU threads")
    header = f"{'preset':7} {'implementation':14} {'batch':>5} {'train img/s':>12} {'sample img/s':>13} {'peak RSS MiB':>13}"
    if on_gpu:
        header += f" {'peak CUDA MiB':>14}"
    print(header)
    for preset, batch, warmup, timed, sample_batches in plans:
        results = {}
        for implementation in ("glow", "reference"):
            result = run_child([implementation, preset, str(batch), str(warmup), str(timed), str(sample_batches), device, str(threads)])
            results[implementation] = result
            line = (f"{preset:7} {implementation:14} {batch:5d} {result['train_images_per_second']:12.2f} "
                    f"{result['sample_images_per_second']:13.2f} {result['peak_rss_mib']:13.0f}")
            if on_gpu:
                line += f" {result['peak_cuda_mib']:14.0f}"
            print(line, flush=True)
        ours, reference = results["glow"], results["reference"]
        print(f"{preset:7} ratio glow/reference: train {ours['train_images_per_second'] / reference['train_images_per_second']:.2f}x, "
              f"sample {ours['sample_images_per_second'] / reference['sample_images_per_second']:.2f}x, "
              f"peak RSS {ours['peak_rss_mib'] / reference['peak_rss_mib']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
