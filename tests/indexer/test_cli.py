"""The `lookalike` command: help with examples, JSON output, one-line errors."""

import json
import subprocess
import sys

import images_factory
import pytest

from indexer.cli import build_parser, main
from indexer.sample import write_sample_catalogue

COMMANDS = [
    ["demo"], ["ingest"], ["embed"], ["index"], ["index", "build"], ["index", "stats"],
    ["search"], ["evaluate"], ["train"], ["models"], ["up"], ["map"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "lookalike " in out.split("examples:")[1]


def run(home, *args):
    return main(["--home", str(home), *args])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("lookalike: error: ")
    return err


def test_ingest_embed_build_search_json(tmp_path, capsys):
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
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    assert run(tmp_path / "home", *args) == 2
    assert message in one_line_error(capsys)


def test_search_before_an_index_and_with_a_corrupt_query(tmp_path, capsys):
    good = tmp_path / "good.jpg"
    good.write_bytes(images_factory.jpeg_bytes())
    assert run(tmp_path / "home", "search", str(good)) == 2
    assert "no index yet" in one_line_error(capsys)

    photos = tmp_path / "photos"
    write_sample_catalogue(photos, products=2, shots=2)
    for step in (["ingest", str(photos)], ["embed"], ["index", "build"]):
        assert run(tmp_path / "home", *step) == 0
    capsys.readouterr()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(images_factory.text_bytes())
    assert run(tmp_path / "home", "search", str(broken)) == 2
    assert "not an image: unrecognised format" in one_line_error(capsys)


def test_invalid_factory_string_is_refused(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_sample_catalogue(photos, products=2, shots=2)
    assert run(tmp_path / "home", "ingest", str(photos)) == 0
    assert run(tmp_path / "home", "embed") == 0
    capsys.readouterr()
    assert run(tmp_path / "home", "index", "build", "--factory", "IVF-banana") == 2
    assert "IVF-banana" in one_line_error(capsys)


def test_bad_option_values_are_refused_by_the_parser(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "search", "q.jpg", "-k", "0"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "must be at least 1" in result.stderr


@pytest.mark.parametrize("command", [["up"], ["demo"]])
def test_up_and_demo_name_a_busy_port_before_starting_anything(tmp_path, capsys, command):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(tmp_path / "home", *command, "--bind", f"127.0.0.1:{port}") == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(capsys)
    assert not (tmp_path / "home" / "logs").exists()  # nothing was started


def test_up_refuses_a_malformed_bind_address(tmp_path, capsys):
    assert run(tmp_path / "home", "up", "--bind", "8000") == 2
    assert "expected host:port" in one_line_error(capsys)


def test_demo_no_serve_indexes_here_and_prints_one_search(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_sample_catalogue(photos, products=2, shots=2, seed=4)
    assert run(tmp_path / "home", "demo", "--no-serve", "--images", str(photos), "-k", "2") == 0
    out = capsys.readouterr().out
    assert "done: 4/4 fetched, 4 indexed, 0 failed" in out and "is current" in out
    first_hit = out.split("searching with")[1].splitlines()[1]
    assert first_hit.split()[1] == "1.000"  # the query image itself, score 1


def test_map_caches_the_current_versions_map_and_draws_a_png(tmp_path, capsys, monkeypatch):
    from PIL import Image
    from training_factory import write_tiny_model

    from indexer import maps
    from indexer.config import Settings

    monkeypatch.setenv("LOOKALIKE_MODEL", str(write_tiny_model(tmp_path / "tiny")))
    home = tmp_path / "home"
    images_factory.write_labelled_folder(tmp_path / "photos", classes=3, per_class=5)
    assert run(home, "map") == 2
    assert "no index version" in one_line_error(capsys)
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
    assert "must end in .png" in one_line_error(capsys)
    assert run(home, "map", "--version", "nope") == 2
    assert "not an index version name" in one_line_error(capsys)
