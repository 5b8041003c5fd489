"""Shared fixtures: catalogs on SQLite and PostgreSQL, data homes, and the real sample data."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from curator.db import Catalog
from curator.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MAMMO_SAMPLE = SHARED_DATA / "mammo-sample"
MIAS_SAMPLE = SHARED_DATA / "mias-sample"
METADATA = SHARED_DATA / "mini-ddsm-metadata"
POSTGRES_URL = os.environ.get("CURATOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def require_shared_data(path: Path = SHARED_DATA) -> Path:
    """Skip the calling test when the real sample data is not next to the repository."""
    if not path.exists():
        pytest.skip(f"real sample data not found at {path}; it sits in shared/data next to the repository")
    return path


@pytest.fixture
def mammo_sample() -> Path:
    """The 92-image mini-DDSM sample folder."""
    return require_shared_data(MAMMO_SAMPLE)


@pytest.fixture
def mias_sample() -> Path:
    """The 40-image MIAS sample folder."""
    return require_shared_data(MIAS_SAMPLE)


@pytest.fixture
def metadata_dir() -> Path:
    """The folder of official mini-DDSM metadata sheets."""
    return require_shared_data(METADATA)


def _postgres_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as error:  # noqa: BLE001 - any failure means the server cannot be used
        return str(error).splitlines()[0] if str(error) else type(error).__name__


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of the PostgreSQL maintenance database, or a skip when the server is down."""
    problem = _postgres_available()
    if problem:
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable ({problem})")
    return POSTGRES_URL


def _fresh_postgres_database(server_url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"curator_test_{uuid.uuid4().hex[:12]}"
    admin = server_url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test."""
    yield from _fresh_postgres_database(postgres_server)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty catalog database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        yield from _fresh_postgres_database(server)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings with a fresh data home and the parametrised database."""
    return Settings.resolve(tmp_path / "home", database_url)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Settings with a fresh data home and a SQLite catalog inside it."""
    return Settings.resolve(tmp_path / "home", None)


@pytest.fixture
def catalog(settings: Settings) -> Iterator[Catalog]:
    """A catalog on the parametrised database, upgraded to the newest schema."""
    opened = Catalog(settings.database_url)
    yield opened
    opened.dispose()


@pytest.fixture
def sqlite_catalog(sqlite_settings: Settings) -> Iterator[Catalog]:
    """A SQLite catalog in a fresh data home."""
    opened = Catalog(sqlite_settings.database_url)
    yield opened
    opened.dispose()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep tests away from the user's real data home and database."""
    monkeypatch.setenv("CURATOR_HOME", str(tmp_path / "env-home"))
    monkeypatch.delenv("CURATOR_DATABASE_URL", raising=False)
