"""indexer.jobs.inline: a whole job in this process, for ``lookalike ingest`` and
``Lookalike.ingest``: downloads included, every image stored or failed with its reason."""

from __future__ import annotations

import json
import os

import images_factory
import pytest
from jobs_harness import build_site, make_settings, serve_images, vector_counts, write_manifest

from indexer.catalog import Catalog
from indexer.cli import main
from indexer.engine import Lookalike
from indexer.jobs import JobProgress


def use_settings(monkeypatch, settings) -> None:
    """``settings`` as LOOKALIKE_* variables, for the command line's ``main()``."""
    for name in [n for n in os.environ if n.startswith("LOOKALIKE_")]:
        monkeypatch.delenv(name)
    for name, value in settings.model_dump(mode="json", exclude_unset=True).items():
        text = json.dumps(value) if isinstance(value, list | bool) else str(value)
        monkeypatch.setenv(f"LOOKALIKE_{name.upper()}", text)
    monkeypatch.chdir(settings.home.parent)  # no stray .env file


@pytest.mark.parametrize("flags", [[], ["--inline"]], ids=["plain", "inline"])
def test_plain_ingest_of_a_url_manifest_downloads_stores_and_indexes_everything(
    tmp_path, tiny_model, shop, monkeypatch, capsys, flags
):
    """The bug: ``lookalike ingest catalogue.csv`` with an ``image_url`` column printed
    ``URLs pending 3`` and never downloaded them."""
    settings = make_settings(tmp_path, tiny_model)
    urls = serve_images(shop, range(5)) + [shop.url("/gone.jpg")]
    manifest = write_manifest(tmp_path / "catalogue.csv", urls)
    use_settings(monkeypatch, settings)

    assert main(["ingest", str(manifest), *flags]) == 0

    out = capsys.readouterr().out
    assert "job 1 (ingest) done: 6/6 fetched, 5 indexed, 1 failed" in out
    assert f"failed {shop.url('/gone.jpg')}: HTTP 404" in out
    assert "pending" not in out
    with Lookalike.open(settings) as engine:
        assert engine.catalog.counts() == {
            "stored": 0, "embedded": 0, "indexed": 5, "failed": 0, "deleted": 0,
        }
        assert vector_counts(engine) == (5, 5, 5)
        hit = engine.search(images_factory.jpeg_bytes(seed=3), k=1)[0]
        assert hit.item.product_id == "p3" and hit.item.source_url == urls[3]
        assert hit.score == pytest.approx(1.0, abs=1e-3)


def test_plain_ingest_crawls_a_site_without_flags(tmp_path, tiny_model, shop, monkeypatch,
                                                  capsys):
    build_site(shop, {1: 1, 2: 2})
    settings = make_settings(tmp_path, tiny_model)
    use_settings(monkeypatch, settings)
    assert main(["ingest", shop.url("/"), "--once"]) == 0
    assert "done: 2/2 fetched, 2 indexed, 0 failed" in capsys.readouterr().out
    with Catalog(settings) as catalog:
        assert catalog.sources() == []  # --once: not remembered for re-crawls


def test_engine_ingest_returns_the_jobs_progress_with_a_progress_bar(
    engine, tmp_path, capsys
):
    folder = tmp_path / "photos"
    images_factory.write_labelled_folder(folder, classes=2, per_class=3)
    (folder / "class-00" / "broken.jpg").write_bytes(images_factory.truncated_jpeg_bytes())

    state = engine.ingest(folder, progress=True)

    assert isinstance(state, JobProgress) and state.job.status == "done"
    assert state.fetches == {"pending": 0, "done": 6, "failed": 1}
    assert state.items["indexed"] == 6 and state.failed == 1
    ((location, reason),) = state.failures
    assert location.endswith("broken.jpg") and reason == "truncated image data"
    captured = capsys.readouterr()
    assert captured.out == "" and f"ingest job {state.job.id}" in captured.err
    assert engine.catalog.sources() == []  # the Python API registers only when asked

    again = engine.ingest(folder, register=True)  # nothing new: nothing embedded again
    assert (again.job.status, again.items["indexed"], again.failed) == ("done", 6, 1)
    assert vector_counts(engine) == (6, 6, 6)
    assert [s.location for s in engine.catalog.sources()] == [str(folder.resolve())]
