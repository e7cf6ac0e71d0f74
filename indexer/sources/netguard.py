"""Which addresses a fetch may connect to, and resolving a host exactly once.

The risk is server-side request forgery: a shop's manifest or a crawled page names
a URL that points back into our own network (the cloud metadata service on
169.254.169.254, a database on 10.x, Redis on 127.0.0.1). Every address a host
resolves to is checked here before any connection is made, and the fetcher then
connects to one of exactly those addresses, so a DNS answer that changes between
check and use (rebinding) cannot move the connection elsewhere.

Addresses are judged with :mod:`ipaddress` (``is_global`` and friends) plus explicit
ranges, and IPv6 addresses that carry an IPv4 address inside (``::ffff:127.0.0.1``,
NAT64, 6to4) are judged by that IPv4 address too. Networks in an allow-list (for
tests, or an intranet catalogue) are let through whatever their kind.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ``socket.getaddrinfo`` or a stand-in with the same signature and result shape.
Resolver = Callable[..., list[tuple[Any, ...]]]

_PRIVATE_V4 = tuple(
    ipaddress.IPv4Network(cidr) for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_CGNAT_V4 = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL_V6 = ipaddress.IPv6Network("fc00::/7")
# The NAT64 well-known prefix: a gateway turns 64:ff9b::a.b.c.d into a.b.c.d.
_NAT64_V6 = ipaddress.IPv6Network("64:ff9b::/96")


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``["127.0.0.0/8", "::1"]`` as networks; host bits are dropped, not refused."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to (mapped, NAT64, 6to4), else None."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_V6:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _kind(ip: IPAddress) -> str | None:
    """What makes ``ip`` internal, or None for an ordinary public address."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address):
        if any(ip in network for network in _PRIVATE_V4):
            return "private"
        if ip in _CGNAT_V4:
            return "carrier-grade NAT (100.64.0.0/10)"
    else:
        if ip in _UNIQUE_LOCAL_V6:
            return "unique-local (private)"
        if ip.is_site_local:
            return "site-local"
    if ip.is_reserved:
        return "reserved"
    # Documentation, benchmarking, "this network" and the other special ranges.
    if ip.is_private or not ip.is_global:
        return "not globally routable"
    return None


def _allowed(ip: IPAddress, allow: Sequence[IPNetwork]) -> bool:
    return any(ip.version == network.version and ip in network for network in allow)


def refusal(ip: IPAddress, allow: Sequence[IPNetwork] = ()) -> str | None:
    """Why a connection to ``ip`` is refused (``"private"``, ``"link-local"``, …), or None."""
    if _allowed(ip, allow):
        return None
    inner = embedded_ipv4(ip)
    if inner is not None:
        if _allowed(inner, allow):
            return None
        why = _kind(inner)
        if why is not None:
            return f"{why} (it leads to {inner})"
        if ip.ipv4_mapped is not None or ip in _NAT64_V6:
            return None  # these reach exactly the IPv4 address inside, and that one is public
    return _kind(ip)


def display(ip: IPAddress) -> str:
    """``ip`` for messages: IPv4-mapped addresses as ``::ffff:127.0.0.1``, not ``::ffff:7f00:1``."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is written as one (``[…]`` stripped), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def resolve(host: str, port: int, resolver: Resolver = socket.getaddrinfo) -> list[IPAddress]:
    """Every TCP address of ``host`` in the resolver's order, without repeats.

    A literal IP address is returned as it is, without asking the resolver. Raises
    :class:`socket.gaierror` as ``getaddrinfo`` does; an empty list means the host
    has no IPv4 or IPv6 address.
    """
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in resolver(
        host, port, type=socket.SOCK_STREAM
    ):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses
