"""Probes, metrics, stats and the OpenAPI document."""

import pytest
from prometheus_text import samples, value

pytestmark = pytest.mark.slow


def test_healthz_and_readyz(client, indexed):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["index_version"] == indexed.indexes.current_version()


def test_metrics_count_requests_and_search_latency(client, indexed):
    target = indexed.catalog.items_with_status("indexed")[0]
    client.post("/api/v1/search", json={"item_id": target.id})
    client.get("/api/v1/items/" + "c" * 64)
    response = client.get("/metrics")
    assert response.mimetype == "text/plain"
    found = samples(response.get_data(as_text=True))
    requests = "lookalike_http_requests_total"
    assert value(found, requests, method="POST", route="/api/v1/search", status="200") == 1
    assert value(found, requests, method="GET", route="/api/v1/items/<item_id>",
                 status="404") == 1  # fmt: skip
    assert value(found, "lookalike_search_duration_seconds_count", query="item") == 1
    latency = "lookalike_http_request_duration_seconds_bucket"
    assert value(found, latency, route="/api/v1/search", le="+Inf") == 1
    # the documented buckets, 1 ms to 10 s
    assert sorted(float(dict(labels)["le"]) for name, labels in found
                  if name == latency and ("route", "/api/v1/search") in labels) == [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        float("inf"),
    ]  # fmt: skip
    assert value(found, "lookalike_index_vectors") == 12
    assert value(found, "lookalike_model_loaded") == 1
    assert not [name for name, _ in found if name.endswith("_created")]  # as under gunicorn


def test_metrics_without_an_index_say_0_vectors(home_for):
    from search_api import create_app

    client = create_app(engine=home_for("no-index")).test_client()
    found = samples(client.get("/metrics").get_data(as_text=True))
    assert value(found, "lookalike_index_vectors") == 0
    assert value(found, "lookalike_model_loaded") == 1


def test_stats(client, indexed):
    body = client.get("/api/v1/stats").json
    assert body["items"]["indexed"] == 12
    assert body["index"]["vectors"] == 12 and body["index"]["shards"] == 1
    assert body["index"]["version"] == body["serving_version"]
    assert body["model"]["version"] == indexed.model.version and body["model"]["loaded"]


def test_openapi_document_covers_every_route(client):
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.")
    assert client.get("/openapi.json").json == document
    app_routes = {
        rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
        for rule in client.application.url_map.iter_rules()
        if rule.endpoint not in ("static", "root_openapi")
        and not rule.endpoint.startswith("webui.")  # a web extension's pages, not the API
    }
    assert app_routes == set(document["paths"])
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert "responses" in operation, (path, method)


def test_passwords_in_service_urls_never_reach_stats_errors_or_logs(
    home_for, postgres_schema_url, sample_folder, auth, caplog
):
    import logging

    import sqlalchemy as sa

    from search_api import create_app

    secrets = ("db-hunter2-secret", "broker-hunter2-secret", "redis-hunter2-secret")
    # PostgreSQL trusts local connections here, so the password is carried but unused
    database_url = sa.make_url(postgres_schema_url).set(password=secrets[0])
    caplog.set_level(logging.DEBUG)
    engine = home_for(
        "secret", database_url=database_url.render_as_string(hide_password=False),
        broker_url=f"redis://:{secrets[1]}@127.0.0.1:1/0",
        redis_url=f"redis://:{secrets[2]}@127.0.0.1:1/0",
    )  # fmt: skip
    client = create_app(engine=engine).test_client()
    shown = [
        client.get("/api/v1/stats").get_data(as_text=True),
        client.get("/readyz").get_data(as_text=True),  # 503: no index yet
        client.post("/api/v1/search", json={"item_id": "0" * 64}).get_data(as_text=True),
        client.get("/api/v1/items/" + "0" * 64).get_data(as_text=True),
        repr(engine.settings), repr(engine.catalog),
    ]
    engine.ingest(sample_folder)
    engine.embed()
    engine.build_index()
    shown.append(client.get("/api/v1/stats").get_data(as_text=True))
    assert '"indexed":12' in shown[-1].replace(" ", "")  # the password-carrying URL works
    shown += [record.getMessage() for record in caplog.records]
    for secret in secrets:
        assert not [text for text in shown if secret in text], secret
