"""The training loop in glow.train: checkpoints, exact resumption, NaN stops, interruption, real data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import glow.train as training
from glow.config import FlowConfig
from glow.likelihood import bits_per_dim
from glow.train import NonFiniteError, ProgressEvent, load_checkpoint, train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY = FlowConfig(
    image_size=8,
    levels=2,
    steps_per_level=1,
    hidden_channels=4,
    batch_size=4,
    learning_rate=5e-3,
    warmup_steps=2,
    steps=6,
    eval_every=3,
    checkpoint_every=3,
    seed=7,
)


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(0)
    # Smooth blobs on a dark background, so there is structure to learn.
    rows, columns = np.mgrid[0:8, 0:8]
    centres = generator.uniform(2, 6, (14, 2))
    blobs = np.exp(-((rows - centres[:, :1, None]) ** 2 + (columns - centres[:, 1:, None]) ** 2) / 6.0)
    data = (blobs * 200 + generator.integers(0, 20, blobs.shape)).astype(np.uint8)[:, None]
    return data[:10], data[10:]


def test_train_writes_checkpoints_grids_and_metrics(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    result = train(TINY, images[0], images[1], tmp_path)

    assert result.steps_done == 6
    assert not result.interrupted
    assert result.checkpoints == [tmp_path / "checkpoint-3.pt", tmp_path / "checkpoint-6.pt"]
    assert result.sample_grids == [tmp_path / "samples-3.png", tmp_path / "samples-6.png"]
    assert all(path.exists() for path in result.checkpoints + result.sample_grids)
    assert (tmp_path / "latest.pt").read_bytes() == (tmp_path / "checkpoint-6.pt").read_bytes()
    assert [entry["step"] for entry in result.metrics] == [0, 3, 6]
    assert result.metrics[0]["heldout_bpd"] == result.initial_heldout_bpd
    assert result.metrics[-1]["heldout_bpd"] == result.final_heldout_bpd
    assert result.final_heldout_bpd < result.initial_heldout_bpd
    assert result.best_heldout_bpd == min(entry["heldout_bpd"] for entry in result.metrics)
    assert result.metrics[[entry["step"] for entry in result.metrics].index(result.best_step)]["heldout_bpd"] == result.best_heldout_bpd
    assert not list(tmp_path.glob("*.tmp"))
    with Image.open(result.sample_grids[0]) as grid:
        assert grid.size == (8 * 8 + 7 * 2, 2 * 8 + 2)


def test_best_checkpoint_has_lowest_heldout(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    result = train(TINY, images[0], images[1], tmp_path)

    best_model, best_config = load_checkpoint(tmp_path / "best.pt")
    measured = bits_per_dim(best_model, images[1], seed=TINY.seed + 1, batch_size=TINY.batch_size)

    assert best_config == TINY
    assert measured == pytest.approx(result.best_heldout_bpd, abs=1e-5)


def test_progress_reports_every_step(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    events: list[ProgressEvent] = []

    train(TINY, images[0], images[1], tmp_path, on_progress=events.append)

    assert [event.step for event in events] == [0, 1, 2, 3, 4, 5, 6]
    assert all(event.total == 6 for event in events)
    assert [event.heldout_bpd is not None for event in events] == [True, False, False, True, False, False, True]
    assert events[0].loss is None
    assert all(math.isfinite(event.loss) for event in events[1:])
    assert events[-1].images_per_second > 0


def test_warmup_scales_learning_rate(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    config = TINY.replace(warmup_steps=10, steps=3)

    train(config, images[0], images[1], tmp_path)
    state = torch.load(tmp_path / "checkpoint-3.pt", weights_only=True)

    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(config.learning_rate * 3 / 10)


def test_resume_reaches_same_weights_as_uninterrupted(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    config = TINY.replace(steps=8, checkpoint_every=3)
    uninterrupted = train(config, images[0], images[1], tmp_path / "straight")

    # Stop after step 4, between checkpoints, so the stop itself writes checkpoint-4.
    checks: list[int] = []

    def stop_after_step_4() -> bool:
        checks.append(1)
        return len(checks) == 4

    first = train(config, images[0], images[1], tmp_path / "resumed", stop_requested=stop_after_step_4)
    torch.manual_seed(12345)  # disturb the global generators between the two halves
    np.random.seed(54321)
    second = train(config, images[0], images[1], tmp_path / "resumed", resume=True)

    assert first.interrupted
    assert first.steps_done == 4
    assert (tmp_path / "resumed" / "checkpoint-4.pt").exists()
    assert second.steps_done == 8
    straight_state = uninterrupted.model.state_dict()
    resumed_state = second.model.state_dict()
    assert straight_state.keys() == resumed_state.keys()
    for name in straight_state:
        assert torch.equal(straight_state[name], resumed_state[name]), name
    assert second.final_heldout_bpd == uninterrupted.final_heldout_bpd
    assert second.initial_heldout_bpd == uninterrupted.initial_heldout_bpd
    assert [entry["step"] for entry in second.metrics] == [0, 3, 6, 8]


def test_stop_request_writes_checkpoint_and_returns(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    checks: list[int] = []

    def stop() -> bool:
        checks.append(1)
        return len(checks) == 2

    result = train(TINY, images[0], images[1], tmp_path, stop_requested=stop)

    assert result.interrupted
    assert result.steps_done == 2
    assert result.checkpoints == [tmp_path / "checkpoint-2.pt"]
    model, config = load_checkpoint(tmp_path / "latest.pt")
    assert config == TINY
    assert not model.training


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    result = train(TINY.replace(steps=3), images[0], images[1], tmp_path, resume=True)

    assert result.steps_done == 3
    assert result.metrics[0]["step"] == 0


def test_resume_rejects_changed_architecture(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    train(TINY.replace(steps=3), images[0], images[1], tmp_path)

    with pytest.raises(ValueError, match="hidden_channels"):
        train(TINY.replace(hidden_channels=6), images[0], images[1], tmp_path, resume=True)


def test_resume_rejects_other_training_images(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    train(TINY.replace(steps=3), images[0], images[1], tmp_path)

    with pytest.raises(ValueError, match="training images differ"):
        train(TINY, images[0][::-1].copy(), images[1], tmp_path, resume=True)


def test_resume_may_extend_steps(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    train(TINY.replace(steps=3), images[0], images[1], tmp_path)

    result = train(TINY.replace(steps=6), images[0], images[1], tmp_path, resume=True)

    assert result.steps_done == 6
    assert result.checkpoints[-1] == tmp_path / "checkpoint-6.pt"


def test_resume_after_moving_run_folder(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    train(TINY.replace(steps=3), images[0], images[1], tmp_path / "before")
    (tmp_path / "before").rename(tmp_path / "after")

    result = train(TINY, images[0], images[1], tmp_path / "after", resume=True)

    assert result.checkpoints == [tmp_path / "after" / "checkpoint-3.pt", tmp_path / "after" / "checkpoint-6.pt"]
    assert all(path.exists() for path in result.sample_grids)


def test_nan_loss_raises_and_keeps_checkpoint(tmp_path: Path, images: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"count": 0}
    original = training.batch_bits_per_dim

    def poisoned(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["count"] += 1
        result = original(*args, **kwargs)
        # Call 1 initialises ActNorm; call 1 + k computes the loss of step k.
        return result * float("nan") if calls["count"] == 1 + 5 else result

    monkeypatch.setattr(training, "batch_bits_per_dim", poisoned)
    saved: dict[str, bytes] = {}

    def remember(event: ProgressEvent) -> None:
        if event.step == 4:
            saved["checkpoint"] = (tmp_path / "checkpoint-3.pt").read_bytes()

    with pytest.raises(NonFiniteError, match="at step 5") as error:
        train(TINY, images[0], images[1], tmp_path, on_progress=remember)

    assert "\n" not in str(error.value)
    assert (tmp_path / "checkpoint-3.pt").read_bytes() == saved["checkpoint"]
    assert (tmp_path / "latest.pt").read_bytes() == saved["checkpoint"]
    assert not (tmp_path / "checkpoint-5.pt").exists()
    assert not (tmp_path / "checkpoint-6.pt").exists()


class _InfiniteGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return value.clone()

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return gradient * float("inf")


def test_infinite_gradient_raises_naming_step(tmp_path: Path, images: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"count": 0}
    original = training.batch_bits_per_dim

    def poisoned(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["count"] += 1
        result = original(*args, **kwargs)
        return _InfiniteGradient.apply(result) if calls["count"] == 1 + 4 else result

    monkeypatch.setattr(training, "batch_bits_per_dim", poisoned)

    with pytest.raises(NonFiniteError, match="gradient norm became (inf|nan) at step 4"):
        train(TINY, images[0], images[1], tmp_path)

    state = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert state["step"] == 3
    assert all(torch.isfinite(value).all() for value in state["model"].values() if value.is_floating_point())


def test_keyboard_interrupt_keeps_last_checkpoint(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    def interrupt(event: ProgressEvent) -> None:
        if event.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TINY, images[0], images[1], tmp_path, on_progress=interrupt)

    assert (tmp_path / "latest.pt").read_bytes() == (tmp_path / "checkpoint-3.pt").read_bytes()
    assert not list(tmp_path.glob("*.tmp"))
    resumed = train(TINY, images[0], images[1], tmp_path, resume=True)
    assert resumed.steps_done == 6


def test_train_rejects_wrong_image_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the config expects"):
        train(TINY, np.zeros((4, 1, 16, 16), np.uint8), np.zeros((0, 1, 16, 16), np.uint8), tmp_path)


def test_train_without_heldout_images(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    result = train(TINY.replace(steps=3), images[0], np.zeros((0, 1, 8, 8), np.uint8), tmp_path)

    assert result.initial_heldout_bpd is None
    assert result.final_heldout_bpd is None
    assert result.steps_done == 3


def test_variational_training_runs_and_saves_dequantizer(tmp_path: Path, images: tuple[np.ndarray, np.ndarray]) -> None:
    config = TINY.replace(dequantization="variational", steps=3)

    result = train(config, images[0], images[1], tmp_path)
    model, _ = load_checkpoint(tmp_path / "latest.pt")

    assert math.isfinite(result.final_heldout_bpd)
    assert model.dequantizer is not None
    assert torch.equal(model.state_dict()["dequantizer.actnorm.bias"], result.model.state_dict()["dequantizer.actnorm.bias"])


def load_normals(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read the mini-DDSM normals as (N, 1, size, size) uint8: cases 0002-0009, then case 0011."""
    manifest = DATA / "mammo-sample" / "manifest.csv"
    if not manifest.exists():
        pytest.skip("the mini-DDSM sample under shared/data is not available")
    rows = [line.split(",") for line in manifest.read_text().splitlines()[1:]]
    paths = sorted(row[0] for row in rows if row[1] == "normal")
    images = {}
    for path in paths:
        with Image.open(DATA / "mammo-sample" / path) as image:
            images[path] = np.asarray(image.convert("L").resize((size, size), Image.Resampling.BOX))
    heldout = [path for path in paths if "/0011/" in path]
    training = [path for path in paths if path not in heldout]
    return np.stack([images[path] for path in training])[:, None], np.stack([images[path] for path in heldout])[:, None]


def test_training_on_real_normals_lowers_heldout_bpd(tmp_path: Path) -> None:
    # Held-out images come from a patient missing from the training images. With 20 training images the
    # held-out value falls for a few dozen steps and then rises as the flow overfits.
    train_images, heldout_images = load_normals(32)
    config = FlowConfig(
        image_size=32,
        levels=3,
        steps_per_level=2,
        hidden_channels=16,
        batch_size=8,
        learning_rate=2e-3,
        warmup_steps=20,
        steps=50,
        eval_every=10,
        checkpoint_every=50,
        seed=0,
    )

    result = train(config, train_images, heldout_images, tmp_path)

    assert (len(train_images), len(heldout_images)) == (20, 4)
    assert result.best_step > 0
    assert result.best_heldout_bpd < result.initial_heldout_bpd - 0.5
    assert result.metrics[-1]["train_bpd"] < result.initial_heldout_bpd - 1.0
