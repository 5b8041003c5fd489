"""Query latency on a catalog of generated rows, against hand-written SQL run in the same session.

Fills a fresh catalog (SQLite, and PostgreSQL when reachable) with ``--rows`` synthetic image
rows, then times three curator queries the way the TUI and ``curator query`` run them: parse the
words, compile them, count the matches and fetch the first page of 50 ids. The baseline is the
equivalent SQL typed by hand, executed on the same connection. Prints the median and 95th
percentile in milliseconds and the ratio to the baseline; the target is a median under 20 ms on
SQLite.

    python bench/bench_query.py [--rows 1000000] [--repeat 50] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, text

QUERIES = {
    "cancer CC-left synthetic manipulated": "label = 'cancer' AND view = 'CC' AND side = 'LEFT' AND origin = 'synthetic' AND method = 'manipulation'",
    "normal MLO marked": "label = 'normal' AND view = 'MLO' AND marking = 'marked'",
    "benign right -synthetic": "label = 'benign' AND side = 'RIGHT' AND origin <> 'synthetic'",
}
PAGE = 50


def fill(engine, rows: int, seed: int = 0) -> None:
    """Insert ``rows`` random image rows in bulk."""
    rng = np.random.default_rng(seed)
    labels = np.array(["normal", "benign", "cancer"])[rng.integers(0, 3, rows)]
    views = np.array(["CC", "MLO"])[rng.integers(0, 2, rows)]
    sides = np.array(["LEFT", "RIGHT"])[rng.integers(0, 2, rows)]
    origin_index = rng.choice(3, rows, p=[0.2, 0.7, 0.1])
    origins = np.array(["original", "synthetic", "derived"])[origin_index]
    synthetic_methods = np.array(["sample", "interpolation", "ball", "manipulation"])[rng.integers(0, 4, rows)]
    methods = np.where(origin_index == 1, synthetic_methods, np.where(origin_index == 2, "cleaned", None))
    detected = rng.random(rows) < 0.3
    verdict = np.where(rng.random(rows) < 0.05, rng.random(rows) < 0.5, None)
    batch = 50_000
    columns = "sha256, file_path, file_size, width, height, bit_depth, file_format, dataset, patient_key, label, view, side, origin, method, params, extra, marking_verdict, marking_detected, marking_score, marking, created_at"
    statement = text(
        f"INSERT INTO images ({columns}) VALUES (:sha256, :file_path, 1000, 128, 128, 8, 'png', 'bench', :patient, :label, :view, :side, :origin, :method, '{{}}', '{{}}', :verdict, :detected, :score, :marking, CURRENT_TIMESTAMP)"
    )
    with engine.begin() as connection:
        for start in range(0, rows, batch):
            stop = min(rows, start + batch)
            connection.execute(statement, [
                {
                    "sha256": uuid.UUID(int=index).hex.ljust(64, "0"), "file_path": f"/bench/{index}.png", "patient": f"bench:{index // 4}",
                    "label": str(labels[index]), "view": str(views[index]), "side": str(sides[index]), "origin": str(origins[index]),
                    "method": methods[index], "verdict": verdict[index], "detected": bool(detected[index]), "score": float(detected[index]),
                    "marking": "marked" if (verdict[index] if verdict[index] is not None else detected[index]) else "unmarked",
                }
                for index in range(start, stop)
            ])
    # PostgreSQL counts from the index alone only once VACUUM has set the visibility map,
    # as autovacuum does soon after a bulk load in a real catalog.
    statement = "VACUUM ANALYZE images" if engine.dialect.name == "postgresql" else "ANALYZE"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(statement))


def time_curator(catalog, words: str, repeat: int) -> list[float]:
    """Milliseconds per run of parse + count + first page through curator's query layer."""
    from curator.models import Image
    from curator.query import parse

    timings = []
    with catalog.session() as session:
        for _ in range(repeat):
            started = time.perf_counter()
            condition = parse(words).where()
            session.scalar(select(func.count(Image.id)).where(condition))
            list(session.scalars(select(Image.id).where(condition).order_by(Image.id).limit(PAGE)))
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def time_baseline(engine, where: str, repeat: int) -> list[float]:
    """Milliseconds per run of the same count and page written as plain SQL."""
    timings = []
    with engine.connect() as connection:
        for _ in range(repeat):
            started = time.perf_counter()
            connection.execute(text(f"SELECT count(id) FROM images WHERE {where}")).scalar()
            connection.execute(text(f"SELECT id FROM images WHERE {where} ORDER BY id LIMIT {PAGE}")).all()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def run(url: str, rows: int, repeat: int, name: str) -> None:
    from curator.db import Catalog

    catalog = Catalog(url)
    started = time.perf_counter()
    fill(catalog.engine, rows)
    print(f"\n{name}: {rows:,} rows generated in {time.perf_counter() - started:.0f} s")
    for words, where in QUERIES.items():
        # Warm the page cache and the statement caches once before timing.
        time_curator(catalog, words, 2)
        time_baseline(catalog.engine, where, 2)
        mine = time_curator(catalog, words, repeat)
        base = time_baseline(catalog.engine, where, repeat)
        median, base_median = statistics.median(mine), statistics.median(base)
        p95 = sorted(mine)[int(0.95 * (len(mine) - 1))]
        print(f"  {words!r:42} median {median:7.2f} ms  p95 {p95:7.2f} ms  hand-written SQL {base_median:7.2f} ms  ratio {median / base_median:5.2f}")
    catalog.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test", help="server to create a scratch database on")
    parser.add_argument("--no-postgres", action="store_true")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        run(f"sqlite:///{Path(folder) / 'bench.db'}", arguments.rows, arguments.repeat, "SQLite")

    if arguments.no_postgres:
        return
    try:
        import psycopg

        admin = arguments.postgres.replace("+psycopg", "")
        name = f"curator_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except Exception as error:  # noqa: BLE001 - any failure means there is no server to measure
        print(f"\nPostgreSQL skipped: {str(error).splitlines()[0]}")
        return
    from sqlalchemy.engine import make_url

    try:
        run(make_url(arguments.postgres).set(database=name).render_as_string(hide_password=False), arguments.rows, arguments.repeat, "PostgreSQL")
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
