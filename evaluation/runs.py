"""Repeated classifier runs over several seeds, summarised as means with confidence intervals.

One grid cell of an augmentation study (N real plus M synthetic images) is
one call of `evaluate_seeds`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from evaluation.classifier import EvalConfig, train_and_evaluate
from evaluation.datasets import SplitArrays
from evaluation.metrics import mean_interval

SUMMARY_METRICS = ("accuracy", "roc_auc", "sensitivity", "specificity")


def evaluate_seeds(
    data: SplitArrays | Mapping[str, np.ndarray],
    config: EvalConfig,
    seeds: Sequence[int],
    on_run: Callable[[dict], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    confidence: float = 0.95,
) -> dict:
    """Train and test one classifier per seed on the same split and summarise the metrics.

    `on_run` receives {run, runs, seed, result} after each run (run counts
    from 1). `on_epoch` receives the epoch dicts of `train_and_evaluate` with
    `run` and `seed` added. When `stop_requested` returns True, the current
    run stops early and no further run starts. The summary then covers the
    finished runs, and `stopped` is True.

    Returns runs (seed, metrics, history, epochs_run, best_epoch, seconds,
    scores and counts per run), summary (`mean_interval` of accuracy,
    roc_auc, sensitivity and specificity), seeds, config, seconds and stopped.
    """
    if not seeds:
        raise ValueError("at least one seed is needed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    arrays = data if isinstance(data, SplitArrays) else SplitArrays.from_mapping(data)

    started = time.perf_counter()
    runs: list[dict] = []
    stopped = False
    for run_number, seed in enumerate(seeds, start=1):
        result = train_and_evaluate(
            arrays.train_x,
            arrays.train_y,
            arrays.val_x,
            arrays.val_y,
            arrays.test_x,
            arrays.test_y,
            config,
            seed,
            on_epoch=_tag_epochs(on_epoch, run_number, seed),
            stop_requested=stop_requested,
        )
        runs.append(
            {
                "seed": int(seed),
                "metrics": result["metrics"],
                "history": result["history"],
                "epochs_run": result["epochs_run"],
                "best_epoch": result.get("best_epoch"),
                "seconds": result["seconds"],
                "scores": result["scores"],
                "counts": result.get("counts"),
                "stop_requested": bool(result.get("stop_requested", False)),
            }
        )
        if on_run is not None:
            on_run({"run": run_number, "runs": len(seeds), "seed": int(seed), "result": result})

        # A run cut short by a stop request is kept, but no further run starts.
        # `stopped` stays False when the request came after the last run ended.
        run_was_cut = bool(result.get("stop_requested"))
        if run_was_cut or (stop_requested is not None and stop_requested()):
            stopped = run_was_cut or run_number < len(seeds)
            break

    return {
        "runs": runs,
        "summary": summarise_runs(runs, confidence),
        "seeds": [int(seed) for seed in seeds],
        "config": config.to_dict(),
        "seconds": time.perf_counter() - started,
        "stopped": stopped,
    }


def summarise_runs(runs: Sequence[dict], confidence: float = 0.95) -> dict[str, dict]:
    """Compute `mean_interval` of each summary metric over the runs' metrics."""
    return {
        name: mean_interval([run["metrics"][name] for run in runs], confidence)
        for name in SUMMARY_METRICS
    }


def _tag_epochs(
    on_epoch: Callable[[dict], None] | None, run_number: int, seed: int
) -> Callable[[dict], None] | None:
    """Wrap `on_epoch` so that each epoch dict also names its run and seed."""
    if on_epoch is None:
        return None

    def report(epoch: dict) -> None:
        on_epoch({**epoch, "run": run_number, "seed": int(seed)})

    return report
