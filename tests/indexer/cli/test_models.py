"""`lookalike models list | use`: each model's test metrics with the split they were
measured on, and a warning (the command still succeeds) when they are thin or missing."""

import json

import pytest
from training_factory import write_tiny_model

from indexer.config import Settings
from indexer.model.card import read_card, write_card
from indexer.model.modeldir import pretrained_version
from indexer.model.quality import SplitRecord

FIGURES = {"recall_at_1": 96.1, "recall_at_2": 98.3, "map_at_r": 42.4, "queries": 2031,
           "classes": 41}
SPLIT = SplitRecord("class_split", "class_split.csv", "0123abcd" * 8, 41, 2031).as_dict()


def model_dir(home, name: str, metrics: dict, created: str):
    """A real (tiny) model directory whose card says ``metrics``: no training needed."""
    directory = write_tiny_model(home / "models" / name)
    card = read_card(directory)
    card.version, card.metrics, card.created = name, metrics, created
    card.loss = {"name": "softtriple"}
    write_card(directory, card)
    return directory


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    model_dir(home, "wide", {"test": FIGURES, "test_split": SPLIT}, "2025-03-01T00:00:00+00:00")
    few = {**FIGURES, "classes": 5, "queries": 30}
    model_dir(home, "narrow", {"test": few, "test_split": {**SPLIT, "classes": 5, "images": 30}},
              "2025-02-01T00:00:00+00:00")
    model_dir(home, "old", {"test": FIGURES, "best_epoch": 4}, "2025-01-01T00:00:00+00:00")
    model_dir(home, "untested", {}, "2024-12-01T00:00:00+00:00")
    return home


def listing(run, home, capsys) -> dict[str, list[str]]:
    """Each model's line and the indented lines under it, by name."""
    assert run(home, "models", "list") == 0
    rows: dict[str, list[str]] = {}
    name = ""
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("      "):
            rows[name].append(line.strip())
        else:
            name = line[2:].split()[0]
            rows[name] = [line]
    return rows


def test_list_shows_each_models_metrics_and_the_split_they_were_measured_on(run, home, capsys):
    rows = listing(run, home, capsys)
    assert list(rows) == ["pretrained", "wide", "narrow", "old", "untested"]
    assert rows["wide"][0].split()[1:3] == ["softtriple", "dim"]
    assert "R@1 96.1  MAP@R 42.4" in rows["wide"][0]
    assert rows["wide"][1:] == ["test: R@1 96.1  MAP@R 42.4  on class_split.csv "
                                "(sha256 0123abcd), 41 classes, 2,031 images"]
    assert rows["narrow"][1:] == ["test: R@1 96.1  MAP@R 42.4  on class_split.csv "
                                  "(sha256 0123abcd), 5 classes, 30 images"]
    # A card from before splits were recorded still loads and lists.
    assert rows["old"][1:] == ["test: R@1 96.1  MAP@R 42.4  on split not recorded, "
                               "41 classes, 2,031 images"]
    assert "no test metrics" in rows["untested"][0] and rows["untested"][1:] == []
    assert "tf_efficientnet_lite0" in rows["pretrained"][0]


def test_use_warns_on_stderr_about_few_test_classes_and_still_switches(run, home, capsys):
    assert run(home, "models", "use", "narrow") == 0
    captured = capsys.readouterr()
    assert "now using narrow" in captured.out
    [warning] = captured.err.strip().splitlines()
    assert warning.startswith("lookalike: warning: narrow was evaluated on only 5 test "
                              "classes (class_split.csv (sha256 0123abcd), 30 images)")
    assert (home / "models" / "CURRENT").read_text().strip() == "narrow"


def test_use_warns_when_a_model_has_no_test_metrics(run, home, capsys):
    assert run(home, "models", "use", "untested") == 0
    [warning] = capsys.readouterr().err.strip().splitlines()
    assert warning == ("lookalike: warning: untested has no test metrics: its quality on "
                       "unseen products is unknown; measure it with "
                       "`lookalike evaluate DATA --model untested`")


def test_use_says_nothing_more_for_a_model_tested_on_enough_classes(run, home, capsys):
    for name in ("wide", "old", "pretrained"):
        assert run(home, "models", "use", name) == 0
        assert capsys.readouterr().err == "", name


def test_saved_evaluations_are_listed_under_their_model_pretrained_included(run, home, capsys):
    evaluations = Settings(home=home).evaluations_dir
    evaluations.mkdir(parents=True)
    split = {**SPLIT, "classes": 12, "images": 80}
    for name, version, created in (("pre.json", pretrained_version("tf_efficientnet_lite0"),
                                    "2025-04-01"), ("narrow.json", "narrow", "2025-04-02")):
        (evaluations / name).write_text(json.dumps(
            {"model_version": version, "metrics": {**FIGURES, "map_at_r": 37.3},
             "split": split, "created": created}))
    (evaluations / "garbage.json").write_text("[]")

    rows = listing(run, home, capsys)
    assert rows["pretrained"][1:] == ["evaluated: R@1 96.1  MAP@R 37.3  on class_split.csv "
                                      "(sha256 0123abcd), 12 classes, 80 images  [pre.json]"]
    assert rows["narrow"][2:] == ["evaluated: R@1 96.1  MAP@R 37.3  on class_split.csv "
                                  "(sha256 0123abcd), 12 classes, 80 images  [narrow.json]"]
    # 12 classes in a later evaluation: enough, so `use` no longer warns.
    assert run(home, "models", "use", "narrow") == 0
    assert capsys.readouterr().err == ""
