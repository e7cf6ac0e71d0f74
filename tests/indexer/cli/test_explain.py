"""`lookalike explain`: the score, where it comes from, a PNG of both overlays, JSON."""

import json

import pytest
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def indexed_home(tmp_path_factory, sample_catalogue):
    from indexer.cli import main

    photos = sample_catalogue(products=3, shots=3, seed=1)
    home = tmp_path_factory.mktemp("home")
    assert main(["--home", str(home), "ingest", str(photos)]) == 0
    return home, sorted(photos.rglob("*.jpg"))


def first_hits(run, capsys, home, query) -> list[dict]:
    capsys.readouterr()
    assert run(home, "search", str(query), "-k", "3", "--json") == 0
    return json.loads(capsys.readouterr().out)["results"]


def test_explain_prints_the_score_and_writes_a_png(indexed_home, run, capsys, tmp_path):
    home, shots = indexed_home
    hit = first_hits(run, capsys, home, shots[0])[1]
    png = tmp_path / "why" / "pair.png"
    assert run(home, "explain", str(shots[0]), hit["item_id"], "--png", str(png)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("score ") and "(decomposition, model " in out[0]
    # The score is PyTorch's fp32 cosine; the search's, with this machine's runtime.
    assert float(out[0].split()[1]) == pytest.approx(hit["score"], abs=0.1)
    assert out[0].endswith(f"; the search scores it {hit['score']:.4f})")
    assert out[1].startswith("  query  320x320: strongest at x ")
    assert out[2].startswith("  result 320x320: strongest at x ")
    assert out[3] == f"saved {png}"
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG" and image.height > 320 and image.width > 640


def test_explain_json_with_occlusion(indexed_home, run, capsys):
    home, shots = indexed_home
    hit = first_hits(run, capsys, home, shots[3])[0]
    assert run(home, "explain", str(shots[3]), hit["item_id"], "--method", "occlusion",
               "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["method"] == "occlusion" and body["result_item_id"] == hit["item_id"]
    assert len(body["query_heatmap"]) == 7 and body["query_image"]["width"] == 320
    assert body["png"] is None and body["query"] == str(shots[3])


def test_unknown_item_missing_file_or_bad_png_name_is_one_line(indexed_home, run,
                                                               one_line_error, tmp_path):
    home, shots = indexed_home
    assert run(home, "explain", str(shots[0]), "a" * 64) == 2
    assert one_line_error() == f"lookalike: error: no item {'a' * 64}"
    assert run(home, "explain", str(tmp_path / "none.jpg"), "a" * 64) == 2
    assert "no such image file" in one_line_error()
    assert run(home, "explain", str(shots[0]), "a" * 64, "--png", str(tmp_path / "x.jpg")) == 2
    assert "must end in .png" in one_line_error()
