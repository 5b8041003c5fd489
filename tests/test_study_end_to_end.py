"""`curator study` end to end on a few real mini-DDSM films with the smallest settings."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from curator.db import Catalog
from curator.models import Evaluation, Generator, Image, Job
from curator.settings import Settings
from curator.study import StudyOptions, StudyPreset, Study, detect_kind

TINY_FLOW = {"image_size": 16, "levels": 2, "steps_per_level": 2, "hidden_channels": 8, "batch_size": 4, "steps": 3,
             "eval_every": 3, "checkpoint_every": 3, "warmup_steps": 1}
TINY = StudyPreset(name="tiny", glow_preset="small", glow_overrides=TINY_FLOW, epochs=1, image_size=32, seeds=2, batch_size=8,
                   synthetic_per_class=3, test_fraction=0.25, val_fraction=0.25, interpolation_steps=2, realism_count=None,
                   alpha=0.35, run_eagerly=True)


def _small_copy(mammo_sample: Path, target: Path) -> Path:
    """Copy six patients of each of Normal and Cancer (with their side files) into a new folder."""
    for label, cases in (("Normal", ("0002", "0003", "0005", "0006", "0009", "0011")), ("Cancer", ("0001", "0002", "0003", "0004", "0005", "0006"))):
        for case in cases:
            shutil.copytree(mammo_sample / label / case, target / label / case)
    return target


@pytest.mark.slow
def test_study_stages_and_rerun(tmp_path, mammo_sample):
    data = _small_copy(mammo_sample, tmp_path / "mini")
    settings = Settings.resolve(tmp_path / "home", None)
    catalog = Catalog(settings.database_url)
    options = StudyOptions(data_dir=data, preset=TINY, weights="none", out_dir=tmp_path / "report", device="cpu")
    assert detect_kind(data) == "mini-ddsm"

    first = Study(catalog, settings, options).run()

    expected = {"import", "detect", "bias", "split", "evaluate:baseline", "evaluate:sample", "evaluate:interpolation",
                "evaluate:ball", "evaluate:manipulation"}
    assert expected <= set(first.ran)
    assert any(stage.startswith("train:") for stage in first.ran)
    assert any(stage.startswith("generate-manipulation") for stage in first.ran)
    assert any(stage.startswith("realism:") for stage in first.ran)
    assert any(stage.startswith("memorisation:") for stage in first.ran)
    assert first.skipped == []

    report = first.report.read_text()
    assert first.report == tmp_path / "report" / "report.md"
    for heading in ("## Dataset", "## Marking bias", "## Generators", "## Classifier accuracy", "## Realism and memorisation", "## Caveats"):
        assert heading in report
    assert (tmp_path / "report" / "accuracy.png").stat().st_size > 5000
    assert (tmp_path / "report" / "bias.png").exists()

    with catalog.session() as session:
        total = session.scalar(select(func.count(Image.id)).where(Image.origin == "original"))
        baseline = session.scalars(select(Evaluation).where(Evaluation.kind == "classifier").order_by(Evaluation.id)).first()
        generators = session.scalar(select(func.count(Generator.id)))
        synthetic = session.scalar(select(func.count(Image.id)).where(Image.origin == "synthetic"))
    assert total == 48
    assert "48 catalogued images" in report
    assert generators == 3
    assert synthetic > 0
    # The baseline row's accuracy, as the report prints it, comes from the catalog.
    accuracy = baseline.metrics["summary"]["accuracy"]
    half = 100 * (accuracy["high"] - accuracy["low"]) / 2
    assert re.search(rf"\| baseline \| {baseline.id} \| .*\| {100 * accuracy['mean']:.1f} ± {half:.1f} \|", report)

    with catalog.session() as session:
        jobs_before = session.scalar(select(func.count(Job.id)))
    second = Study(catalog, settings, options).run()
    assert second.ran == []
    assert set(second.skipped) == set(first.ran)
    with catalog.session() as session:
        evaluations = session.scalar(select(func.count(Evaluation.id)))
        jobs_after = session.scalar(select(func.count(Job.id)))
    assert jobs_after == jobs_before
    assert evaluations == len([stage for stage in first.ran if stage.startswith(("evaluate:", "realism:", "memorisation:"))])
    catalog.dispose()
