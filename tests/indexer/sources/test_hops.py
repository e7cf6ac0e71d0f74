"""indexer.sources.hops: schemes, credentials, host names and every resolved address.

Through a real Fetcher and, for the request target, plan_hop itself. The
loopback guard (conftest.py) shows no connection was attempted to a refused one.
"""

from __future__ import annotations

import pytest
from fetch_harness import fake_resolver, fetch_error, make_fetcher

from indexer.sources.failures import FetchError
from indexer.sources.hops import plan_hop
from indexer.sources.netguard import parse_networks
from indexer.sources.pinned import Deadline


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://127.0.0.1:70/_SET", "ftp://127.0.0.1/a.jpg", "dict://x/"],
)
def test_only_http_and_https_schemes(url, connections):
    error = fetch_error(make_fetcher(), url)
    scheme = url.split(":", 1)[0]
    assert error.reason.startswith(f"scheme '{scheme}' not allowed")
    assert error.permanent and error.attempts == 1
    assert connections == []


def test_loopback_refused_unless_allowed(server, connections):
    error = fetch_error(make_fetcher(allow_networks=()), server.url("/a.jpg"))
    assert error.reason == "address 127.0.0.1 is loopback"
    assert error.permanent
    assert connections == [] and server.requests == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "address 169.254.169.254 is link-local"),
        ("http://[::1]/", "address ::1 is loopback"),
        (
            "http://[::ffff:127.0.0.1]/",
            "address ::ffff:127.0.0.1 is loopback (it leads to 127.0.0.1)",
        ),
        (
            "http://[::ffff:a9fe:a9fe]/",
            "address ::ffff:169.254.169.254 is link-local (it leads to 169.254.169.254)",
        ),
        ("http://10.0.0.5/a.jpg", "address 10.0.0.5 is private"),
        ("http://172.16.0.1/", "address 172.16.0.1 is private"),
        ("http://192.168.1.1/", "address 192.168.1.1 is private"),
        ("http://100.64.0.1/", "address 100.64.0.1 is carrier-grade NAT (100.64.0.0/10)"),
        ("http://0.0.0.0/", "address 0.0.0.0 is unspecified"),
        ("http://224.0.0.1/", "address 224.0.0.1 is multicast"),
        ("http://240.0.0.1/", "address 240.0.0.1 is reserved"),
        ("http://[fd00::1]/", "address fd00::1 is unique-local (private)"),
        ("http://[fe80::1]/", "address fe80::1 is link-local"),
    ],
)
def test_literal_internal_addresses_refused(url, reason, connections):
    error = fetch_error(make_fetcher(allow_networks=()), url)
    assert (error.reason, error.permanent, error.attempts) == (reason, True, 1)
    assert connections == []


@pytest.mark.parametrize("host", ["localhost", "2130706433", "127.1", "0x7f000001"])
def test_other_spellings_of_loopback_refused_after_resolution(host, connections):
    error = fetch_error(make_fetcher(allow_networks=()), f"http://{host}/a.jpg")
    assert error.reason.endswith("is loopback") and error.permanent
    assert connections == []


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("10.1.2.3", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback (it leads to 127.0.0.1)"),
        ("100.64.1.1", "carrier-grade NAT (100.64.0.0/10)"),
        ("fd12:3456::1", "unique-local (private)"),
        ("fe80::1", "link-local"),
        ("64:ff9b::a00:1", "private (it leads to 10.0.0.1)"),
    ],
)
def test_host_names_resolving_to_internal_addresses_refused(ip, kind, connections):
    fetcher = make_fetcher(allow_networks=(), resolve=fake_resolver({"shop.example": ip}))
    error = fetch_error(fetcher, "http://shop.example/a.jpg")
    assert error.reason == f"address {ip} of shop.example is {kind}"
    assert error.permanent
    assert connections == []


def test_every_resolved_address_is_checked(server, connections):
    # One good answer does not excuse a bad one: the host is refused as a whole.
    resolve = fake_resolver({"shop.example": ["127.0.0.1", "10.0.0.1"]})
    error = fetch_error(make_fetcher(resolve=resolve), server.url("/a.jpg", host="shop.example"))
    assert error.reason == "address 10.0.0.1 of shop.example is private"
    assert connections == [] and server.requests == []


def test_unknown_host_is_a_permanent_failure(connections):
    error = fetch_error(make_fetcher(resolve=fake_resolver({})), "http://nowhere.example/")
    assert (error.reason, error.permanent, error.attempts) == (
        "host nowhere.example not found",
        True,
        1,
    )


def test_credentials_in_urls_refused(server):
    error = fetch_error(make_fetcher(), server.url("/a.jpg").replace("//", "//user:pw@"))
    assert error.reason == "credentials in URLs are not allowed"


def plan(url: str, **kwargs):
    resolve = fake_resolver({"shop.example": "127.0.0.1", "xn--bcher-kva.example": "127.0.0.2"})
    return plan_hop(
        url,
        url,
        Deadline(5.0),
        redirected=kwargs.pop("redirected", False),
        resolver=resolve,
        allow_networks=parse_networks(["127.0.0.0/8"]),
    )


def test_request_target_cannot_smuggle_a_space_or_a_line_break():
    hop = plan('http://shop.example/a b/\u00e9.jpg?q=1 2&x="y"')
    assert hop.target == "/a%20b/%C3%A9.jpg?q=1%202&x=%22y%22"
    assert plan("http://shop.example").target == "/"


def test_host_name_idna_encoded_and_default_port_by_scheme():
    hop = plan("https://B\u00fccher.example/a.jpg")
    endpoint = hop.endpoint
    assert (endpoint.scheme, endpoint.host, endpoint.port) == (
        "https",
        "xn--bcher-kva.example",
        443,
    )
    assert [str(ip) for ip in endpoint.addresses] == ["127.0.0.2"]
    assert plan("http://shop.example:8080/").endpoint.port == 8080


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("//shop.example/a.jpg", "not an absolute http(s) URL"),
        ("http:///a.jpg", "URL has no host"),
        ("http://shop.example:99999/", "invalid URL: Port out of range 0-65535"),
        ("http://shop!.example/", "invalid host name 'shop!.example'"),
    ],
)
def test_malformed_urls_refused(url, reason):
    with pytest.raises(FetchError) as info:
        plan(url)
    assert (info.value.reason, info.value.permanent) == (reason, True)
    with pytest.raises(FetchError) as info:
        plan(url, redirected=True)
    assert info.value.reason.startswith("redirect to ") and info.value.reason.endswith(reason)
