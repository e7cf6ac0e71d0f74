"""indexer.report.build: a whole report from a real evaluation of generated class photos."""

from __future__ import annotations

import json
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import images_factory
import pytest
from PIL import Image
from training_factory import write_tiny_model

from indexer.config import Settings
from indexer.evaluation import evaluate_folders
from indexer.report import ReportError, prepare_directory, write_report

# Folder names reach the page: two of them would break HTML unescaped.
CLASS_NAMES = ["Oat & Co <Natural>", "apple", "leek", "milk \"1.5%\"", "yoghurt"]


def write_named_classes(root: Path, names: list[str], per_class: int = 5) -> Path:
    for label, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            images_factory.class_photo(label, index).save(folder / f"img-{index}.jpg")
    return root


class Page(HTMLParser):
    """The page's images and its text, as a browser would show it (entities decoded)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    folder = write_named_classes(root / "photos", CLASS_NAMES)
    settings = Settings(home=root / "home", precision="fp32", loader_workers=0, device="cpu",
                        _env_file=None)
    model = write_tiny_model(root / "tiny")
    result = evaluate_folders([folder], settings, model=str(model), all_classes=True)
    return result, settings


def test_the_report_writes_the_page_the_map_and_a_picture_per_confused_pair(evaluated, tmp_path):
    result, settings = evaluated
    assert len(result.paths) == len(result.vectors) == 25
    page_path = write_report(result, tmp_path / "out" / "report", settings, pairs=3)
    directory = page_path.parent
    assert page_path == directory / "index.html"
    data = json.loads((directory / "report.json").read_text())
    assert data["metrics"] == result.metrics.as_dict()
    assert sorted(c["name"] for c in data["classes"]) == sorted(CLASS_NAMES)
    assert 1 <= len(data["confused_pairs"]) <= 3  # random weights: classes do get mixed up

    html = page_path.read_text()
    page = Page()
    page.feed(html)
    pictures = [f"pairs/pair-{n:02d}.png" for n in range(1, len(data["confused_pairs"]) + 1)]
    assert [p["image"] for p in data["confused_pairs"]] == pictures
    assert page.images == [*pictures, "map.png"]  # relative: the folder can move
    for image in page.images:
        assert Image.open(directory / image).format == "PNG", image
    with Image.open(directory / "map.png") as map_png:
        assert map_png.width > map_png.height  # five classes: a colour key beside the map

    shown = "".join(page.text)
    for name in CLASS_NAMES:
        assert name in shown, name  # every class in the table, as written
    assert "Oat &amp; Co &lt;Natural&gt;" in html and "<Natural>" not in html
    assert "milk &quot;1.5%&quot;" in html
    for heading in ("Overall", "Per class, worst first", "Most confused pairs",
                    "Map of the test photos"):
        assert f"<h2>{heading}</h2>" in html


def test_the_per_class_table_is_worst_first(evaluated, tmp_path):
    result, settings = evaluated
    write_report(result, tmp_path, settings)
    classes = json.loads((tmp_path / "report.json").read_text())["classes"]
    assert [c["map_at_r"] for c in classes] == sorted(c["map_at_r"] for c in classes)
    assert sum(c["size"] for c in classes) == 25


def test_a_file_cannot_be_the_report_folder(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ReportError, match="is a file, not a folder for the report"):
        prepare_directory(tmp_path / "taken")
    with pytest.raises(ReportError, match="cannot create the report folder"):
        prepare_directory(tmp_path / "taken" / "below")
    assert prepare_directory(tmp_path / "new" / "dir").is_dir()


def test_an_evaluation_without_its_photos_is_refused(evaluated, tmp_path):
    result, settings = evaluated
    with pytest.raises(ReportError, match="kept no vectors, labels and photo paths"):
        write_report(replace(result, paths=[]), tmp_path, settings)
