"""Latent files written by glow.latent: exact round trip, metadata and format checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from glow.latent import load_latent, save_latent


def test_latent_round_trip_is_exact(tmp_path: Path) -> None:
    generator = np.random.default_rng(0)
    latents = [generator.standard_normal(shape).astype(np.float32) for shape in [(2, 32, 32), (4, 16, 16), (16, 8, 8)]]
    meta = {"method": "ball", "radius": 0.25, "parents": ["ab12", "cd34"], "checkpoint": "checkpoint-1500.pt"}

    path = save_latent(tmp_path / "image.latent", latents, meta)
    loaded, loaded_meta = load_latent(path)

    assert path == tmp_path / "image.latent"
    assert len(loaded) == 3
    for original, restored in zip(latents, loaded):
        assert restored.dtype == np.float32
        assert np.array_equal(original, restored)
    assert loaded_meta == meta


def test_latent_accepts_tensors(tmp_path: Path) -> None:
    latents = [torch.randn(2, 4, 4), torch.randn(8, 2, 2, dtype=torch.float64)]

    save_latent(tmp_path / "z.npz", latents)
    loaded, meta = load_latent(tmp_path / "z.npz")

    assert meta == {}
    assert np.array_equal(loaded[0], latents[0].numpy())
    assert loaded[1].dtype == np.float64
    assert np.array_equal(loaded[1], latents[1].numpy())


def test_latent_file_loads_without_pickle(tmp_path: Path) -> None:
    save_latent(tmp_path / "z.npz", [np.ones((1, 2, 2), np.float32)], {"seed": 3})

    with np.load(tmp_path / "z.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["level_0", "meta"]


def test_latent_rejects_other_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", level_0=np.zeros(3))

    with pytest.raises(ValueError, match="no 'meta' entry"):
        load_latent(tmp_path / "other.npz")


def test_latent_rejects_empty_list(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        save_latent(tmp_path / "z.npz", [])


def test_latent_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    save_latent(tmp_path / "z.npz", [np.zeros((1, 2, 2), np.float32)])

    assert [path.name for path in tmp_path.iterdir()] == ["z.npz"]
