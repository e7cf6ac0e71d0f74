"""The test PostgreSQL: its URL, and schemas of a test's own (dropped afterwards).

Each user gets a fresh schema, selected through ``search_path`` in the URL, so tests
(and the soak script) are isolated from each other and can run again and in parallel.
An unreachable server makes the caller error out: it never skips a test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import sqlalchemy as sa

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("LOOKALIKE_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)


def with_search_path(url: str, schema: str) -> str:
    """Add libpq ``options=-csearch_path=<schema>`` to a SQLAlchemy URL."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def fresh_schema(base: str | None = None, prefix: str = "test_") -> Iterator[str]:
    """A PostgreSQL URL whose connections use a new, empty schema; dropped on exit."""
    base = base or postgres_url()
    schema = f"{prefix}{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:  # fails loudly if PostgreSQL is not there
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield with_search_path(base, schema)
    finally:
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            admin.dispose()
