"""The query language: parsing, canonical text, errors and the SQL it compiles to."""

from __future__ import annotations

import pytest

from curator.catalog import count_images, find_images, set_verdicts
from curator.db import Catalog
from curator.models import Image, Lineage
from curator.query import QueryError, Term, parse


def test_parse_joined_view_side_and_canonical_text():
    query = parse("left-cc Cancer manipulated synthetic")
    assert set(query.terms) == {
        Term("label", "cancer"), Term("view", "CC"), Term("side", "LEFT"),
        Term("origin", "synthetic"), Term("method", "manipulation"),
    }
    assert str(query) == "cancer CC-left synthetic manipulated"


@pytest.mark.parametrize("text", [
    "cancer CC-left synthetic manipulated",
    "normal MLO marked",
    "normal unmarked original",
    "benign right",
    "split:train",
    "patient:0029",
    "model:7",
    "-synthetic",
    "normal cancer CC MLO -derived dataset:mias",
    "split:study:test child-of:12 id:3",
])
def test_canonical_text_parses_back_to_same_query(text):
    query = parse(text)
    assert parse(str(query)) == query


def test_unknown_word_lists_closest_words():
    with pytest.raises(QueryError) as caught:
        parse("cancer CC-lft")
    message = str(caught.value)
    assert "'CC-lft'" in message
    assert "cc-left" in message


def test_unknown_word_far_from_any():
    with pytest.raises(QueryError, match="unknown query word 'zzzzqqq'"):
        parse("zzzzqqq")


def test_keyed_word_needs_value():
    with pytest.raises(QueryError, match="needs a value"):
        parse("patient:")
    with pytest.raises(QueryError, match="whole number"):
        parse("id:abc")


def _add(session, sha: str, **fields) -> Image:
    values = dict(file_path=f"/data/{sha}.png", file_size=1, width=8, height=8, file_format="png", dataset="test", origin="original")
    values.update(fields)
    image = Image(sha256=sha, **values)
    session.add(image)
    session.flush()
    return image


@pytest.fixture
def small_catalog(catalog: Catalog) -> Catalog:
    with catalog.transaction() as session:
        _add(session, "a" * 64, label="cancer", view="CC", side="LEFT", patient_key="mini-ddsm:cancer/0001")
        _add(session, "b" * 64, label="cancer", view="MLO", side="LEFT", patient_key="mini-ddsm:cancer/0001")
        _add(session, "c" * 64, label="normal", view="CC", side="RIGHT", patient_key="mini-ddsm:normal/0001", marking_detected=True, marking_score=0.9)
        _add(session, "d" * 64, label="normal", view="CC", side="LEFT", patient_key="mini-ddsm:normal/0002", marking_detected=False, marking_score=0.1)
        parent = _add(session, "e" * 64, label="benign", view="MLO", side="RIGHT", dataset="mias", patient_key="mias:012")
        child = _add(session, "f" * 64, label="cancer", view="CC", side="LEFT", origin="synthetic", method="manipulation")
        session.add(Lineage(child_id=child.id, parent_id=parent.id, role="parent"))
    return catalog


def _labels(catalog: Catalog, text: str) -> list[str]:
    return [image.sha256[0] for image in find_images(catalog, parse(text))]


def test_same_field_words_mean_either(small_catalog):
    assert _labels(small_catalog, "normal benign") == ["c", "d", "e"]


def test_different_fields_must_all_hold(small_catalog):
    assert _labels(small_catalog, "cancer CC-left") == ["a", "f"]
    assert _labels(small_catalog, "cancer CC-left synthetic manipulated") == ["f"]
    assert _labels(small_catalog, "cancer CC-left original") == ["a"]


def test_negation_keeps_rows_with_empty_field(small_catalog):
    assert _labels(small_catalog, "-synthetic") == ["a", "b", "c", "d", "e"]
    # method is NULL for originals: "-manipulated" must keep them.
    assert _labels(small_catalog, "-manipulated") == ["a", "b", "c", "d", "e"]


def test_curator_verdict_beats_detector(small_catalog):
    assert _labels(small_catalog, "marked") == ["c"]
    assert _labels(small_catalog, "unmarked") == ["d"]
    ids = {image.sha256[0]: image.id for image in find_images(small_catalog, parse(""))}
    set_verdicts(small_catalog, [ids["c"]], False)
    set_verdicts(small_catalog, [ids["d"]], True)
    assert _labels(small_catalog, "marked") == ["d"]
    assert _labels(small_catalog, "unmarked") == ["c"]
    assert _labels(small_catalog, "disputed") == ["c", "d"]
    set_verdicts(small_catalog, [ids["c"]], None)
    assert _labels(small_catalog, "marked") == ["c", "d"]


def test_keyed_words(small_catalog):
    assert _labels(small_catalog, "patient:0001") == ["a", "b", "c"]
    assert _labels(small_catalog, "patient:mini-ddsm:cancer/0001") == ["a", "b"]
    assert _labels(small_catalog, "dataset:MIAS") == ["e"]
    assert _labels(small_catalog, "patient:%") == []
    assert _labels(small_catalog, "-patient:0001") == ["d", "e", "f"]
    parent_id = find_images(small_catalog, parse("dataset:mias"))[0].id
    assert _labels(small_catalog, f"child-of:{parent_id}") == ["f"]
    child_id = find_images(small_catalog, parse("synthetic"))[0].id
    assert _labels(small_catalog, f"parent-of:{child_id}") == ["e"]


def test_synthetic_words_run_on_catalog_without_synthetic_images(sqlite_catalog):
    assert count_images(sqlite_catalog, parse("cancer CC-left synthetic manipulated")) == 0
