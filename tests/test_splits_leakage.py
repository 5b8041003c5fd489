"""The leakage guard: synthetic and derived images join training only when nothing they came
from is on the test side or in the validation part."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from curator.db import Catalog
from curator.models import Image, SplitExclusion
from curator.splits import SplitError, SplitSpec, create_split, preview_split
from test_splits_support import add_generator, add_image, add_patients, link, sides_of

SPEC = dict(query="normal cancer", test_fraction=0.25, val_fraction=0.25, seed=7)


def _real_split(catalog: Catalog) -> tuple[list[int], list[int], list[int], dict[int, str]]:
    """Make 8 normal and 8 cancer patients and return the train, val and test image ids (cancer first)."""
    with catalog.transaction() as session:
        add_patients(session, "cancer", 8)
        add_patients(session, "normal", 8)
    sides = preview_split(catalog, SplitSpec("probe", **SPEC)).members
    with catalog.session() as session:
        label_of = dict(session.execute(select(Image.id, Image.label)).all())
    ordered = sorted(sides, key=lambda image_id: (label_of[image_id] != "cancer", image_id))
    by_side = {side: [image_id for image_id in ordered if sides[image_id] == side] for side in ("train", "val", "test")}
    return by_side["train"], by_side["val"], by_side["test"], label_of


def _derived(catalog: Catalog, label: str, parents: list[tuple[int, str]], method: str = "interpolation",
             origin: str = "synthetic", generator_id: int | None = None, patient: str | None = None) -> int:
    with catalog.transaction() as session:
        image_id = add_image(session, label, origin=origin, method=method, generator_id=generator_id, patient=patient)
        for parent, role in parents:
            link(session, image_id, parent, role)
    return image_id


def _reasons(catalog: Catalog, split_id: int) -> dict[int, str]:
    with catalog.session() as session:
        return dict(session.execute(select(SplitExclusion.image_id, SplitExclusion.reason).where(SplitExclusion.split_id == split_id)).all())


def test_interpolation_with_test_parent_is_excluded(catalog: Catalog) -> None:
    train, _, test, _ = _real_split(catalog)
    leaking = _derived(catalog, "cancer", [(train[0], "parent"), (test[0], "parent")])
    clean = _derived(catalog, "cancer", [(train[0], "parent"), (train[1], "parent")])

    split = create_split(catalog, SplitSpec("s", synthetic_query="synthetic", **SPEC))
    sides = sides_of(catalog, split.id)
    assert leaking not in sides
    assert sides[clean] == "train"
    assert _reasons(catalog, split.id) == {leaking: "ancestor on the test side"}


def test_manipulation_direction_from_test_excluded(catalog: Catalog) -> None:
    train, _, test, _ = _real_split(catalog)
    manipulated = _derived(
        catalog, "normal",
        [(train[0], "parent"), (train[1], "direction_from"), (test[-1], "direction_to")],
        method="manipulation",
    )
    plan = preview_split(catalog, SplitSpec("s", synthetic_query="manipulated", **SPEC))
    assert plan.exclusion_counts() == {"ancestor on the test side": 1}
    assert manipulated not in plan.members


def test_generator_trained_on_test_excluded(catalog: Catalog) -> None:
    train, val, test, _ = _real_split(catalog)
    with catalog.transaction() as session:
        leaky = add_generator(session, "leaky", train=train[:3] + [test[0]])
        measured = add_generator(session, "measured", train=train[:3], heldout=[test[1]])
        clean = add_generator(session, "clean", train=train[:4])
    samples = {name: _derived(catalog, "cancer", [], method="sample", generator_id=generator) for name, generator in
               (("leaky", leaky), ("measured", measured), ("clean", clean))}

    split = create_split(catalog, SplitSpec("s", synthetic_query="sampled", **SPEC))
    reasons = _reasons(catalog, split.id)
    assert reasons[samples["leaky"]] == "generator trained or measured on an image on the test side"
    assert reasons[samples["measured"]] == "generator trained or measured on an image on the test side"
    assert samples["clean"] not in reasons
    assert sides_of(catalog, split.id)[samples["clean"]] == "train"


def test_derived_image_of_validation_image_is_excluded(catalog: Catalog) -> None:
    train, val, _, _ = _real_split(catalog)
    cleaned = _derived(catalog, "cancer", [(val[0], "parent")], method="cleaned", origin="derived")
    kept = _derived(catalog, "cancer", [(train[0], "parent")], method="cleaned", origin="derived")

    plan = preview_split(catalog, SplitSpec("s", synthetic_query="derived", **SPEC))
    assert plan.exclusion_counts() == {"ancestor in the validation part": 1}
    assert plan.members[kept] == "train"
    assert cleaned not in plan.members


def test_ancestor_outside_split_from_test_patient_is_excluded(catalog: Catalog) -> None:
    with catalog.transaction() as session:
        add_patients(session, "cancer", 8)
        add_patients(session, "normal", 8)
    cc_spec = dict(SPEC, query="normal cancer CC")
    sides = preview_split(catalog, SplitSpec("probe", **cc_spec)).members
    with catalog.session() as session:
        patient_of = dict(session.execute(select(Image.id, Image.patient_key)).all())
        test_patient = patient_of[next(image_id for image_id, side in sides.items() if side == "test")]
        mlo_of_test_patient = session.scalars(
            select(Image.id).where(Image.patient_key == test_patient, Image.view == "MLO")
        ).first()
    assert mlo_of_test_patient not in sides
    child = _derived(catalog, "cancer", [(mlo_of_test_patient, "parent")], method="ball")

    plan = preview_split(catalog, SplitSpec("s", synthetic_query="synthetic", **cc_spec))
    assert plan.exclusion_counts() == {"ancestor from a patient on the test side": 1}
    assert child not in plan.members


def test_chain_through_synthetic_ancestor_and_nested_generator(catalog: Catalog) -> None:
    train, _, test, _ = _real_split(catalog)
    # A sample of a generator trained on a synthetic image whose parent is a test image.
    interpolated = _derived(catalog, "cancer", [(test[0], "parent"), (train[0], "parent")])
    with catalog.transaction() as session:
        second_generation = add_generator(session, "second", train=[interpolated, train[1]])
    sample = _derived(catalog, "cancer", [], method="sample", generator_id=second_generation)
    # An image whose grandparent (through a synthetic parent) is a test image.
    grandchild = _derived(catalog, "cancer", [(interpolated, "parent")], method="ball")

    plan = preview_split(catalog, SplitSpec("s", synthetic_query="sampled ball", **SPEC))
    reasons = {exclusion.image_id: exclusion.reason for exclusion in plan.exclusions}
    assert reasons == {sample: "generator trained or measured on an image on the test side", grandchild: "ancestor on the test side"}


def test_synthetic_with_own_test_patient_key_is_excluded(catalog: Catalog) -> None:
    train, _, test, _ = _real_split(catalog)
    with catalog.session() as session:
        test_patient = session.get(Image, test[0]).patient_key
    tagged = _derived(catalog, "cancer", [], method="sample", patient=test_patient)
    plan = preview_split(catalog, SplitSpec("s", synthetic_query="synthetic", **SPEC))
    assert plan.exclusion_counts() == {"same patient as an image on the test side": 1}
    assert tagged not in plan.members


def test_labels_outside_split_and_missing_labels_are_excluded(catalog: Catalog) -> None:
    _real_split(catalog)
    benign = _derived(catalog, "benign", [], method="sample")
    unlabelled = _derived(catalog, None, [], method="sample")
    plan = preview_split(catalog, SplitSpec("s", synthetic_query="synthetic", **SPEC))
    reasons = {exclusion.image_id: exclusion.reason for exclusion in plan.exclusions}
    assert reasons == {benign: "label benign is not among the split's labels", unlabelled: "no label"}


def test_count_picks_reproducibly_and_never_more_than_eligible(catalog: Catalog) -> None:
    train, _, test, _ = _real_split(catalog)
    eligible = [_derived(catalog, "cancer", [(train[0], "parent")], method="sample") for _ in range(6)]
    _derived(catalog, "cancer", [(test[0], "parent")], method="sample")

    first = preview_split(catalog, SplitSpec("s", synthetic_query="sampled", synthetic_count=4, **SPEC))
    again = preview_split(catalog, SplitSpec("s", synthetic_query="sampled", synthetic_count=4, **SPEC))
    picked = sorted(set(first.members) & set(eligible))
    assert len(picked) == 4
    assert picked == sorted(set(again.members) & set(eligible))
    assert first.eligible_synthetic == 6
    assert first.added_synthetic == 4
    with pytest.raises(SplitError, match="only 6 synthetic images are eligible; 7 were requested"):
        preview_split(catalog, SplitSpec("s", synthetic_query="sampled", synthetic_count=7, **SPEC))


def test_per_class_count_reports_short_class(catalog: Catalog) -> None:
    train, _, _, label_of = _real_split(catalog)
    normal_train = [image_id for image_id in train if label_of[image_id] == "normal"]
    for _ in range(3):
        _derived(catalog, "cancer", [(train[0], "parent")], method="sample")
    _derived(catalog, "normal", [(normal_train[0], "parent")], method="sample")

    plan = preview_split(catalog, SplitSpec("s", synthetic_query="sampled", synthetic_per_class=1, **SPEC))
    assert plan.added_synthetic == 2
    with pytest.raises(SplitError, match=r"for 2 per class \(eligible: normal 1\)"):
        preview_split(catalog, SplitSpec("s", synthetic_query="sampled", synthetic_per_class=2, **SPEC))


def test_synthetic_never_lands_on_test_or_validation(catalog: Catalog) -> None:
    train, _, _, _ = _real_split(catalog)
    added = {_derived(catalog, "normal", [(train[index], "parent")], method="sample") for index in range(5)}
    split = create_split(catalog, SplitSpec("s", synthetic_query="synthetic", **SPEC))
    sides = sides_of(catalog, split.id)
    assert {sides[image_id] for image_id in added} == {"train"}
    assert _reasons(catalog, split.id) == {}
