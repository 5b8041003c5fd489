"""Import throughput against a decode-only baseline measured in the same run.

The baseline reads and decodes the same files and resizes them to the working size with the same
number of processes, storing nothing. curator's import also hashes each file, writes the PNG
derivative and inserts the catalog rows. The printed ratio is curator's images per second over
the baseline's; the target is at least 0.8.

    python bench/bench_import.py [--data ../shared/data/mammo-sample] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import cv2


def _decode_and_resize(path: str) -> tuple[int, int]:
    pixels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        return 0, 0
    small = cv2.resize(pixels, (128, 128), interpolation=cv2.INTER_AREA)
    return small.shape


def baseline(paths: list[str], workers: int) -> float:
    """Decode and resize every file in ``workers`` processes; return the seconds taken."""
    started = time.perf_counter()
    if workers <= 1:
        for path in paths:
            _decode_and_resize(path)
    else:
        with multiprocessing.get_context("forkserver").Pool(workers) as pool:
            list(pool.imap_unordered(_decode_and_resize, paths, chunksize=2))
    return time.perf_counter() - started


def curator_import(root: Path, workers: int) -> tuple[float, int]:
    """Import the folder into a fresh SQLite catalog; return the seconds taken and rows added."""
    from curator.db import Catalog
    from curator.importing import run_import
    from curator.settings import Settings
    from curator.sources import discover_mini_ddsm

    with tempfile.TemporaryDirectory() as home:
        settings = Settings.resolve(home, None)
        catalog = Catalog(settings.database_url)
        started = time.perf_counter()
        report = run_import(catalog, settings, discover_mini_ddsm(root), workers=workers)
        seconds = time.perf_counter() - started
        catalog.dispose()
    return seconds, report.imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "mammo-sample")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()

    from curator.sources import discover_mini_ddsm

    paths = [str(candidate.path) for candidate in discover_mini_ddsm(arguments.data).candidates]
    if not paths:
        raise SystemExit(f"no mini-DDSM images under {arguments.data}")
    # One untimed pass so both sides read the files from the page cache.
    baseline(paths, arguments.workers)

    baseline_rates, curator_rates = [], []
    for _ in range(arguments.repeat):
        baseline_rates.append(len(paths) / baseline(paths, arguments.workers))
        seconds, imported = curator_import(arguments.data, arguments.workers)
        curator_rates.append(imported / seconds)
    base, mine = statistics.median(baseline_rates), statistics.median(curator_rates)
    print(f"{len(paths)} images, {arguments.workers} processes, median of {arguments.repeat} runs")
    print(f"decode-only baseline: {base:7.1f} images/s")
    print(f"curator import:       {mine:7.1f} images/s")
    print(f"ratio (curator / baseline): {mine / base:.2f}  (target >= 0.80)")


if __name__ == "__main__":
    main()
