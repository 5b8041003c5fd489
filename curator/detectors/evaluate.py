"""Scores the marking detector and the geometry checks against a hand-labelled manifest.

A manifest is a CSV with columns path (relative to the manifest's folder), view,
side, source and has_white_marking (yes/no), as in the test data. The same function
backs `bench/detector_eval.py` and the CLI's evaluation command.
"""

from __future__ import annotations

import csv
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from curator.detectors.breast import SATURATED_LEVEL, load_for_detection
from curator.detectors.geometry import check_geometry, ddsm_scanner
from curator.detectors.markings import (
    DEFAULT_THRESHOLD,
    DETECTOR_NAME,
    DETECTOR_VERSION,
    MarkingParams,
    detect_markings,
)

REQUIRED_COLUMNS = ("path", "has_white_marking")


def dataset_from_row(row: dict[str, str]) -> str:
    """Return 'mias' or 'mini-ddsm' for a manifest row, from its source text or file suffix."""
    source = row.get("source", "").lower()
    if "mias" in source or row["path"].lower().endswith(".pgm"):
        return "mias"
    return "mini-ddsm"


def _evaluate_one(task: tuple[str, dict[str, str], float, MarkingParams]) -> dict[str, Any]:
    """Run both detectors on one manifest row (in a worker process)."""
    image_path, row, threshold, params = task
    started = time.perf_counter()
    work, full_shape = load_for_detection(image_path, params.working_size)
    marking = detect_markings(work, threshold, params, full_shape=full_shape)

    dataset = dataset_from_row(row)
    scanner = ddsm_scanner(Path(row["path"]).name) if dataset == "mini-ddsm" else None
    geometry = check_geometry(work, row.get("side") or None, row.get("view") or None, dataset, scanner)
    seconds = time.perf_counter() - started

    return {
        "path": row["path"],
        "expected_marked": row["has_white_marking"].strip().lower() == "yes",
        "score": marking.score,
        "marked": marking.marked,
        "boxes": [list(box) for box in marking.boxes],
        "saturated_fraction": float(np.mean(work >= SATURATED_LEVEL)),
        "dataset": dataset,
        "side": row.get("side"),
        "view": row.get("view"),
        "chest_wall": geometry.chest_wall,
        "expected_chest_wall": geometry.expected_chest_wall,
        "side_agrees": geometry.side_agrees,
        "view_guess": geometry.view_guess,
        "view_score": geometry.view_score,
        "view_agrees": geometry.view_agrees,
        "seconds": seconds,
    }


def _init_worker() -> None:
    # Each worker is one process, so OpenCV's own threads would only compete with the other workers.
    cv2.setNumThreads(1)


def confusion(expected: list[bool], predicted: list[bool]) -> dict[str, Any]:
    """Return TP, FP, FN, TN, precision and recall; precision or recall is None when undefined."""
    tp = sum(e and p for e, p in zip(expected, predicted))
    fp = sum(p and not e for e, p in zip(expected, predicted))
    fn = sum(e and not p for e, p in zip(expected, predicted))
    tn = sum(not e and not p for e, p in zip(expected, predicted))
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
    }


def evaluate_manifest(
    manifest_path: str | Path,
    threshold: float = DEFAULT_THRESHOLD,
    processes: int = 2,
    params: MarkingParams | None = None,
) -> dict[str, Any]:
    """Run the marking detector and geometry checks on every image of a manifest and score them.

    Returns a dict with the confusion counts (tp, fp, fn, tn, precision, recall),
    `misclassified` (path, expected, score), `geometry` (disagreement counts and the
    files behind them), `seconds_per_image` (decoding included, per worker) and
    `results`, one record per image. `processes=1` runs in this process.
    """
    manifest_path = Path(manifest_path)
    params = params or MarkingParams()
    with manifest_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows:
        missing = [column for column in REQUIRED_COLUMNS if column not in rows[0]]
        if missing:
            raise ValueError(
                f"manifest {manifest_path} is missing column(s) {', '.join(missing)}."
                f" It needs at least {', '.join(REQUIRED_COLUMNS)}"
            )

    tasks = [(str(manifest_path.parent / row["path"]), row, threshold, params) for row in rows]
    started = time.perf_counter()
    if processes > 1 and len(tasks) > 1:
        # spawn, not fork, so no worker inherits OpenCV's thread-pool state from this process.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(processes, mp_context=context, initializer=_init_worker) as pool:
            results = list(pool.map(_evaluate_one, tasks, chunksize=4))
    else:
        results = [_evaluate_one(task) for task in tasks]
    wall_seconds = time.perf_counter() - started

    counts = confusion(
        [record["expected_marked"] for record in results], [record["marked"] for record in results]
    )
    side_checked = [record for record in results if record["side_agrees"] is not None]
    view_checked = [record for record in results if record["view_agrees"] is not None]
    return {
        "manifest": str(manifest_path),
        "detector": DETECTOR_NAME,
        "version": DETECTOR_VERSION,
        "threshold": threshold,
        "params": params.to_dict(),
        "images": len(results),
        **counts,
        "misclassified": [
            {"path": record["path"], "expected": record["expected_marked"], "score": record["score"]}
            for record in results
            if record["expected_marked"] != record["marked"]
        ],
        "geometry": {
            "side_checked": len(side_checked),
            "side_disagreements": [
                record["path"] for record in side_checked if not record["side_agrees"]
            ],
            "view_checked": len(view_checked),
            "view_disagreements": [
                record["path"] for record in view_checked if not record["view_agrees"]
            ],
        },
        "seconds_per_image": float(np.mean([record["seconds"] for record in results])) if results else 0.0,
        "wall_seconds": wall_seconds,
        "results": results,
    }
