"""Exporting a split as a class-per-folder PNG tree, a CSV manifest or NumPy arrays."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from curator.db import Catalog
from curator.export import ExportError, export_split
from curator.models import Image
from curator.settings import Settings
from curator.splits import SplitSpec, create_split
from test_splits_support import add_generator, add_image, add_patients, link, sides_of


@pytest.fixture
def split_home(sqlite_catalog: Catalog, sqlite_settings: Settings) -> tuple[Catalog, Settings, dict[int, str]]:
    """A catalog with 5 normal and 5 cancer patients (4 working PNGs each) and a split 's' with one synthetic image."""
    with sqlite_catalog.transaction() as session:
        add_patients(session, "normal", 5, settings=sqlite_settings, brightness=60)
        add_patients(session, "cancer", 5, settings=sqlite_settings, brightness=190)
    sides = create_split(sqlite_catalog, SplitSpec("probe", "normal cancer", test_fraction=0.2, val_fraction=0.25, seed=1))
    probe = sides_of(sqlite_catalog, sides.id)
    train = sorted(image_id for image_id, side in probe.items() if side == "train")
    with sqlite_catalog.transaction() as session:
        generator = add_generator(session, "glow-cancer", train=train[:2])
        synthetic = add_image(session, "cancer", origin="synthetic", method="interpolation", generator_id=generator,
                              settings=sqlite_settings, brightness=190)
        link(session, synthetic, train[0])
        link(session, synthetic, train[1], "direction_to")
    split = create_split(sqlite_catalog, SplitSpec("s", "normal cancer", test_fraction=0.2, val_fraction=0.25, seed=1,
                                                   synthetic_query="synthetic"))
    return sqlite_catalog, sqlite_settings, sides_of(sqlite_catalog, split.id)


def test_keras_layout_uses_catalog_names(split_home, tmp_path: Path) -> None:
    catalog, settings, sides = split_home
    target = tmp_path / "out"
    report = export_split(catalog, settings, "s", target, "keras")

    with catalog.session() as session:
        images = {image.id: image for image in session.scalars(select(Image))}
    files = sorted(path.relative_to(target).as_posix() for path in target.rglob("*.png"))
    expected = sorted(f"{side}/{images[i].label}/{i}-{images[i].sha256[:12]}.png" for i, side in sides.items())
    assert files == expected
    assert report.files == len(sides) + 1
    assert sum(report.counts["train"].values()) == sum(1 for side in sides.values() if side == "train")
    first = target / expected[0]
    source = settings.home / images[int(first.name.split("-")[0])].work_path
    assert first.read_bytes() == source.read_bytes()


def test_keras_manifest_lists_provenance(split_home, tmp_path: Path) -> None:
    catalog, settings, sides = split_home
    export_split(catalog, settings, "s", tmp_path / "out", "keras")
    with open(tmp_path / "out" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(sides)
    synthetic = [row for row in rows if row["origin"] == "synthetic"]
    assert len(synthetic) == 1
    assert synthetic[0]["split"] == "train"
    assert synthetic[0]["method"] == "interpolation"
    assert synthetic[0]["generator"] == "glow-cancer"
    parent, direction = synthetic[0]["parents"].split(";")
    assert parent.isdigit()
    assert direction.endswith(":direction_to")
    assert (tmp_path / "out" / synthetic[0]["path"]).is_file()
    assert {row["side"] for row in rows} == {"LEFT", "RIGHT"}


def test_csv_format_points_at_working_files(split_home, tmp_path: Path) -> None:
    catalog, settings, sides = split_home
    export_split(catalog, settings, "s", tmp_path / "out", "csv")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [".curator-export", "manifest.csv"]
    with open(tmp_path / "out" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {int(row["image_id"]): row["split"] for row in rows} == sides
    for row in rows:
        assert Path(row["path"]).is_file()
        assert Path(row["path"]).is_relative_to(settings.home)


def test_npz_holds_arrays_per_side(split_home, tmp_path: Path) -> None:
    catalog, settings, sides = split_home
    export_split(catalog, settings, "s", tmp_path / "out", "npz")
    with np.load(tmp_path / "out" / "arrays.npz") as arrays:
        assert list(arrays["class_names"]) == ["cancer", "normal"]
        for side in ("train", "val", "test"):
            ids = arrays[f"ids_{side}"]
            assert sorted(ids.tolist()) == sorted(i for i, placed in sides.items() if placed == side)
            assert arrays[f"x_{side}"].shape == (len(ids), 16, 16)
            assert arrays[f"x_{side}"].dtype == np.uint8
            # Cancer images were drawn around 190 and normal ones around 60.
            means = arrays[f"x_{side}"].reshape(len(ids), -1).mean(axis=1)
            labels = arrays[f"y_{side}"]
            assert np.all(means[labels == 0] > 150)
            assert np.all(means[labels == 1] < 100)


def test_non_empty_folder_rejected(split_home, tmp_path: Path) -> None:
    catalog, settings, _ = split_home
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty"):
        export_split(catalog, settings, "s", target, "keras")
    with pytest.raises(ExportError, match="not an earlier curator export"):
        export_split(catalog, settings, "s", target, "keras", overwrite=True)
    assert (target / "notes.txt").read_text() == "keep me"


def test_overwrite_replaces_earlier_export(split_home, tmp_path: Path) -> None:
    catalog, settings, _ = split_home
    target = tmp_path / "out"
    export_split(catalog, settings, "s", target, "keras")
    export_split(catalog, settings, "s", target, "npz", overwrite=True)
    assert sorted(path.name for path in target.iterdir()) == [".curator-export", "arrays.npz"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["out", "home"])


def test_overwrite_keeps_dataset_folder_with_manifest(split_home, tmp_path: Path) -> None:
    catalog, settings, _ = split_home
    target = tmp_path / "dataset"
    (target / "normal").mkdir(parents=True)
    (target / "manifest.csv").write_text("path,label\nnormal/a.png,normal\n")
    (target / "normal" / "a.png").write_bytes(b"precious")
    with pytest.raises(ExportError, match="not an earlier curator export"):
        export_split(catalog, settings, "s", target, "keras", overwrite=True)
    assert (target / "normal" / "a.png").read_bytes() == b"precious"


def test_interrupted_export_leaves_no_folder(split_home, tmp_path: Path) -> None:
    catalog, settings, _ = split_home
    target = tmp_path / "out"

    def interrupt(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_split(catalog, settings, "s", target, "keras", on_progress=interrupt)
    assert not target.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["home"]


def test_unsafe_label_rejected(split_home, tmp_path: Path) -> None:
    catalog, settings, sides = split_home
    with catalog.transaction() as session:
        session.get(Image, next(iter(sides))).label = "../escape"
    with pytest.raises(ExportError, match="cannot be a folder name"):
        export_split(catalog, settings, "s", tmp_path / "out", "keras")
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_keras_export_reads_back_in_keras(split_home, tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    catalog, settings, sides = split_home
    export_split(catalog, settings, "s", tmp_path / "out", "keras")

    dataset = keras.utils.image_dataset_from_directory(
        tmp_path / "out" / "train", labels="inferred", label_mode="int", color_mode="grayscale",
        image_size=(16, 16), batch_size=64, shuffle=False,
    )
    assert dataset.class_names == ["cancer", "normal"]
    images, labels = next(iter(dataset))
    assert images.shape[0] == sum(1 for side in sides.values() if side == "train")
    means = images.numpy().reshape(images.shape[0], -1).mean(axis=1)
    assert np.all(means[labels.numpy() == 0] > 150)
    assert np.all(means[labels.numpy() == 1] < 100)
    # ImageFolder-style readers take the class from the parent folder of each file.
    for path in (tmp_path / "out" / "test").rglob("*.png"):
        assert cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape == (16, 16)
        assert path.parent.name in ("cancer", "normal")
