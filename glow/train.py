"""Training loop for the flows: Adam with warmup and clipping, held-out bits per dimension,
atomic checkpoints that resume bit-for-bit, and sample grids along the way."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glow.config import FlowConfig, build_model, choose_device, move_to_device
from glow.grid import save_grid
from glow.likelihood import as_image_batch, batch_bits_per_dim, bits_per_dim
from glow.models import MultiScaleFlow
from glow.operations import sample

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "glow-checkpoint/1"
LATEST_NAME = "latest.pt"
BEST_NAME = "best.pt"
GRID_COUNT = 16
GRID_COLUMNS = 8
# Fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"steps", "eval_every", "checkpoint_every", "temperature"}


class NonFiniteError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; no checkpoint was written for it."""


@dataclass
class ProgressEvent:
    """One training step, reported to ``on_progress``.

    ``loss`` is the batch's mean bits per dimension (the objective), ``train_bpd`` the mean
    of that loss since the previous evaluation, and ``heldout_bpd`` is set only on steps
    where the held-out images were evaluated (step 0 and every ``eval_every`` steps).
    """

    step: int
    total: int
    loss: float | None
    train_bpd: float | None
    heldout_bpd: float | None
    elapsed_seconds: float
    images_per_second: float | None


@dataclass
class TrainResult:
    """Outcome of a ``train`` call: metrics at each evaluation, files written and the trained model.

    ``final_heldout_bpd`` is the latest evaluation; ``best_heldout_bpd`` the lowest, reached
    at ``best_step`` and saved in ``best.pt`` (loadable with ``load_checkpoint``).
    """

    metrics: list[dict[str, Any]]
    checkpoints: list[Path]
    sample_grids: list[Path]
    initial_heldout_bpd: float | None
    final_heldout_bpd: float | None
    best_heldout_bpd: float | None
    best_step: int | None
    steps_done: int
    interrupted: bool
    elapsed_seconds: float
    images_per_second: float | None
    model: MultiScaleFlow | None = field(default=None, repr=False)


def _images_fingerprint(images: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(str(images.shape).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


def _capture_rng_states() -> dict[str, Any]:
    """Global RNG states as plain types and tensors, so checkpoints load with weights_only=True."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _atomic_save(state: dict[str, Any], path: Path) -> None:
    """Write with torch.save to a temporary file, then rename it over ``path``."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _point_latest(checkpoint: Path) -> Path:
    """Make ``latest.pt`` next to the checkpoint the same file: a hard link, or a copy where links fail."""
    latest = checkpoint.with_name(LATEST_NAME)
    temporary = latest.with_name(latest.name + ".tmp")
    temporary.unlink(missing_ok=True)
    try:
        try:
            os.link(checkpoint, temporary)
        except OSError:
            shutil.copyfile(checkpoint, temporary)
        os.replace(temporary, latest)
    finally:
        temporary.unlink(missing_ok=True)
    return latest


def _display_images(images: np.ndarray, n_bits: int) -> np.ndarray:
    """Rescale n-bit images to 8 bits for a PNG grid."""
    if n_bits == 8:
        return images.astype(np.uint8)
    if n_bits < 8:
        return (images.astype(np.uint16) << (8 - n_bits)).astype(np.uint8)
    return (images >> (n_bits - 8)).astype(np.uint8)


def load_checkpoint(path: Path | str, device: torch.device | str | None = None) -> tuple[MultiScaleFlow, FlowConfig]:
    """Load a training checkpoint (or ``latest.pt``) as an eval-mode model and its config."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a glow checkpoint (format {state.get('format')!r})")
    config = FlowConfig.from_dict(state["config"])
    model = build_model(config)
    model.load_state_dict(state["model"])
    model = move_to_device(model, device if isinstance(device, torch.device) else choose_device(device))
    model.eval()
    return model, config


class _BatchSampler:
    """Draws training indices epoch by epoch from a seeded generator; its state is checkpointed."""

    def __init__(self, count: int, generator: torch.Generator) -> None:
        self.count = count
        self.generator = generator
        self.order = torch.randperm(count, generator=generator)
        self.position = 0

    def next(self, batch_size: int) -> torch.Tensor:
        pieces: list[torch.Tensor] = []
        needed = batch_size
        while needed > 0:
            if self.position >= self.count:
                self.order = torch.randperm(self.count, generator=self.generator)
                self.position = 0
            taken = self.order[self.position : self.position + needed]
            self.position += len(taken)
            needed -= len(taken)
            pieces.append(taken)
        return torch.cat(pieces)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])


def _check_resumable(saved: FlowConfig, requested: FlowConfig) -> None:
    differing = [name for name, value in requested.to_dict().items()
                 if name not in RESUMABLE_CHANGES and saved.to_dict()[name] != value]
    if differing:
        raise ValueError(f"cannot resume: config fields differ from the checkpoint's: {', '.join(differing)}")


def _prepare_images(images: np.ndarray, config: FlowConfig, role: str) -> np.ndarray:
    array = as_image_batch(images, config.n_bits)
    expected = (config.channels, config.image_size, config.image_size)
    if tuple(array.shape[1:]) != expected:
        raise ValueError(f"{role} images have shape {array.shape[1:]}, the config expects {expected}")
    return array


class _TrainingRun:
    """The mutable state of one training run and the steps that change it."""

    def __init__(self, config: FlowConfig, train_array: np.ndarray, heldout_array: np.ndarray | None,
                 out_dir: Path, device: torch.device) -> None:
        self.config = config
        self.out_dir = out_dir
        self.heldout_array = heldout_array
        self.train_count = len(train_array)
        self.fingerprint = _images_fingerprint(train_array)

        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
        self.model = move_to_device(build_model(config), device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self.sampler = _BatchSampler(self.train_count, torch.Generator().manual_seed(config.seed))
        storage_dtype = torch.uint8 if config.n_bits <= 8 else torch.int32
        self.train_bins = torch.from_numpy(train_array.astype(np.int32)).to(storage_dtype).to(device)

        self.step = 0
        self.metrics: list[dict[str, Any]] = []
        self.checkpoints: list[Path] = []
        self.grids: list[Path] = []
        self.initial_heldout: float | None = None
        self.best_heldout: float | None = None
        self.best_step: int | None = None

    @property
    def latest(self) -> Path:
        return self.out_dir / LATEST_NAME

    def restore(self) -> None:
        """Load the state saved in ``latest.pt``; raise ValueError if it belongs to another run."""
        state = torch.load(self.latest, map_location="cpu", weights_only=True)
        _check_resumable(FlowConfig.from_dict(state["config"]), self.config)
        if state["train_fingerprint"] != self.fingerprint:
            raise ValueError(f"cannot resume from {self.latest}: the training images differ from the ones it was trained on")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        _restore_rng_states(state["rng"])
        self.metrics = list(state["metrics"])
        self.checkpoints = [self.out_dir / name for name in state["checkpoints"]]
        self.grids = [self.out_dir / name for name in state["sample_grids"]]
        self.initial_heldout = state["initial_heldout_bpd"]
        self.best_heldout = state["best_heldout_bpd"]
        self.best_step = state["best_step"]
        self.step = int(state["step"])

    def initialize(self) -> None:
        """Run ActNorm's data-dependent initialisation on training images, never held-out ones."""
        indices = self.sampler.next(min(self.train_count, 4 * self.config.batch_size))
        with torch.no_grad():
            batch_bits_per_dim(self.model, self.train_bins[indices].float(), self.config.n_bits, None, self.sampler.generator)

    def evaluate(self) -> float | None:
        """Measure held-out bits per dimension with fixed noise, and keep ``best.pt`` up to date."""
        if self.heldout_array is None:
            return None
        config = self.config
        heldout = bits_per_dim(self.model, self.heldout_array, config.n_bits, batch_size=config.batch_size, seed=config.seed + 1)
        if self.best_heldout is None or heldout < self.best_heldout:
            self.best_heldout, self.best_step = heldout, self.step
            best = {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "step": self.step,
                    "model": self.model.state_dict(), "heldout_bpd": heldout}
            _atomic_save(best, self.out_dir / BEST_NAME)
        return heldout

    def train_step(self) -> float:
        """Run one optimizer step and return its loss; raise NonFiniteError before a bad update."""
        config = self.config
        self.step += 1
        indices = self.sampler.next(config.batch_size)
        bins = self.train_bins[indices].float()
        loss = batch_bits_per_dim(self.model, bins, config.n_bits, None, self.sampler.generator).mean()
        loss_value = float(loss.detach())
        if not np.isfinite(loss_value):
            raise NonFiniteError(f"loss became {loss_value} at step {self.step}; latest good checkpoint: {self._latest_label()}")

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gradient_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm))
        if not np.isfinite(gradient_norm):
            raise NonFiniteError(f"gradient norm became {gradient_norm} at step {self.step}; latest good checkpoint: {self._latest_label()}")

        warmup = min(1.0, self.step / config.warmup_steps) if config.warmup_steps > 0 else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = config.learning_rate * warmup
        self.optimizer.step()
        return loss_value

    def _latest_label(self) -> str:
        return str(self.latest) if self.latest.exists() else "none"

    def write_checkpoint(self) -> None:
        """Save the full training state for this step, point ``latest.pt`` at it, and draw a sample grid."""
        path = self.out_dir / f"checkpoint-{self.step}.pt"
        grid_path = self.out_dir / f"samples-{self.step}.png"
        if path not in self.checkpoints:
            self.checkpoints.append(path)
        if grid_path not in self.grids:
            self.grids.append(grid_path)
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": _capture_rng_states(),
            "metrics": self.metrics,
            # File names only, so a run folder can be moved and still resumed.
            "checkpoints": [item.name for item in self.checkpoints],
            "sample_grids": [item.name for item in self.grids],
            "initial_heldout_bpd": self.initial_heldout,
            "best_heldout_bpd": self.best_heldout,
            "best_step": self.best_step,
            "train_fingerprint": self.fingerprint,
            "train_count": self.train_count,
        }
        _atomic_save(state, path)
        _point_latest(path)

        config = self.config
        generated = sample(self.model, GRID_COUNT, config.temperature, seed=config.seed, n_bits=config.n_bits)
        save_grid(_display_images(generated.images, config.n_bits), grid_path, columns=GRID_COLUMNS)
        logger.info("wrote %s and %s", path, grid_path)


def train(
    config: FlowConfig,
    train_images: np.ndarray,
    heldout_images: np.ndarray,
    out_dir: Path,
    resume: bool = False,
    device: torch.device | str | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a flow on integer images (N, C, H, W) with values below 2**config.n_bits.

    Held-out bits per dimension are measured at step 0 (after ActNorm initialisation on a
    training batch), every ``eval_every`` steps and at the end. The weights with the lowest
    held-out value so far go to ``out_dir/best.pt``. Every ``checkpoint_every`` steps, at the end and
    when ``stop_requested()`` returns True, the full training state goes to
    ``out_dir/checkpoint-<step>.pt`` (``latest.pt`` is the same file) and a grid of samples
    to ``out_dir/samples-<step>.png``. With ``resume=True`` training continues from
    ``latest.pt`` if it exists and ends with the same weights as an uninterrupted run.

    Raises NonFiniteError if the loss or gradient norm is NaN or infinite; the checkpoints
    already written are left untouched.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = device if isinstance(device, torch.device) else choose_device(device)
    train_array = _prepare_images(train_images, config, "training")
    heldout_array = _prepare_images(heldout_images, config, "held-out") if len(heldout_images) else None
    if len(train_array) == 0:
        raise ValueError("train needs at least one training image")
    run = _TrainingRun(config, train_array, heldout_array, out_dir, device)

    if resume and run.latest.exists():
        run.restore()
        logger.info("resumed training from %s at step %d of %d", run.latest, run.step, config.steps)
    else:
        if resume:
            logger.info("no checkpoint at %s; starting training from step 0", run.latest)
        run.initialize()
        run.initial_heldout = run.evaluate()
        run.metrics.append({"step": 0, "loss": None, "train_bpd": None, "heldout_bpd": run.initial_heldout})
        logger.info("step 0: held-out %s bits/dim before training", run.initial_heldout)
        if on_progress is not None:
            on_progress(ProgressEvent(0, config.steps, None, None, run.initial_heldout, 0.0, None))

    start_step = run.step
    started = time.perf_counter()
    train_seconds = 0.0
    window: list[float] = []
    checkpointed_step = start_step if start_step > 0 else None
    interrupted = False
    run.model.train()

    while run.step < config.steps:
        step_started = time.perf_counter()
        loss = run.train_step()
        train_seconds += time.perf_counter() - step_started
        window.append(loss)
        step = run.step

        heldout = None
        train_bpd = float(np.mean(window))
        if step % config.eval_every == 0 or step == config.steps:
            heldout = run.evaluate()
            run.metrics.append({"step": step, "loss": loss, "train_bpd": train_bpd, "heldout_bpd": heldout})
            logger.info("step %d/%d: train %.4f, held-out %s bits/dim", step, config.steps, train_bpd, heldout)
            window = []
        if on_progress is not None:
            rate = (step - start_step) * config.batch_size / train_seconds if train_seconds > 0 else None
            on_progress(ProgressEvent(step, config.steps, loss, train_bpd, heldout, time.perf_counter() - started, rate))

        if step % config.checkpoint_every == 0 or step == config.steps:
            run.write_checkpoint()
            checkpointed_step = step
        if stop_requested is not None and step < config.steps and stop_requested():
            if checkpointed_step != step:
                run.write_checkpoint()
            interrupted = True
            logger.info("training stopped on request at step %d of %d", step, config.steps)
            break

    if run.step == 0 and not run.checkpoints:
        run.write_checkpoint()
    run.model.eval()
    evaluated = [entry["heldout_bpd"] for entry in run.metrics if entry["heldout_bpd"] is not None]
    return TrainResult(
        metrics=run.metrics,
        checkpoints=run.checkpoints,
        sample_grids=run.grids,
        initial_heldout_bpd=run.initial_heldout,
        final_heldout_bpd=evaluated[-1] if evaluated else None,
        best_heldout_bpd=run.best_heldout,
        best_step=run.best_step,
        steps_done=run.step,
        interrupted=interrupted,
        elapsed_seconds=time.perf_counter() - started,
        images_per_second=(run.step - start_step) * config.batch_size / train_seconds if train_seconds > 0 else None,
        model=run.model,
    )
