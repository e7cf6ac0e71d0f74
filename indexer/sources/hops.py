"""Check one URL a fetch is about to request, and resolve its host once.

Steps 1 and 2 of every request (:mod:`~indexer.sources.fetch`), for the first
URL and for each redirect: the scheme must be http or https, the URL may carry
no credentials, the host name must be a valid one; the host is resolved once and
every address it gives is checked (:mod:`~indexer.sources.netguard`). What comes
out is a :class:`Hop`: the checked addresses the connection is pinned to
(:mod:`~indexer.sources.pinned`) and a request target that cannot smuggle a
space or a line break into the request line. Refusals are permanent.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from indexer.sources.failures import FetchError, NotNow
from indexer.sources.netguard import (
    IPAddress,
    IPNetwork,
    Resolver,
    display,
    literal_address,
    refusal,
    resolve,
)
from indexer.sources.pinned import Deadline, Endpoint

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# Characters left as they are in a request target; the rest is percent-encoded,
# so a URL can never smuggle a space or a line break into the request line.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


@dataclass(frozen=True, slots=True)
class Hop:
    """One URL to request, already checked: where to connect and what to ask for."""

    url: str
    endpoint: Endpoint
    target: str  # request target: /path?query


def plan_hop(
    next_url: str,
    url: str,
    deadline: Deadline,
    *,
    redirected: bool,
    resolver: Resolver,
    allow_networks: Sequence[IPNetwork],
) -> Hop:
    """Check ``next_url`` and resolve its host (once); refuse what may not be fetched.

    ``url`` is the one the fetch was asked for (errors name it); ``redirected``
    says ``next_url`` came from a Location header, and the reason says so.
    """

    def refused(why: str, shown: str) -> FetchError:
        reason = f"redirect to {shown} refused: {why}" if redirected else why
        return FetchError(reason, permanent=True, url=url)

    try:
        parts = urlsplit(next_url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise refused(f"invalid URL: {exc}", repr(next_url)) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        why = f"scheme {scheme!r} not allowed (allowed: {', '.join(SCHEMES)})"
        raise refused(why if scheme else "not an absolute http(s) URL", next_url)
    if not host:
        raise refused("URL has no host", next_url)
    if parts.username is not None or parts.password is not None:
        raise refused("credentials in URLs are not allowed", host)
    literal = literal_address(host)
    if literal is None:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise refused(f"invalid host name {host!r}", repr(host)) from None
        if not _HOST_NAME.fullmatch(host):
            raise refused(f"invalid host name {host!r}", repr(host))
    port = port or DEFAULT_PORTS[scheme]
    addresses = _addresses(host, port, deadline, url, resolver)
    for address in addresses:
        why = refusal(address, allow_networks)
        if why is None:
            continue
        ip = display(address)
        if redirected:  # "redirect to 169.254.169.254 refused: link-local"
            raise refused(why if literal is not None else f"address {ip} is {why}", host)
        where = "" if literal is not None else f" of {host}"
        raise refused(f"address {ip}{where} is {why}", host)
    return Hop(
        url=next_url,
        endpoint=Endpoint(scheme, host, port, tuple(addresses)),
        target=_request_target(parts.path, parts.query),
    )


def _addresses(
    host: str, port: int, deadline: Deadline, url: str, resolver: Resolver
) -> list[IPAddress]:
    try:
        addresses = resolve(host, port, resolver)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)):
            raise FetchError(f"host {host} not found", permanent=True, url=url) from None
        raise FetchError(
            f"cannot resolve {host}: {exc.strerror or exc}", permanent=False, url=url
        ) from None
    if deadline.expired:  # a resolver can take long; nothing here can cut it short
        raise NotNow(str(deadline), permanent=False, url=url)
    if not addresses:
        raise FetchError(f"host {host} has no address", permanent=True, url=url)
    return addresses


def _request_target(path: str, query: str) -> str:
    target = quote(path or "/", safe=_PATH_SAFE)
    return f"{target}?{quote(query, safe=_QUERY_SAFE)}" if query else target
