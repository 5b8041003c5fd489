"""A real MobileNetV2 evaluation through ``curator evaluate`` on the mini-DDSM sample (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from curator.cli import app
from curator.db import Catalog
from curator.models import Evaluation, Split

runner = CliRunner()
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.slow
def test_tiny_mobilenet_records_all_metrics(tmp_path: Path) -> None:
    sample = SHARED_DATA / "mammo-sample"
    if not sample.exists():
        pytest.skip(f"real sample data not found at {sample}; it sits in shared/data next to the repository")
    pytest.importorskip("tensorflow")
    home = tmp_path / "home"
    base = ["--home", str(home)]

    imported = runner.invoke(app, [*base, "import", "mini-ddsm", str(sample), "--work-size", "64", "--workers", "1"])
    assert imported.exit_code == 0, imported.output
    created = runner.invoke(app, [*base, "split", "create", "real", "--query", "normal cancer original", "--test-fraction", "0.3",
                                  "--val-fraction", "0.2", "--seed", "1"])
    assert created.exit_code == 0, created.output

    result = runner.invoke(app, [*base, "evaluate", "real", "--seeds", "1", "--weights", "none", "--epochs", "1",
                                 "--image-size", "64", "--batch-size", "16", "--json"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.output[result.output.index("{"):])
    assert outcome["status"] == "done"

    catalog = Catalog(f"sqlite:///{home / 'catalog.db'}")
    try:
        with catalog.session() as session:
            [evaluation] = session.scalars(select(Evaluation)).all()
            locked = session.scalars(select(Split.locked).where(Split.name == "real")).one()
    finally:
        catalog.dispose()
    assert locked is True
    assert evaluation.status == "done"
    assert set(evaluation.metrics["summary"]) == {"accuracy", "roc_auc", "sensitivity", "specificity"}
    [run] = evaluation.metrics["runs"]
    assert run["epochs_run"] == 1
    metrics = run["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    [[tn, fp], [fn, tp]] = metrics["confusion_matrix"]
    tested = evaluation.metrics["counts"]["test"]
    assert tn + fp == tested["negative"]
    assert fn + tp == tested["positive"]
    assert metrics["accuracy"] == pytest.approx((tn + tp) / tested["total"])
    assert len(run["scores"]) == tested["total"] == len(evaluation.metrics["test_ids"])
    assert evaluation.versions["tensorflow"]
    assert evaluation.config["image_size"] == 64
    assert Path(evaluation.metrics["learning_curves"]).is_file()
