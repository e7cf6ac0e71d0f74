"""The catalog's connection: open, close, create or upgrade the schema, insert-or-ignore."""

from __future__ import annotations

from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row

from indexer.catalog.migrations import create_schema
from indexer.catalog.schema import create_catalog_engine, schema_version_table
from indexer.config import Settings


class CatalogBase:
    """One database engine; the table groups' mixins (see :class:`indexer.catalog.Catalog`)
    add the reads and writes."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        url: str | None = None,
        engine: Engine | None = None,
    ) -> None:
        if engine is None:
            if url is None:
                if settings is None:
                    raise ValueError("Catalog needs settings, a url or an engine")
                url = settings.catalog_url
            engine = create_catalog_engine(url)
        self.engine = engine
        self.dialect = engine.dialect.name
        self._create_schema()

    @classmethod
    def open(cls, url: str, **engine_kwargs: Any) -> Self:
        return cls(engine=create_catalog_engine(url, **engine_kwargs))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({self.engine.url.render_as_string(hide_password=True)!r})"

    def _create_schema(self) -> None:
        try:
            with self.engine.begin() as conn:
                create_schema(conn, self.dialect, self._insert_ignore)
        except sa.exc.OperationalError as exc:
            # SQLite: another process created the tables between our check and CREATE.
            if "already exists" not in str(exc):
                raise
            with self.engine.begin() as conn:
                create_schema(conn, self.dialect, self._insert_ignore)

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(schema_version_table.c.version)).scalar_one()

    def _row_by_id(self, table: sa.Table, row_id: Any) -> Row | None:
        """The row of ``table`` whose ``id`` is ``row_id``, or None."""
        with self.engine.connect() as conn:
            return conn.execute(table.select().where(table.c.id == row_id)).one_or_none()

    def _insert_ignore(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert a row unless it clashes with a unique key; True if it was inserted."""
        if self.dialect == "postgresql":
            stmt = postgresql.insert(table).values(values).on_conflict_do_nothing()
        elif self.dialect == "sqlite":
            stmt = sqlite.insert(table).values(values).on_conflict_do_nothing()
        else:
            try:
                with conn.begin_nested():
                    conn.execute(table.insert().values(values))
                return True
            except sa.exc.IntegrityError:
                return False
        # RETURNING tells reliably whether a row went in (rowcount is -1 on some drivers).
        key = list(table.primary_key.columns)
        return conn.execute(stmt.returning(*key)).first() is not None
