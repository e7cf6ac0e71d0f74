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
    ["search"], ["evaluate"], ["train"], ["models"],
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
    assert run(home, "ingest", str(photos)) == 0
    assert "added 9" in capsys.readouterr().out
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
