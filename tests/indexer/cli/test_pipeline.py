"""`lookalike ingest | embed | search | map`: JSON output and one-line errors."""

import json

import images_factory
import pytest

from indexer.sample import write_sample_catalogue


def test_ingest_embed_build_search_json(tmp_path, capsys, run):
    photos = tmp_path / "photos"
    write_sample_catalogue(photos, products=3, shots=3, seed=1)
    home = tmp_path / "home"
    assert run(home, "ingest", str(photos)) == 0  # stores, embeds and indexes, here
    assert "done: 9/9 fetched, 9 indexed, 0 failed" in capsys.readouterr().out
    assert run(home, "embed") == 0
    assert run(home, "index", "build", "--shards", "2") == 0
    capsys.readouterr()

    query = sorted(photos.rglob("*.jpg"))[4]
    assert run(home, "search", str(query), "-k", "3", "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    results = answer["results"]
    assert len(results) == 3
    assert set(results[0]) >= {"item_id", "score", "label", "product_id", "path"}
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert open(results[0]["path"], "rb").read() == query.read_bytes()

    assert run(home, "index", "stats", "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["items"]["indexed"] == 9
    assert stats["index"]["n_shards"] == 2 and stats["index"]["total"] == 9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "/no/such/folder"], "no such file or folder"),
        (["search", "/no/such.jpg"], "no such image file"),
        (["index", "build"], "nothing to index"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, run, one_line_error, args, message):
    assert run(tmp_path / "home", *args) == 2
    assert message in one_line_error()


def test_search_before_an_index_and_with_a_corrupt_query(tmp_path, capsys, run, one_line_error):
    good = tmp_path / "good.jpg"
    good.write_bytes(images_factory.jpeg_bytes())
    assert run(tmp_path / "home", "search", str(good)) == 2
    assert "no index yet" in one_line_error()

    photos = tmp_path / "photos"
    write_sample_catalogue(photos, products=2, shots=2)
    for step in (["ingest", str(photos)], ["embed"], ["index", "build"]):
        assert run(tmp_path / "home", *step) == 0
    capsys.readouterr()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(images_factory.text_bytes())
    assert run(tmp_path / "home", "search", str(broken)) == 2
    assert "not an image: unrecognised format" in one_line_error()


def test_background_ingest_without_a_job_queue_records_nothing(
    tmp_path, capsys, run, one_line_error, no_job_queue
):
    photos = tmp_path / "photos"
    write_sample_catalogue(photos, products=1, shots=2)
    home = tmp_path / "home"
    assert run(home, "ingest", str(photos), "--background") == 2
    error = one_line_error()
    assert "--background: no job queue is installed" in error
    assert error.endswith("or run it here with --inline")
    assert run(home, "jobs", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_map_caches_the_current_versions_map_and_draws_a_png(
    tmp_path, capsys, monkeypatch, run, one_line_error
):
    from PIL import Image
    from training_factory import write_tiny_model

    from indexer import maps
    from indexer.config import Settings

    monkeypatch.setenv("LOOKALIKE_MODEL", str(write_tiny_model(tmp_path / "tiny")))
    home = tmp_path / "home"
    images_factory.write_labelled_folder(tmp_path / "photos", classes=3, per_class=5)
    assert run(home, "map") == 2
    assert "no index version" in one_line_error()
    for command in (["ingest", str(tmp_path / "photos")], ["embed"], ["index", "build"]):
        assert run(home, *command) == 0
    capsys.readouterr()

    png = tmp_path / "map.png"
    assert run(home, "map", "--points", "12", "--clusters", "3", "--png", str(png),
               "--size", "300") == 0
    out = capsys.readouterr().out
    assert "12 of 15 vectors, 3 clusters" in out and f"saved {png}" in out
    settings = Settings(home=home, _env_file=None)
    (version,) = maps.cached_versions(settings)
    assert f"map of index version {version}" in out
    assert maps.load_map(settings, version)["sampled"] == 12
    with Image.open(png) as image:
        assert image.size == (300, 300) and len(image.getcolors(300 * 300)) > 3

    assert run(home, "map", "--png", str(tmp_path / "map.jpg")) == 2
    assert "must end in .png" in one_line_error()
    assert run(home, "map", "--version", "nope") == 2
    assert "not an index version name" in one_line_error()
