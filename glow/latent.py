"""Latent files: every level's latent of one image in a single NumPy ``.npz`` file.

The file contains arrays ``level_0`` ... ``level_k`` (the factored halves from the largest
level down, then the top latent), stored with their dtype so the round trip is exact, and
``meta``, a JSON string. It loads with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATENT_FORMAT = "glow-latent/1"


def _as_array(latent: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(latent, torch.Tensor):
        return latent.detach().cpu().numpy()
    return np.asarray(latent)


def save_latent(path: Path | str, latents: list[torch.Tensor] | list[np.ndarray], meta: dict[str, Any] | None = None) -> Path:
    """Write one image's latents (one array per level) and JSON-serialisable ``meta``.

    The file is written at ``path`` exactly (no suffix is added), through a temporary file
    that is renamed into place. Raises ValueError for an empty latent list.
    """
    if len(latents) == 0:
        raise ValueError("save_latent needs at least one latent array")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"level_{index}": _as_array(latent) for index, latent in enumerate(latents)}
    header = {"format": LATENT_FORMAT, "levels": len(latents), "meta": meta or {}}
    arrays["meta"] = np.array(json.dumps(header))

    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    os.replace(temporary, path)
    return path


def load_latent(path: Path | str) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Read a file written by ``save_latent``; return (latents in level order, meta)."""
    with np.load(Path(path), allow_pickle=False) as archive:
        if "meta" not in archive.files:
            raise ValueError(f"{path} is not a latent file: it has no 'meta' entry")
        header = json.loads(str(archive["meta"]))
        if header.get("format") != LATENT_FORMAT:
            raise ValueError(f"{path} has latent format {header.get('format')!r}, expected {LATENT_FORMAT!r}")
        latents = [archive[f"level_{index}"] for index in range(header["levels"])]
    return latents, header["meta"]
