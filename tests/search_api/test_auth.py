"""Writes need the key in the Authorization header; reads are open unless configured."""

import pytest

from search_api import create_app

pytestmark = pytest.mark.slow

KEY = "test-key-0123456789abcdef"
WRITES = [
    ("post", "/api/v1/reindex"),
    ("post", "/api/v1/items"),
    ("post", "/api/v1/sources"),
    ("delete", "/api/v1/items/" + "a" * 64),
]


@pytest.mark.parametrize(("method", "path"), WRITES)
@pytest.mark.parametrize(
    ("headers", "query", "says"),
    [
        ({}, "", "missing API key"),
        ({"Authorization": "Bearer wrong-key-0123456789abcdef"}, "", "wrong API key"),
        ({"Authorization": f"Basic {KEY}"}, "", "missing API key"),
        ({}, f"?api_key={KEY}", "query string"),
        ({"Authorization": f"Bearer {KEY}"}, f"?key={KEY}", "query string"),
    ],
)
def test_writes_without_the_right_key_are_401(client, method, path, headers, query, says):
    response = getattr(client, method)(path + query, headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert says in response.json["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_with_no_key_configured_writes_are_refused(home_for):
    client = create_app(engine=home_for("nokey", api_key=None)).test_client()
    response = client.post("/api/v1/reindex", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 401 and "no API key" in response.json["detail"]


def test_reads_are_open_unless_a_setting_closes_them(client, home_for, auth):
    assert client.get("/api/v1/stats").status_code == 200
    closed = create_app(engine=home_for("closed", api_read_key_required=True)).test_client()
    assert closed.get("/api/v1/stats").status_code == 401
    assert closed.get("/api/v1/stats", headers=auth).status_code == 200
    assert closed.get("/healthz").status_code == 200  # probes stay open
