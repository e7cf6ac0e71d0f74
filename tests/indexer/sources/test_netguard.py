"""indexer.sources.netguard: which addresses are internal, allow-lists, resolving once."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from indexer.sources.netguard import (
    display,
    embedded_ipv4,
    literal_address,
    parse_networks,
    refusal,
    resolve,
)

ip = ipaddress.ip_address


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata service
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT (100.64.0.0/10)"),
        ("100.127.255.254", "carrier-grade NAT (100.64.0.0/10)"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("fd00::1", "unique-local (private)"),
        ("fc00::1", "unique-local (private)"),
        ("fec0::1", "site-local"),
        ("192.0.2.1", "not globally routable"),  # documentation
        ("198.18.0.1", "not globally routable"),  # benchmarking
        ("0.1.2.3", "not globally routable"),  # "this network"
        ("::ffff:127.0.0.1", "loopback (it leads to 127.0.0.1)"),
        ("::ffff:10.0.0.1", "private (it leads to 10.0.0.1)"),
        ("::ffff:169.254.169.254", "link-local (it leads to 169.254.169.254)"),
        ("64:ff9b::a9fe:a9fe", "link-local (it leads to 169.254.169.254)"),  # NAT64
        ("2002:7f00:1::1", "loopback (it leads to 127.0.0.1)"),  # 6to4
    ],
)
def test_internal_addresses_refused(address, kind):
    assert refusal(ip(address)) == kind


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700::1111",
     "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"],
)  # fmt: skip
def test_public_addresses_allowed(address):
    assert refusal(ip(address)) is None


def test_allow_list_lets_internal_networks_through():
    allow = parse_networks(["127.0.0.0/8", "10.1.0.0/16", "fd00::/8"])
    assert refusal(ip("127.0.0.1"), allow) is None
    assert refusal(ip("10.1.2.3"), allow) is None
    assert refusal(ip("fd00::5"), allow) is None
    assert refusal(ip("10.2.0.1"), allow) == "private"
    assert refusal(ip("::1"), allow) == "loopback"  # IPv4 loopback allowed, not IPv6's
    # A mapped address goes where its IPv4 address goes, so the IPv4 allow-list counts.
    assert refusal(ip("::ffff:127.0.0.1"), allow) is None


def test_parse_networks_drops_host_bits():
    assert parse_networks([" 127.0.0.1/8 ", "::1"]) == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(ValueError):
        parse_networks(["not-a-network"])


def test_embedded_ipv4():
    assert embedded_ipv4(ip("::ffff:1.2.3.4")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("64:ff9b::102:304")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("2002:102:304::")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("2606:4700::1111")) is None
    assert embedded_ipv4(ip("1.2.3.4")) is None


def test_display_writes_mapped_addresses_readably():
    assert display(ip("::ffff:127.0.0.1")) == "::ffff:127.0.0.1"
    assert display(ip("::1")) == "::1" and display(ip("10.0.0.1")) == "10.0.0.1"


def test_literal_address():
    assert literal_address("10.0.0.1") == ip("10.0.0.1")
    assert literal_address("[::1]") == ip("::1")
    assert literal_address("shop.example") is None
    assert literal_address("127.1") is None  # not canonical: left to the resolver


def _answer(*ips: str, port: int = 80) -> list[tuple]:
    rows = []
    for text in ips:
        if ":" in text:
            rows.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (text, port, 0, 0)))
        else:
            rows.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (text, port)))
    return rows


def test_resolve_returns_every_address_once_in_order():
    calls = []

    def resolver(host, port, family=0, type=0, proto=0, flags=0):
        calls.append((host, port, type))
        return _answer("93.184.216.34", "2606:2800::1", "93.184.216.34") + [
            (socket.AF_UNIX, socket.SOCK_STREAM, 0, "", "/tmp/sock")
        ]

    assert resolve("shop.example", 443, resolver) == [ip("93.184.216.34"), ip("2606:2800::1")]
    assert calls == [("shop.example", 443, socket.SOCK_STREAM)]


def test_resolve_leaves_literal_addresses_alone():
    def resolver(*args, **kwargs):
        raise AssertionError("a literal address needs no lookup")

    assert resolve("169.254.169.254", 80, resolver) == [ip("169.254.169.254")]
    assert resolve("::ffff:127.0.0.1", 80, resolver) == [ip("::ffff:127.0.0.1")]


def test_resolve_with_the_real_resolver():
    # /etc/hosts and numeric forms only: tests send no DNS queries.
    assert set(resolve("localhost", 80)) <= {ip("127.0.0.1"), ip("::1")}
    assert resolve("2130706433", 80) == [ip("127.0.0.1")]
