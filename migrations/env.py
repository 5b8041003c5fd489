"""Alembic environment: runs revisions against the engine curator passes in, or a URL."""

from __future__ import annotations

import os

from alembic import context

from curator.db import make_engine
from curator.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Emit SQL for the configured URL without connecting."""
    url = os.environ.get("CURATOR_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the revisions on a live connection; SQLite gets batch mode for ALTER TABLE."""
    engine = config.attributes.get("connection_engine")
    if engine is None:
        url = os.environ.get("CURATOR_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
        engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
