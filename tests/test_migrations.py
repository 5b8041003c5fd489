"""The Alembic revisions against the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from curator.cli import app
from curator.db import Catalog, current_revision, downgrade, head_revision, make_engine, upgrade
from curator.models import Base


def test_migrations_match_models(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert differences == []


def test_upgrade_downgrade_round_trip(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())

    downgrade(engine, "base")
    remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert remaining == set()
    assert current_revision(engine) is None

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_sqlite_connection_pragmas(sqlite_catalog):
    with sqlite_catalog.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_db_commands(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["--db", url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["--db", url, "db", "current"])
    assert f"current: {head_revision()}" in result.output
    result = runner.invoke(app, ["--db", url, "db", "downgrade", "base"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["--db", url, "db", "current"])
    assert "current: empty" in result.output


def test_catalog_opens_empty_database_at_head(database_url):
    catalog = Catalog(database_url)
    assert current_revision(catalog.engine) == head_revision()
    catalog.dispose()
