"""Sources: the folders, manifests and sites remembered for scheduled re-crawls."""

from __future__ import annotations

from indexer.catalog.base import CatalogBase
from indexer.catalog.records import Source, source_from_row, utcnow
from indexer.catalog.schema import sources_table


class SourcesMixin(CatalogBase):
    """Register and list sources."""

    def register_source(self, location: str, *, recrawl: bool = True) -> Source:
        """Remember a source for scheduled re-crawls; registering again updates ``recrawl``."""
        s = sources_table.c
        with self.engine.begin() as conn:
            values = {"location": location, "recrawl": recrawl, "created_at": utcnow()}
            if not self._insert_ignore(conn, sources_table, values):
                conn.execute(
                    sources_table.update().where(s.location == location).values(recrawl=recrawl)
                )
            row = conn.execute(sources_table.select().where(s.location == location)).one()
        return source_from_row(row)

    def sources(self, *, recrawl_only: bool = False) -> list[Source]:
        stmt = sources_table.select().order_by(sources_table.c.id)
        if recrawl_only:
            stmt = stmt.where(sources_table.c.recrawl.is_(True))
        with self.engine.connect() as conn:
            return [source_from_row(row) for row in conn.execute(stmt)]

