"""The limits a :class:`~indexer.sources.fetch.Fetcher` works within, from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from indexer.sources.netguard import IPNetwork, parse_networks

if TYPE_CHECKING:
    from indexer.config import Settings

MiB = 1024 * 1024
DEFAULT_USER_AGENT = "LookalikeBot/0.1"


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """The limits a :class:`~indexer.sources.fetch.Fetcher` works within. Times are seconds."""

    allow_networks: tuple[IPNetwork, ...] = ()
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    deadline: float = 30.0
    max_bytes: int = 25 * MiB
    max_document_bytes: int = 5 * MiB  # an HTML page or sitemap, decompressed
    user_agent: str = DEFAULT_USER_AGENT
    per_host_interval: float = 1.0
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_redirects: int = 5
    respect_robots: bool = True
    robots_ttl: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            allow_networks=parse_networks(settings.fetch_allow_networks),
            connect_timeout=settings.fetch_connect_timeout,
            read_timeout=settings.fetch_read_timeout,
            deadline=settings.fetch_deadline,
            max_bytes=settings.fetch_max_bytes or settings.max_image_bytes,
            user_agent=settings.fetch_user_agent,
            per_host_interval=settings.fetch_per_host_interval,
            retries=settings.fetch_retries,
            backoff=settings.fetch_backoff,
            max_backoff=settings.fetch_max_backoff,
            max_redirects=settings.fetch_max_redirects,
            respect_robots=settings.fetch_respect_robots,
            robots_ttl=settings.fetch_robots_ttl,
        )
