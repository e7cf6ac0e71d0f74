"""`lookalike search` with the API's filters, through the engine's one search."""

import json

import pytest

from indexer.cli import main


def run(home, *args):
    return main(["--home", str(home), *args])


@pytest.fixture(scope="module")
def indexed_home(tmp_path_factory, sample_catalogue):
    photos = sample_catalogue(products=3, shots=3, seed=1)
    home = tmp_path_factory.mktemp("home")
    for step in (["ingest", str(photos)], ["embed"], ["index", "build"]):
        assert run(home, *step) == 0
    return home, sorted(photos.rglob("*.jpg"))


def search_json(capsys, home, *args) -> dict:
    capsys.readouterr()
    assert run(home, "search", *args, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_filters_and_grouping_match_the_apis(indexed_home, capsys):
    home, shots = indexed_home
    query = str(shots[0])
    everything = search_json(capsys, home, query, "-k", "9")["results"]
    label = everything[-1]["label"]
    labelled = search_json(capsys, home, query, "-k", "9", "--label", label)
    assert {hit["label"] for hit in labelled["results"]} == {label}
    assert len(labelled["results"]) == 3
    assert labelled["index_version"] and labelled["model_version"]
    product = search_json(capsys, home, query, "--product-id", label)["results"]
    assert [hit["item_id"] for hit in product] == [
        hit["item_id"] for hit in everything if hit["product_id"] == label
    ]
    grouped = search_json(capsys, home, query, "-k", "5", "--group-by-product")["results"]
    assert len({hit["product_id"] for hit in grouped}) == len(grouped) == 3
    floor = (everything[4]["score"] + everything[5]["score"]) / 2  # JSON scores are rounded
    above = search_json(capsys, home, query, "-k", "9", "--min-score", str(floor))["results"]
    assert [hit["item_id"] for hit in above] == [h["item_id"] for h in everything[:5]]
    assert set(everything[0]) == {"item_id", "score", "label", "product_id", "title", "path"}

    capsys.readouterr()
    assert run(home, "search", query, "-k", "5", "--group-by-product") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4
    assert out[-1] == "(fewer than 5 found: the index or the filters left no more)"
    assert out[0].split()[1] == "1.000"


def test_a_bad_k_or_min_score_is_one_line_naming_the_rule(indexed_home, capsys):
    home, shots = indexed_home
    assert run(home, "search", str(shots[0]), "-k", "101") == 2
    err = capsys.readouterr().err
    assert err == ("lookalike: error: k must be an integer from 1 to 100 "
                   "(LOOKALIKE_API_SEARCH_MAX_K), got 101\n")  # fmt: skip
    assert run(home, "search", str(shots[0]), "--min-score", "1.5") == 2
    err = capsys.readouterr().err
    assert err == "lookalike: error: min_score must be a number from -1 to 1, got 1.5\n"


def test_box_searches_by_the_crop_and_a_bad_box_is_one_line(indexed_home, capsys, tmp_path):
    from PIL import Image

    home, shots = indexed_home
    query = str(shots[4])  # a 320x320 sample photo
    boxed = search_json(capsys, home, query, "-k", "4", "--box", "10,20.5,250,300")
    assert boxed["box"] == [10, 20, 250, 300]
    cropped = tmp_path / "crop.png"
    Image.open(query).convert("RGB").crop((10, 20, 250, 300)).save(cropped)
    by_hand = search_json(capsys, home, str(cropped), "-k", "4")
    assert by_hand["box"] is None
    assert [(h["item_id"], h["score"]) for h in boxed["results"]] == [
        (h["item_id"], h["score"]) for h in by_hand["results"]
    ]

    for box, message in (
        ("0,0,321,100", "box (0, 0, 321, 100) is outside the 320x320 photo "
                        "(x from 0 to 320, y from 0 to 320)"),
        ("100,10,20,60", "box (100, 10, 20, 60) is inverted: x1 must be greater than x0 "
                         "and y1 greater than y0"),
        ("0,0,8,8", "box (0, 0, 8, 8) is 8x8 pixels, smaller than the 16x16 minimum"),
        ("1,2,3", "box must be 4 numbers \"x0,y0,x1,y1\" in pixels, got '1,2,3'"),
    ):  # fmt: skip
        capsys.readouterr()
        assert run(home, "search", query, "--box", box) == 2
        assert capsys.readouterr().err == f"lookalike: error: {message}\n"
