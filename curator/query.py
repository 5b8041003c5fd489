"""The query language: curators' words parsed into a small value that prints, saves and compiles to SQL.

Words are case-insensitive. Words for the same field mean either (``normal cancer``), words for
different fields must all hold (``cancer CC-left synthetic``), and ``-word`` negates
(``-synthetic``). A view and a side may be joined (``CC-left``, ``left-CC``). Field words:

- label: ``normal``, ``benign``, ``cancer`` (``malignant``)
- view: ``CC``, ``MLO``; side: ``left``, ``right``
- origin: ``original``, ``synthetic`` (``generated``), ``derived``
- method: ``sampled``, ``interpolated``, ``ball``, ``manipulated``, ``cleaned``, ``canonical``
- marking: ``marked``, ``unmarked`` (the curator's verdict wins over the detector), ``unchecked``
- review: ``reviewed``, ``unreviewed``, ``disputed`` (verdict and detector disagree)
- keyed: ``dataset:mias``, ``patient:0029``, ``split:NAME``, ``split:NAME:test``, ``split:train``,
  ``model:7`` or ``model:NAME`` (made by that generator), ``trained:NAME`` (images a generator
  was trained on), ``id:12``, ``child-of:12``, ``parent-of:12``

>>> str(parse("left-cc Cancer manipulated synthetic"))
'cancer CC-left synthetic manipulated'
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, not_, or_, select, true

from curator.models import Generator, GeneratorImage, Image, Lineage, Split, SplitMember

FIELD_ORDER = ("label", "view", "side", "origin", "method", "marking", "review", "dataset", "patient", "split", "model", "trained", "id", "child-of", "parent-of")
KEYED_FIELDS = ("dataset", "patient", "split", "model", "trained", "id", "child-of", "parent-of")

# Each plain word maps to (field, canonical value).
WORDS: dict[str, tuple[str, str]] = {
    "normal": ("label", "normal"),
    "benign": ("label", "benign"),
    "cancer": ("label", "cancer"),
    "malignant": ("label", "cancer"),
    "cc": ("view", "CC"),
    "mlo": ("view", "MLO"),
    "left": ("side", "LEFT"),
    "right": ("side", "RIGHT"),
    "original": ("origin", "original"),
    "originals": ("origin", "original"),
    "real": ("origin", "original"),
    "synthetic": ("origin", "synthetic"),
    "generated": ("origin", "synthetic"),
    "derived": ("origin", "derived"),
    "sample": ("method", "sample"),
    "sampled": ("method", "sample"),
    "samples": ("method", "sample"),
    "interpolation": ("method", "interpolation"),
    "interpolated": ("method", "interpolation"),
    "ball": ("method", "ball"),
    "manipulation": ("method", "manipulation"),
    "manipulated": ("method", "manipulation"),
    "cleaned": ("method", "cleaned"),
    "canonical": ("method", "canonical"),
    "marked": ("marking", "marked"),
    "unmarked": ("marking", "unmarked"),
    "unchecked": ("marking", "unchecked"),
    "reviewed": ("review", "reviewed"),
    "unreviewed": ("review", "unreviewed"),
    "disputed": ("review", "disputed"),
}
CANONICAL_WORD = {
    ("method", "sample"): "sampled",
    ("method", "interpolation"): "interpolated",
    ("method", "manipulation"): "manipulated",
}
SPLIT_SIDES = ("train", "val", "test")
VIEW_SIDE = re.compile(r"^(cc|mlo)-(left|right)$|^(left|right)-(cc|mlo)$", re.IGNORECASE)


class QueryError(ValueError):
    """A query word is not understood; the message names it and the closest known words."""


@dataclass(frozen=True, order=True)
class Term:
    """One condition: a field, a canonical value, and whether it is negated."""

    field: str
    value: str
    negated: bool = False


@dataclass(frozen=True)
class Query:
    """A parsed query: a set of terms, printed in a canonical order."""

    terms: tuple[Term, ...] = ()

    def __str__(self) -> str:
        return canonical_text(self)

    def values(self, field: str, negated: bool = False) -> list[str]:
        """Return the values given for one field."""
        return [term.value for term in self.terms if term.field == field and term.negated == negated]

    def is_empty(self) -> bool:
        """Return True for the query that matches every image."""
        return not self.terms

    def where(self) -> ColumnElement[bool]:
        """Compile to a SQL condition on ``Image``."""
        return compile_query(self)


def known_words() -> list[str]:
    """Return every plain word and keyed prefix the language accepts."""
    return sorted(set(WORDS) | {f"{field}:" for field in KEYED_FIELDS} | {"cc-left", "cc-right", "mlo-left", "mlo-right"})


def _unknown(word: str) -> QueryError:
    close = difflib.get_close_matches(word.lower(), known_words(), n=3, cutoff=0.5)
    hint = f"; closest known words: {', '.join(close)}" if close else f"; known words: {', '.join(sorted(WORDS))}"
    return QueryError(f"unknown query word {word!r}{hint}")


def _parse_word(word: str) -> list[Term]:
    negated = word.startswith("-") and len(word) > 1
    body = word[1:] if negated else word
    lowered = body.lower()
    if lowered in WORDS:
        field, value = WORDS[lowered]
        return [Term(field, value, negated)]
    match = VIEW_SIDE.match(lowered)
    if match:
        view = (match.group(1) or match.group(4)).upper()
        side = (match.group(2) or match.group(3)).upper()
        if negated:
            raise QueryError(f"cannot negate the joined word {word!r}; negate the view and the side separately")
        return [Term("view", view), Term("side", side)]
    if ":" in body:
        key, _, value = body.partition(":")
        key = key.lower()
        if key in KEYED_FIELDS:
            if not value:
                raise QueryError(f"query word {word!r} needs a value after '{key}:'")
            if key in ("id", "child-of", "parent-of") and (not value.isdigit() or int(value) >= 2**63):
                raise QueryError(f"query word {word!r} needs a whole number below 2**63 after '{key}:'")
            if key == "dataset":
                value = value.lower()
            return [Term(key, value, negated)]
    raise _unknown(body)


def parse(words: str | list[str] | tuple[str, ...]) -> Query:
    """Parse query words (a string or a list of words) into a ``Query``."""
    if isinstance(words, str):
        tokens = words.split()
    else:
        tokens = [token for word in words for token in word.split()]
    terms: list[Term] = []
    for token in tokens:
        for term in _parse_word(token):
            if term not in terms:
                terms.append(term)
    return Query(tuple(sorted(terms, key=_term_order)))


def _term_order(term: Term) -> tuple[int, bool, str]:
    return FIELD_ORDER.index(term.field), term.negated, term.value


def _word_of(term: Term) -> str:
    if term.field in KEYED_FIELDS:
        text = f"{term.field}:{term.value}"
    elif term.field in ("view",):
        text = term.value
    elif term.field == "side":
        text = term.value.lower()
    else:
        text = CANONICAL_WORD.get((term.field, term.value), term.value)
    return f"-{text}" if term.negated else text


def canonical_text(query: Query) -> str:
    """Print a query in canonical order; parsing the text gives the same query back."""
    ordered = sorted(query.terms, key=_term_order)
    views = [term for term in ordered if term.field == "view" and not term.negated]
    sides = [term for term in ordered if term.field == "side" and not term.negated]
    words: list[str] = []
    joined = len(views) == 1 and len(sides) == 1
    for term in ordered:
        if joined and term == sides[0]:
            continue
        if joined and term == views[0]:
            words.append(f"{views[0].value}-{sides[0].value.lower()}")
            continue
        words.append(_word_of(term))
    return " ".join(words)


def _marking_condition(value: str) -> ColumnElement[bool]:
    # Image.marking contains the verdict when there is one, else the detector's result.
    if value in ("marked", "unmarked"):
        return Image.marking == value
    return Image.marking.is_(None)


def _review_condition(value: str) -> ColumnElement[bool]:
    verdict, detected = Image.marking_verdict, Image.marking_detected
    if value == "reviewed":
        return verdict.is_not(None)
    if value == "unreviewed":
        return verdict.is_(None)
    return and_(verdict.is_not(None), detected.is_not(None), verdict != detected)


def _split_condition(value: str) -> ColumnElement[bool]:
    name, _, side = value.partition(":")
    members = select(SplitMember.image_id).join(Split, Split.id == SplitMember.split_id)
    if not side and name.lower() in SPLIT_SIDES:
        return Image.id.in_(members.where(SplitMember.side == name.lower()))
    members = members.where(Split.name == name)
    if side:
        if side.lower() not in SPLIT_SIDES:
            raise QueryError(f"unknown split side {side!r} in 'split:{value}'; expected train, val or test")
        members = members.where(SplitMember.side == side.lower())
    return Image.id.in_(members)


def _generator_ids(value: str):
    if value.isdigit():
        return select(Generator.id).where(or_(Generator.id == int(value), Generator.name == value))
    return select(Generator.id).where(Generator.name == value)


def _term_condition(term: Term) -> ColumnElement[bool]:
    field, value = term.field, term.value
    if field == "label":
        return Image.label == value
    if field == "view":
        return Image.view == value
    if field == "side":
        return Image.side == value
    if field == "origin":
        return Image.origin == value
    if field == "method":
        return Image.method == value
    if field == "marking":
        return _marking_condition(value)
    if field == "review":
        return _review_condition(value)
    if field == "dataset":
        return Image.dataset == value
    if field == "patient":
        # LIKE wildcards in the word are matched literally: "patient:%" is not "every patient".
        literal = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return or_(
            Image.patient_key == value,
            Image.patient_key.like(f"%:{literal}", escape="\\"),
            Image.patient_key.like(f"%/{literal}", escape="\\"),
        )
    if field == "split":
        return _split_condition(value)
    if field == "model":
        return Image.generator_id.in_(_generator_ids(value))
    if field == "trained":
        return Image.id.in_(select(GeneratorImage.image_id).where(GeneratorImage.generator_id.in_(_generator_ids(value)), GeneratorImage.role == "train"))
    if field == "id":
        return Image.id == int(value)
    if field == "child-of":
        return Image.id.in_(select(Lineage.child_id).where(Lineage.parent_id == int(value)))
    if field == "parent-of":
        return Image.id.in_(select(Lineage.parent_id).where(Lineage.child_id == int(value)))
    raise QueryError(f"unknown query field {field!r}")


def _closed_fields() -> dict[str, tuple]:
    from curator.models import LABELS, METHODS, ORIGINS, SIDES, VIEWS

    return {
        "label": (Image.label, LABELS),
        "view": (Image.view, VIEWS),
        "side": (Image.side, SIDES),
        "origin": (Image.origin, ORIGINS),
        "method": (Image.method, METHODS),
        "marking": (Image.marking, ("marked", "unmarked")),
    }


def compile_query(query: Query) -> ColumnElement[bool]:
    """Turn a query into one SQL condition: OR within a field, AND across fields, NOT for negations.

    A negated word of a field with a fixed vocabulary becomes the list of the other values (plus
    "no value" where the column may be empty), so ``benign right -synthetic`` can still use an
    index instead of scanning every benign right image.
    """
    closed = _closed_fields()
    conditions: list[ColumnElement[bool]] = []
    for field in FIELD_ORDER:
        positive = [term for term in query.terms if term.field == field and not term.negated]
        negative = [term for term in query.terms if term.field == field and term.negated]
        if field in closed and negative and not (field == "marking" and any(term.value == "unchecked" for term in positive + negative)):
            column, vocabulary = closed[field]
            excluded = {term.value for term in negative}
            allowed = [value for value in ([term.value for term in positive] or vocabulary) if value not in excluded]
            condition = column.in_(allowed) if allowed else false()
            # SQL NOT on an empty column is NULL, so without this "-cancer" would drop unlabelled images.
            if not positive and field != "origin":
                condition = or_(condition, column.is_(None))
            conditions.append(condition)
            continue
        if positive:
            conditions.append(or_(*(_term_condition(term) for term in positive)))
        for term in negative:
            condition = not_(_term_condition(term))
            # NOT on an empty column is NULL in SQL, so "-model:x" would also drop every original.
            nullable = {"patient": Image.patient_key, "model": Image.generator_id}.get(field)
            conditions.append(or_(condition, nullable.is_(None)) if nullable is not None else condition)
    if not conditions:
        return true()
    return and_(*conditions) if len(conditions) > 1 else conditions[0]


def select_images(query: Query, limit: int | None = None, offset: int = 0):
    """Return a ``select(Image)`` statement for a query, ordered by id."""
    statement = select(Image).where(query.where()).order_by(Image.id)
    if offset:
        statement = statement.offset(offset)
    if limit is not None:
        statement = statement.limit(limit)
    return statement
