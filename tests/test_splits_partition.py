"""Patient-level, stratified, reproducible splits of real images, and the lock on used splits."""

from __future__ import annotations

from collections import defaultdict

import pytest
from sqlalchemy import select

from curator.db import Catalog
from curator.models import Image, Split, SplitMember
from curator.splits import SplitError, SplitSpec, create_split, delete_split, list_splits, lock_split, preview_split, split_summary
from test_splits_support import add_image, add_patients, sides_of


def _three_classes(catalog: Catalog) -> None:
    with catalog.transaction() as session:
        add_patients(session, "normal", 10)
        add_patients(session, "benign", 8)
        add_patients(session, "cancer", 12)


def _patients_by_side(catalog: Catalog, split_id: int) -> dict[str, set[str]]:
    with catalog.session() as session:
        rows = session.execute(
            select(Image.patient_key, SplitMember.side).join(SplitMember, SplitMember.image_id == Image.id).where(SplitMember.split_id == split_id)
        ).all()
    sides: dict[str, set[str]] = defaultdict(set)
    for patient, side in rows:
        sides[patient].add(side)
    return sides


def test_every_patient_lands_on_one_side(catalog: Catalog) -> None:
    _three_classes(catalog)
    split = create_split(catalog, SplitSpec("s1", "normal benign cancer", test_fraction=0.25, seed=3))

    sides = _patients_by_side(catalog, split.id)
    assert len(sides) == 30
    assert all(len(placed) == 1 for placed in sides.values())
    test_patients = {patient for patient, placed in sides.items() if placed == {"test"}}
    # round(10 * 0.25) = 3 normal, round(8 * 0.25) = 2 benign, round(12 * 0.25) = 3 cancer.
    assert sum(patient.startswith("normal/") for patient in test_patients) == 3
    assert sum(patient.startswith("benign/") for patient in test_patients) == 2
    assert sum(patient.startswith("cancer/") for patient in test_patients) == 3
    assert len(sides_of(catalog, split.id)) == 120


def test_split_stores_canonical_query_and_params(catalog: Catalog) -> None:
    _three_classes(catalog)
    create_split(catalog, SplitSpec("s1", "Cancer NORMAL", test_fraction=0.25, val_fraction=0.2, seed=3))
    with catalog.session() as session:
        split = session.scalars(select(Split).where(Split.name == "s1")).one()
    assert split.query == "cancer normal"
    assert split.seed == 3
    assert split.params["test_fraction"] == 0.25
    assert split.params["val_fraction"] == 0.2
    assert split.locked is False


def test_same_seed_gives_same_split(catalog: Catalog) -> None:
    _three_classes(catalog)
    first = create_split(catalog, SplitSpec("a", "normal cancer", test_fraction=0.3, seed=11))
    again = create_split(catalog, SplitSpec("b", "normal cancer", test_fraction=0.3, seed=11))
    other = create_split(catalog, SplitSpec("c", "normal cancer", test_fraction=0.3, seed=12))
    assert sides_of(catalog, first.id) == sides_of(catalog, again.id)
    assert sides_of(catalog, first.id) != sides_of(catalog, other.id)


def test_validation_is_carved_from_training_side(catalog: Catalog) -> None:
    _three_classes(catalog)
    plain = sides_of(catalog, create_split(catalog, SplitSpec("plain", "normal cancer", test_fraction=0.25, seed=5)).id)
    carved = sides_of(catalog, create_split(catalog, SplitSpec("carved", "normal cancer", test_fraction=0.25, val_fraction=0.3, seed=5)).id)

    assert {i for i, side in carved.items() if side == "test"} == {i for i, side in plain.items() if side == "test"}
    val = {i for i, side in carved.items() if side == "val"}
    assert val
    assert all(plain[i] == "train" for i in val)
    # 7 normal and 9 cancer training patients; round(7 * 0.3) + round(9 * 0.3) = 2 + 3 patients of 4 images.
    assert len(val) == 20


def test_too_few_patients_names_the_class(catalog: Catalog) -> None:
    with catalog.transaction() as session:
        add_patients(session, "normal", 5)
        add_patients(session, "cancer", 1)
    with pytest.raises(SplitError, match=r"class 'cancer' has 1 patient\(s\)"):
        preview_split(catalog, SplitSpec("x", "normal cancer", test_fraction=0.2, seed=0))


def test_fraction_leaving_test_side_empty_is_rejected(catalog: Catalog) -> None:
    with catalog.transaction() as session:
        add_patients(session, "normal", 4)
        add_patients(session, "cancer", 20)
    # round(4 * 0.1) = 0 normal patients would be tested.
    with pytest.raises(SplitError, match=r"class 'normal' has 4 patients and the test fraction 0.1 leaves none of them on the test side"):
        preview_split(catalog, SplitSpec("x", "normal cancer", test_fraction=0.1, seed=0))


def test_validation_needs_three_patients_per_class(catalog: Catalog) -> None:
    with catalog.transaction() as session:
        add_patients(session, "normal", 2)
        add_patients(session, "cancer", 6)
    with pytest.raises(SplitError, match=r"class 'normal' has 2 patient\(s\); at least 3"):
        preview_split(catalog, SplitSpec("x", "normal cancer", test_fraction=0.3, val_fraction=0.3, seed=0))


def test_by_view_balances_patients_with_one_view(catalog: Catalog) -> None:
    with catalog.transaction() as session:
        for label in ("normal", "cancer"):
            add_patients(session, label, 4, prefix=f"{label}-cc", views=("CC",))
            add_patients(session, label, 4, prefix=f"{label}-mlo", views=("MLO",))
    split = create_split(catalog, SplitSpec("v", "normal cancer", test_fraction=0.25, seed=1, by_view=True))
    sides = _patients_by_side(catalog, split.id)
    tested = sorted(patient.split("/")[0] for patient, placed in sides.items() if placed == {"test"})
    assert tested == ["cancer-cc", "cancer-mlo", "normal-cc", "normal-mlo"]


def test_images_without_patient_are_their_own_group(catalog: Catalog) -> None:
    with catalog.transaction() as session:
        for label in ("normal", "cancer"):
            for _ in range(10):
                add_image(session, label, patient=None)
    plan = preview_split(catalog, SplitSpec("x", "normal cancer", test_fraction=0.2, seed=0))
    assert plan.patients == {"train": 16, "val": 0, "test": 4}
    assert plan.counts["test"] == {"cancer": 2, "normal": 2}


def test_query_matching_synthetic_splits_only_originals(catalog: Catalog) -> None:
    with catalog.transaction() as session:
        add_patients(session, "normal", 5)
        add_patients(session, "cancer", 5)
        synthetic = [add_image(session, "cancer", origin="synthetic", method="sample") for _ in range(3)]
    plan = preview_split(catalog, SplitSpec("x", "normal cancer", test_fraction=0.2, seed=0))
    assert not set(synthetic) & set(plan.members)
    assert len(plan.members) == 40
    assert any("3 synthetic" in note and "only originals" in note for note in plan.notes)


def test_preview_writes_nothing(catalog: Catalog) -> None:
    _three_classes(catalog)
    plan = preview_split(catalog, SplitSpec("x", "normal cancer", test_fraction=0.25, seed=0))
    assert plan.counts["test"] == {"cancer": 12, "normal": 12}
    assert list_splits(catalog) == []


def test_train_per_class_keeps_test_side(catalog: Catalog) -> None:
    _three_classes(catalog)
    full = sides_of(catalog, create_split(catalog, SplitSpec("full", "normal cancer", test_fraction=0.25, seed=2)).id)
    small = sides_of(catalog, create_split(catalog, SplitSpec("small", "normal cancer", test_fraction=0.25, seed=2, train_per_class=5)).id)
    with catalog.session() as session:
        labels = dict(session.execute(select(Image.id, Image.label)).all())
    assert {i for i, s in small.items() if s == "test"} == {i for i, s in full.items() if s == "test"}
    train = [labels[i] for i, s in small.items() if s == "train"]
    assert sorted(train) == ["cancer"] * 5 + ["normal"] * 5
    with pytest.raises(SplitError, match="only 28 real normal images"):
        preview_split(catalog, SplitSpec("big", "normal cancer", test_fraction=0.25, seed=2, train_per_class=29))


def test_existing_and_reserved_names_are_rejected(catalog: Catalog) -> None:
    _three_classes(catalog)
    create_split(catalog, SplitSpec("s1", "normal cancer", test_fraction=0.25, seed=0))
    with pytest.raises(SplitError, match="already exists"):
        create_split(catalog, SplitSpec("s1", "normal cancer", test_fraction=0.25, seed=1))
    with pytest.raises(SplitError, match="reserved"):
        create_split(catalog, SplitSpec("test", "normal cancer", test_fraction=0.25, seed=1))
    with pytest.raises(SplitError, match="invalid split name"):
        create_split(catalog, SplitSpec("a b", "normal cancer", test_fraction=0.25, seed=1))


def test_locked_split_refuses_change(catalog: Catalog) -> None:
    _three_classes(catalog)
    split = create_split(catalog, SplitSpec("s1", "normal cancer", test_fraction=0.25, seed=0))
    spare = create_split(catalog, SplitSpec("s2", "normal cancer", test_fraction=0.25, seed=0))
    with catalog.transaction() as session:
        lock_split(session, session.get(Split, split.id))

    with pytest.raises(SplitError, match="locked"):
        delete_split(catalog, "s1")
    with pytest.raises(SplitError, match="locked"):
        with catalog.transaction() as session:
            session.get(Split, split.id).query = "cancer"
    with pytest.raises(SplitError, match="locked"):
        with catalog.transaction() as session:
            member = session.scalars(select(SplitMember).where(SplitMember.split_id == split.id)).first()
            member.side = "test" if member.side == "train" else "train"
    with pytest.raises(SplitError, match="locked"):
        with catalog.transaction() as session:
            session.get(Split, split.id).locked = False

    assert split_summary(catalog, "s1")["locked"] is True
    delete_split(catalog, "s2")
    assert [row["name"] for row in list_splits(catalog)] == ["s1"]
    assert sides_of(catalog, spare.id) == {}


def test_summary_counts_sides_labels_and_patients(catalog: Catalog) -> None:
    _three_classes(catalog)
    create_split(catalog, SplitSpec("s1", "normal cancer", test_fraction=0.25, val_fraction=0.25, seed=0))
    summary = split_summary(catalog, "s1")
    assert summary["sides"]["test"]["patients"] == 6
    assert summary["sides"]["test"]["label"] == {"cancer": 12, "normal": 12}
    assert summary["sides"]["val"]["patients"] == 4
    assert summary["sides"]["train"]["images"] == 4 * (22 - 6 - 4)
    assert summary["sides"]["train"]["view"] == {"CC": 24, "MLO": 24}
    assert summary["sides"]["train"]["origin"] == {"original": 48}
