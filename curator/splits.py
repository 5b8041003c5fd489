"""Leak-proof train/validation/test splits of the catalog, shared by the CLI and the TUI.

Real images are split by patient, stratified by label (and view on request). Synthetic and
derived images join the training side only when none of their ancestors, none of the images
their generators saw, and no image of the same patients is on the test side or in the
validation part. A split that an evaluation has used is locked and never changes.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import event, func, insert, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from curator.catalog import ancestors
from curator.db import Catalog, CatalogError
from curator.models import Evaluation, Generator, GeneratorImage, Image, Split, SplitExclusion, SplitMember
from curator.query import Query, parse

SYNTHETIC_ORIGINS = ("synthetic", "derived")
SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# ``split:train`` in a query means "the training side of any split", so these cannot be names.
RESERVED_NAMES = ("train", "val", "test")
SIDE_TITLES = {"test": "on the test side", "val": "in the validation part"}
CHUNK = 500


class SplitError(CatalogError):
    """A split cannot be built, found or changed. The message names the class, count or split at fault."""


@dataclass(frozen=True)
class SplitSpec:
    """Everything that defines a split; the same spec and catalog always give the same split.

    ``val_fraction`` is the share of the training side's patients (per stratum) moved to the
    validation part. ``synthetic_count`` picks that many eligible synthetic images in all, and
    ``synthetic_per_class`` picks that many per label. ``train_per_class`` keeps that many real
    training images per label (the experiment grid's real-set size).
    """

    name: str
    query: str
    test_fraction: float
    val_fraction: float = 0.0
    seed: int = 0
    by_view: bool = False
    synthetic_query: str | None = None
    synthetic_count: int | None = None
    train_per_class: int | None = None
    synthetic_per_class: int | None = None

    def validate(self) -> None:
        """Raise SplitError when a value is out of range or two options contradict each other."""
        if not 0.0 < self.test_fraction < 1.0:
            raise SplitError(f"test fraction must be between 0 and 1 (exclusive), got {self.test_fraction}")
        if self.seed < 0:
            raise SplitError(f"seed must be 0 or more, got {self.seed}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise SplitError(f"validation fraction must be at least 0 and below 1, got {self.val_fraction}")
        if self.synthetic_count is not None and self.synthetic_per_class is not None:
            raise SplitError("give either a total synthetic count or a count per class, not both")
        for option, value in (("synthetic count", self.synthetic_count), ("synthetic count per class", self.synthetic_per_class),
                              ("real training images per class", self.train_per_class)):
            if value is not None and value < 0:
                raise SplitError(f"{option} must not be negative, got {value}")
        if (self.synthetic_count or self.synthetic_per_class) and not self.synthetic_query:
            raise SplitError("a synthetic count needs a synthetic query (--add-synthetic WORDS)")

    def params(self) -> dict[str, Any]:
        """Return the settings stored with the split (everything except name, queries and seed)."""
        values = asdict(self)
        for key in ("name", "query", "synthetic_query", "seed"):
            values.pop(key)
        return values


@dataclass(frozen=True)
class Exclusion:
    """A synthetic or derived candidate kept out of the training side, and why."""

    image_id: int
    reason: str


@dataclass
class SplitPlan:
    """A split worked out but not written: members, counts, exclusions and notes for the user."""

    spec: SplitSpec
    query: str
    synthetic_query: str | None
    members: dict[int, str]
    counts: dict[str, dict[str, int]]
    patients: dict[str, int]
    exclusions: list[Exclusion] = field(default_factory=list)
    eligible_synthetic: int = 0
    added_synthetic: int = 0
    notes: list[str] = field(default_factory=list)

    def exclusion_counts(self) -> dict[str, int]:
        """Count the exclusions by reason, most frequent first."""
        counts = Counter(exclusion.reason for exclusion in self.exclusions)
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def exclusion_examples(self, per_reason: int = 5) -> dict[str, list[int]]:
        """Return the first few excluded image ids for each reason."""
        examples: dict[str, list[int]] = defaultdict(list)
        for exclusion in self.exclusions:
            if len(examples[exclusion.reason]) < per_reason:
                examples[exclusion.reason].append(exclusion.image_id)
        return dict(examples)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary (without the member list)."""
        return {
            "name": self.spec.name,
            "query": self.query,
            "synthetic_query": self.synthetic_query,
            "seed": self.spec.seed,
            "params": self.spec.params(),
            "counts": self.counts,
            "patients": self.patients,
            "eligible_synthetic": self.eligible_synthetic,
            "added_synthetic": self.added_synthetic,
            "excluded": self.exclusion_counts(),
            "excluded_examples": self.exclusion_examples(),
            "notes": self.notes,
        }


@dataclass(frozen=True)
class _RealImage:
    id: int
    label: str
    view: str | None
    group: str


def group_key(image_id: int, patient_key: str | None) -> str:
    """Return the key that keeps images together: the patient, or the image itself when unknown."""
    return patient_key if patient_key else f"image:{image_id}"


def _class_name(key: tuple[str, ...]) -> str:
    return " ".join(key)


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Give each random step its own generator, so changing one option never reshuffles another step."""
    children = np.random.SeedSequence(seed).spawn(4)
    return {name: np.random.default_rng(child) for name, child in zip(("test", "val", "train", "synthetic"), children)}


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def _load_real(session: Session, query: Query, by_view: bool, notes: list[str]) -> list[_RealImage]:
    """Select the labelled originals the query matches, and add a note for each kind of match left out."""
    condition = query.where()
    skipped_origins = dict(session.execute(
        select(Image.origin, func.count(Image.id)).where(condition, Image.origin != "original").group_by(Image.origin)
    ).all())
    if skipped_origins:
        text = ", ".join(f"{count} {origin}" for origin, count in sorted(skipped_origins.items()))
        notes.append(f"the query also matched {text} images; only originals are split by patient "
                     "(add synthetic or derived images with --add-synthetic)")
    rows = session.execute(
        select(Image.id, Image.label, Image.view, Image.patient_key).where(condition, Image.origin == "original").order_by(Image.id)
    ).all()
    images: list[_RealImage] = []
    unlabelled = unviewed = 0
    for image_id, label, view, patient_key in rows:
        if label is None:
            unlabelled += 1
            continue
        if by_view and view is None:
            unviewed += 1
            continue
        images.append(_RealImage(image_id, label, view, group_key(image_id, patient_key)))
    without_patient = sum(1 for _, label, _, patient_key in rows if patient_key is None and label is not None)
    if without_patient:
        notes.append(f"{without_patient} images have no patient key, so each counts as its own patient and one woman's films may "
                     "land on both sides; import with a patient column (folder manifests) to keep patients together")
    if unlabelled:
        notes.append(f"left out {unlabelled} images without a label")
    if unviewed:
        notes.append(f"left out {unviewed} images without a view (stratifying by view)")
    return images


def _partition(images: list[_RealImage], spec: SplitSpec, streams: dict[str, np.random.Generator]) -> dict[int, str]:
    """Put every patient on one side, stratified by the set of classes each patient has."""
    def class_of(image: _RealImage) -> tuple[str, ...]:
        return (image.label, image.view or "") if spec.by_view else (image.label,)

    groups: dict[str, list[_RealImage]] = defaultdict(list)
    for image in images:
        groups[image.group].append(image)
    patients_of_class: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for key, members in groups.items():
        for image in members:
            patients_of_class[class_of(image)].add(key)

    # Each side needs at least one patient of every class.
    needed = 3 if spec.val_fraction > 0 else 2
    for class_key, patients in sorted(patients_of_class.items()):
        if len(patients) < needed:
            sides = "train, validation and test" if needed == 3 else "train and test"
            raise SplitError(f"class '{_class_name(class_key)}' has {len(patients)} patient(s); "
                             f"at least {needed} are needed to put one on each of {sides}")

    # A patient's stratum is the set of classes among its images, so a patient with a normal and a
    # cancer breast is balanced against others like it, and every patient has exactly one stratum.
    strata: dict[tuple[tuple[str, ...], ...], list[str]] = defaultdict(list)
    for key, members in groups.items():
        strata[tuple(sorted({class_of(image) for image in members}))].append(key)

    side_of_group: dict[str, str] = {}
    for stratum in sorted(strata):
        keys = sorted(strata[stratum])
        order = streams["test"].permutation(len(keys))
        test_count = _round_half_up(len(keys) * spec.test_fraction)
        for position, index in enumerate(order):
            side_of_group[keys[index]] = "test" if position < test_count else "train"
    if spec.val_fraction > 0:
        for stratum in sorted(strata):
            keys = sorted(key for key in strata[stratum] if side_of_group[key] == "train")
            order = streams["val"].permutation(len(keys))
            val_count = _round_half_up(len(keys) * spec.val_fraction)
            for index in order[:val_count]:
                side_of_group[keys[index]] = "val"

    sides_needed = ("train", "val", "test") if spec.val_fraction > 0 else ("train", "test")
    for class_key, patients in sorted(patients_of_class.items()):
        on_side = Counter(side_of_group[key] for key in patients)
        for side in sides_needed:
            if on_side[side] == 0:
                fraction = {"test": f"test fraction {spec.test_fraction}", "val": f"validation fraction {spec.val_fraction}",
                            "train": f"test fraction {spec.test_fraction} and validation fraction {spec.val_fraction}"}[side]
                advice = "lower the fractions" if side == "train" else "raise the fraction"
                raise SplitError(f"class '{_class_name(class_key)}' has {len(patients)} patients and the {fraction} leaves "
                                 f"none of them on the {'validation' if side == 'val' else side} side; {advice} or add patients")
    return {image.id: side_of_group[image.group] for image in images}


def _limit_training(images: list[_RealImage], sides: dict[int, str], per_class: int, rng: np.random.Generator) -> dict[int, str]:
    """Keep ``per_class`` real training images of each label; the rest leave the split."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for image in images:
        if sides[image.id] == "train":
            by_label[image.label].append(image.id)
    kept = dict(sides)
    for label in sorted(by_label):
        ids = sorted(by_label[label])
        if len(ids) < per_class:
            raise SplitError(f"the training side has only {len(ids)} real {label} images; {per_class} per class were requested")
        order = rng.permutation(len(ids))
        for index in order[per_class:]:
            del kept[ids[index]]
    return kept


@dataclass
class _Facts:
    """Patient keys and generators of every image the leakage check looks at."""

    group: dict[int, str] = field(default_factory=dict)
    generator: dict[int, int | None] = field(default_factory=dict)

    def load(self, session: Session, ids: Iterable[int]) -> None:
        missing = sorted(set(ids) - set(self.group))
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            for image_id, patient_key, generator_id in session.execute(
                select(Image.id, Image.patient_key, Image.generator_id).where(Image.id.in_(chunk))
            ):
                self.group[image_id] = group_key(image_id, patient_key)
                self.generator[image_id] = generator_id


def _generator_sources(session: Session, generator_ids: set[int], facts: _Facts) -> dict[int, set[int]]:
    """Return, per generator, every image it was trained or measured on, with their own sources.

    A generator trained on synthetic images inherits what those images came from, so the sets
    are closed over lineage and over the generators of those images.
    """
    direct: dict[int, set[int]] = defaultdict(set)
    pending = set(generator_ids)
    while pending:
        batch = sorted(pending)
        pending = set()
        rows = session.execute(select(GeneratorImage.generator_id, GeneratorImage.image_id).where(GeneratorImage.generator_id.in_(batch))).all()
        for generator_id in batch:
            direct.setdefault(generator_id, set())
        for generator_id, image_id in rows:
            direct[generator_id].add(image_id)
        seen_images = {image_id for _, image_id in rows}
        lineage = ancestors(session, sorted(seen_images))
        everything = seen_images.union(*lineage.values()) if lineage else seen_images
        facts.load(session, everything)
        for generator_id in batch:
            for image_id in list(direct[generator_id]):
                direct[generator_id] |= lineage.get(image_id, set())
        for image_id in everything:
            nested = facts.generator.get(image_id)
            if nested is not None and nested not in direct:
                pending.add(nested)

    # Fold in the sources of nested generators until nothing changes.
    closed = {generator_id: set(images) for generator_id, images in direct.items()}
    changed = True
    while changed:
        changed = False
        for generator_id, images in closed.items():
            nested = {facts.generator.get(image_id) for image_id in images} - {None, generator_id}
            for other in nested:
                extra = closed.get(other, set()) - images
                if extra:
                    images |= extra
                    changed = True
    return closed


def _contact(images: set[int], side: str, facts: _Facts, members: dict[str, set[int]], groups: dict[str, set[str]]) -> str | None:
    """Return "image" when a set of source images meets one side's images, "patient" when only their patients meet."""
    if images & members[side]:
        return "image"
    if any(facts.group.get(image_id) in groups[side] for image_id in images):
        return "patient"
    return None


def _leak_reason(candidate: int, lineage: set[int], generator_contact: list[dict[str, str | None]], facts: _Facts,
                 members: dict[str, set[int]], groups: dict[str, set[str]]) -> str | None:
    """Return why a candidate would leak into the test side or the validation part, or None.

    ``generator_contact`` holds, for each generator behind the candidate, its ``_contact`` per side.
    """
    for side in ("test", "val"):
        where = SIDE_TITLES[side]
        own_group = facts.group.get(candidate)
        if own_group in groups[side] and not own_group.startswith("image:"):
            return f"same patient as an image {where}"
        ancestor_contact = _contact(lineage, side, facts, members, groups)
        if ancestor_contact == "image":
            return f"ancestor {where}"
        if ancestor_contact == "patient":
            return f"ancestor from a patient {where}"
        contacts = {contact[side] for contact in generator_contact}
        if "image" in contacts:
            return f"generator trained or measured on an image {where}"
        if "patient" in contacts:
            return f"generator trained or measured on a patient {where}"
    return None


def _screen_synthetic(session: Session, query: Query, real_sides: dict[int, str], labels: set[str],
                      notes: list[str]) -> tuple[list[tuple[int, str]], list[Exclusion]]:
    """Return the eligible (id, label) candidates and the exclusions with their reasons."""
    condition = query.where()
    originals = session.scalar(select(func.count(Image.id)).where(condition, Image.origin == "original")) or 0
    if originals:
        notes.append(f"the synthetic query also matched {originals} original images; only synthetic and derived images are added")
    rows = session.execute(
        select(Image.id, Image.label).where(condition, Image.origin.in_(SYNTHETIC_ORIGINS)).order_by(Image.id)
    ).all()
    candidates = [image_id for image_id, _ in rows]
    label_of = dict(rows)

    lineage = ancestors(session, candidates)
    facts = _Facts()
    facts.load(session, set(candidates).union(*lineage.values()) if lineage else candidates)
    facts.load(session, real_sides)
    generator_ids = {generator_id for generator_id in facts.generator.values() if generator_id is not None}
    sources = _generator_sources(session, generator_ids, facts)

    members = {side: {image_id for image_id, placed in real_sides.items() if placed == side} for side in ("test", "val")}
    groups = {side: {facts.group[image_id] for image_id in members[side]} for side in ("test", "val")}
    # Each generator's training set is compared with the sides once, not once per sample.
    contact_of = {generator_id: {side: _contact(images, side, facts, members, groups) for side in ("test", "val")}
                  for generator_id, images in sources.items()}

    eligible: list[tuple[int, str]] = []
    exclusions: list[Exclusion] = []
    for image_id in candidates:
        label = label_of[image_id]
        if label is None:
            exclusions.append(Exclusion(image_id, "no label"))
            continue
        if label not in labels:
            exclusions.append(Exclusion(image_id, f"label {label} is not among the split's labels"))
            continue
        image_lineage = lineage.get(image_id, set())
        generators = {facts.generator.get(other) for other in image_lineage | {image_id}} - {None}
        generator_contact = [contact_of[generator_id] for generator_id in sorted(generators) if generator_id in contact_of]
        reason = _leak_reason(image_id, image_lineage, generator_contact, facts, members, groups)
        if reason is not None:
            exclusions.append(Exclusion(image_id, reason))
            continue
        eligible.append((image_id, label))
    return eligible, exclusions


def _pick_synthetic(eligible: list[tuple[int, str]], spec: SplitSpec, rng: np.random.Generator) -> list[int]:
    """Choose which eligible synthetic images join the training side, reproducibly from the seed."""
    if spec.synthetic_per_class is not None:
        by_label: dict[str, list[int]] = defaultdict(list)
        for image_id, label in eligible:
            by_label[label].append(image_id)
        picked: list[int] = []
        for label in sorted(by_label):
            ids = by_label[label]
            order = rng.permutation(len(ids))
            picked.extend(ids[index] for index in order[: spec.synthetic_per_class])
        return picked
    ids = [image_id for image_id, _ in eligible]
    if spec.synthetic_count is None:
        return ids
    if len(ids) < spec.synthetic_count:
        raise SplitError(f"only {len(ids)} synthetic images are eligible; {spec.synthetic_count} were requested")
    order = rng.permutation(len(ids))
    return [ids[index] for index in order[: spec.synthetic_count]]


def _check_per_class_supply(eligible: list[tuple[int, str]], labels: set[str], per_class: int) -> None:
    supply = Counter(label for _, label in eligible)
    short = [f"{label} {supply[label]}" for label in sorted(labels) if supply[label] < per_class]
    if short:
        raise SplitError(f"not enough eligible synthetic images for {per_class} per class (eligible: {', '.join(short)})")


def plan_split(session: Session, spec: SplitSpec) -> SplitPlan:
    """Work out a split inside an open session without writing anything."""
    spec.validate()
    query = parse(spec.query)
    synthetic_query = parse(spec.synthetic_query) if spec.synthetic_query else None
    notes: list[str] = []
    streams = _streams(spec.seed)

    images = _load_real(session, query, spec.by_view, notes)
    if not images:
        raise SplitError(f"the query '{query}' matches no labelled original images")
    sides = _partition(images, spec, streams)
    if spec.train_per_class is not None:
        sides = _limit_training(images, sides, spec.train_per_class, streams["train"])

    labels = {image.label for image in images}
    exclusions: list[Exclusion] = []
    eligible: list[tuple[int, str]] = []
    picked: list[int] = []
    if synthetic_query is not None:
        eligible, exclusions = _screen_synthetic(session, synthetic_query, sides, labels, notes)
        if spec.synthetic_per_class is not None:
            _check_per_class_supply(eligible, labels, spec.synthetic_per_class)
        picked = _pick_synthetic(eligible, spec, streams["synthetic"])

    members = dict(sides)
    members.update({image_id: "train" for image_id in picked})
    label_of = {image.id: image.label for image in images} | {image_id: label for image_id, label in eligible}
    counts: dict[str, dict[str, int]] = {}
    for image_id, side in members.items():
        per_label = counts.setdefault(side, {})
        per_label[label_of[image_id]] = per_label.get(label_of[image_id], 0) + 1
    group_of = {image.id: image.group for image in images}
    patients = {side: len({group_of[image_id] for image_id, placed in sides.items() if placed == side}) for side in ("train", "val", "test")}
    return SplitPlan(
        spec=spec,
        query=str(query),
        synthetic_query=str(synthetic_query) if synthetic_query is not None else None,
        members=members,
        counts={side: dict(sorted(counts[side].items())) for side in ("train", "val", "test") if side in counts},
        patients=patients,
        exclusions=exclusions,
        eligible_synthetic=len(eligible),
        added_synthetic=len(picked),
        notes=notes,
    )


def preview_split(catalog: Catalog, spec: SplitSpec) -> SplitPlan:
    """Work out a split and return its counts and exclusions; nothing is written."""
    with catalog.session() as session:
        return plan_split(session, spec)


def check_name(name: str) -> None:
    """Raise SplitError unless ``name`` can be used in ``split:NAME`` query words."""
    if not SPLIT_NAME.match(name):
        raise SplitError(f"invalid split name {name!r}; use letters, digits, '.', '_' and '-' (at most 128, starting with a letter or digit)")
    if name.lower() in RESERVED_NAMES:
        raise SplitError(f"invalid split name {name!r}; train, val and test are reserved for 'split:SIDE' queries")


def write_split(session: Session, plan: SplitPlan) -> Split:
    """Add a planned split with its members and exclusions to an open transaction."""
    spec = plan.spec
    check_name(spec.name)
    if session.scalar(select(Split.id).where(Split.name == spec.name)) is not None:
        raise SplitError(f"a split named '{spec.name}' already exists; choose another name (splits never change once made)")
    params = spec.params() | {"patients": plan.patients, "counts": plan.counts, "eligible_synthetic": plan.eligible_synthetic,
                              "added_synthetic": plan.added_synthetic, "excluded": plan.exclusion_counts(), "notes": plan.notes}
    split = Split(name=spec.name, query=plan.query, synthetic_query=plan.synthetic_query, seed=spec.seed, params=params, locked=False)
    session.add(split)
    session.flush()
    member_rows = [{"split_id": split.id, "image_id": image_id, "side": side} for image_id, side in sorted(plan.members.items())]
    exclusion_rows = [{"split_id": split.id, "image_id": exclusion.image_id, "reason": exclusion.reason} for exclusion in plan.exclusions]
    for start in range(0, len(member_rows), CHUNK):
        session.execute(insert(SplitMember), member_rows[start : start + CHUNK])
    for start in range(0, len(exclusion_rows), CHUNK):
        session.execute(insert(SplitExclusion), exclusion_rows[start : start + CHUNK])
    return split


def create_split(catalog: Catalog, spec: SplitSpec) -> Split:
    """Work out a split and store it with its members and exclusions in one transaction."""
    return create_split_with_plan(catalog, spec)[0]


def create_split_with_plan(catalog: Catalog, spec: SplitSpec) -> tuple[Split, SplitPlan]:
    """Store a split like ``create_split`` and also return the plan it was written from."""
    check_name(spec.name)
    try:
        with catalog.transaction() as session:
            plan = plan_split(session, spec)
            split = write_split(session, plan)
    except IntegrityError as error:
        # Another process stored the same name between the check and the insert.
        raise SplitError(f"a split named '{spec.name}' already exists; choose another name") from error
    return split, plan


def get_split(session: Session, name: str) -> Split:
    """Return the split called ``name`` or raise SplitError."""
    split = session.scalars(select(Split).where(Split.name == name)).first()
    if split is None:
        raise SplitError(f"split '{name}' not found; 'curator split list' shows the existing splits")
    return split


def lock_split(session: Session, split: Split) -> None:
    """Mark a split as used by an evaluation; from now on it cannot change or be deleted."""
    split.locked = True


def delete_split(catalog: Catalog, name: str) -> None:
    """Delete an unlocked split with its members and exclusions."""
    with catalog.transaction() as session:
        split = get_split(session, name)
        if split.locked:
            raise SplitError(f"split '{name}' is locked because an evaluation used it; it cannot be deleted or changed")
        session.delete(split)


def list_splits(catalog: Catalog) -> list[dict[str, Any]]:
    """Return every split with its query, seed, lock state and the number of images per side."""
    with catalog.session() as session:
        sides: dict[int, dict[str, int]] = defaultdict(dict)
        for split_id, side, count in session.execute(
            select(SplitMember.split_id, SplitMember.side, func.count()).group_by(SplitMember.split_id, SplitMember.side)
        ):
            sides[split_id][side] = count
        return [
            {
                "id": split.id, "name": split.name, "query": split.query, "synthetic_query": split.synthetic_query,
                "seed": split.seed, "locked": split.locked, "created_at": split.created_at.isoformat() if split.created_at else None,
                "sides": {side: sides[split.id].get(side, 0) for side in ("train", "val", "test")},
            }
            for split in session.scalars(select(Split).order_by(Split.id))
        ]


def split_summary(catalog: Catalog, name: str, examples_per_reason: int = 5) -> dict[str, Any]:
    """Describe a split: counts per side by label, view, origin and method, exclusions and evaluations."""
    with catalog.session() as session:
        split = get_split(session, name)
        facets = {"label": Image.label, "view": Image.view, "origin": Image.origin, "method": Image.method}
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for facet, column in facets.items():
            rows = session.execute(
                select(SplitMember.side, column, func.count()).join(Image, Image.id == SplitMember.image_id)
                .where(SplitMember.split_id == split.id).group_by(SplitMember.side, column)
            )
            for side, value, count in rows:
                counts.setdefault(side, {}).setdefault(facet, {})[value if value is not None else "none"] = count
        patient_groups: dict[str, set[str]] = defaultdict(set)
        for side, image_id, patient_key in session.execute(
            select(SplitMember.side, Image.id, Image.patient_key).join(Image, Image.id == SplitMember.image_id)
            .where(SplitMember.split_id == split.id, Image.origin == "original")
        ):
            patient_groups[side].add(group_key(image_id, patient_key))
        patients = {side: len(keys) for side, keys in patient_groups.items()}
        totals = dict(session.execute(
            select(SplitMember.side, func.count()).where(SplitMember.split_id == split.id).group_by(SplitMember.side)
        ).all())
        excluded: dict[str, dict[str, Any]] = {}
        for image_id, reason in session.execute(
            select(SplitExclusion.image_id, SplitExclusion.reason).where(SplitExclusion.split_id == split.id).order_by(SplitExclusion.image_id)
        ):
            entry = excluded.setdefault(reason, {"count": 0, "examples": []})
            entry["count"] += 1
            if len(entry["examples"]) < examples_per_reason:
                entry["examples"].append(image_id)
        evaluations = list(session.scalars(select(Evaluation.id).where(Evaluation.split_id == split.id).order_by(Evaluation.id)))
        return {
            "id": split.id,
            "name": split.name,
            "query": split.query,
            "synthetic_query": split.synthetic_query,
            "seed": split.seed,
            "params": split.params,
            "locked": split.locked,
            "created_at": split.created_at.isoformat() if split.created_at else None,
            "sides": {side: {"images": totals.get(side, 0), "patients": patients.get(side, 0), **counts.get(side, {})}
                      for side in ("train", "val", "test") if totals.get(side)},
            "excluded": dict(sorted(excluded.items(), key=lambda item: (-item[1]["count"], item[0]))),
            "evaluations": evaluations,
        }


def split_members(session: Session, split: Split) -> list[tuple[Image, str]]:
    """Return a split's images with their side, ordered by side (train, val, test), label and id."""
    order = {"train": 0, "val": 1, "test": 2}
    rows = session.execute(
        select(Image, SplitMember.side).join(SplitMember, SplitMember.image_id == Image.id).where(SplitMember.split_id == split.id)
    ).all()
    return sorted(((image, side) for image, side in rows), key=lambda row: (order.get(row[1], 3), row[0].label or "", row[0].id))


def generator_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """Return the names of the given generators."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return dict(session.execute(select(Generator.id, Generator.name).where(Generator.id.in_(wanted))).all())


def _split_of(session: Session, split_id: int) -> Split | None:
    with session.no_autoflush:
        return session.get(Split, split_id)


def _was_locked(split: Split) -> bool:
    history = inspect(split).attrs.locked.history
    if history.deleted:
        return bool(history.deleted[0])
    return bool(split.locked) and not history.added


@event.listens_for(Session, "before_flush")
def _reject_changes_to_locked_splits(session: Session, _flush_context: Any, _instances: Any) -> None:
    """Stop any ORM change to a locked split, its members or its exclusions before it reaches the database.

    Only the change from unlocked to locked is allowed. Statements run with ``session.execute``
    bypass this check; curator only uses them to insert the rows of a new, unlocked split.
    """
    for instance in session.deleted:
        if isinstance(instance, Split) and _was_locked(instance):
            raise SplitError(f"split '{instance.name}' is locked because an evaluation used it; it cannot be deleted or changed")
    for instance in session.dirty:
        if isinstance(instance, Split) and _was_locked(instance) and session.is_modified(instance):
            raise SplitError(f"split '{instance.name}' is locked because an evaluation used it; create a new split instead")
    for instance in list(session.new) + list(session.dirty) + list(session.deleted):
        if isinstance(instance, (SplitMember, SplitExclusion)):
            split = _split_of(session, instance.split_id)
            if split is not None and _was_locked(split):
                raise SplitError(f"split '{split.name}' is locked because an evaluation used it; create a new split instead")
