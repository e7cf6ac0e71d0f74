"""The split beside each set of test metrics, and when the metrics are too thin to trust."""

import hashlib
import json

from indexer.model.card import ModelCard
from indexer.model.quality import (
    HALVES,
    MIN_TEST_CLASSES,
    Measurement,
    SplitRecord,
    card_measurement,
    quality_warnings,
    saved_evaluations,
)

FIGURES = {"recall_at_1": 95.2, "map_at_r": 37.4, "queries": 2031, "classes": 41}


def card(**metrics) -> ModelCard:
    return ModelCard(version="v1", architecture="test_efficientnet", embedding_dim=8,
                     pooled_dim=256, head="linear", data_config={}, metrics=metrics)


def measured(classes: int | None, images: int | None = 100) -> Measurement:
    return Measurement(FIGURES, SplitRecord("class_split", "class_split.csv", "ab" * 32,
                                            classes, images), "card")


def test_a_split_file_is_recorded_by_name_and_content_hash(tmp_path):
    split = tmp_path / "class_split.csv"
    split.write_text("class_name,half\na,train\nb,test\n")
    record = SplitRecord.measured(split, classes=41, images=2031)
    assert record.as_dict() == {
        "name": "class_split", "file": "class_split.csv",
        "sha256": hashlib.sha256(split.read_bytes()).hexdigest(), "classes": 41, "images": 2031,
    }
    assert record.describe() == f"class_split.csv (sha256 {record.sha256[:8]}), 41 classes, " \
        "2,031 images"
    assert SplitRecord.from_dict(record.as_dict()) == record  # what a card reads back


def test_without_a_file_the_record_says_how_the_classes_were_chosen():
    halves = SplitRecord.measured(None, classes=5, images=30)
    assert halves.name == HALVES and halves.sha256 is None
    assert halves.describe() == "no split file: second half of the sorted classes, " \
        "5 classes, 30 images"
    every = SplitRecord.measured(None, classes=3, images=9, all_classes=True)
    assert every.describe().startswith("every class of the data (--all-classes)")


def test_an_old_card_reads_as_split_not_recorded_with_its_metrics_counts():
    old = card_measurement(card(test=FIGURES, best_epoch=3))
    assert old.split == SplitRecord(None, classes=41, images=2031)
    assert old.split.describe() == "split not recorded, 41 classes, 2,031 images"
    assert old.figures() == "R@1 95.2  MAP@R 37.4"
    assert card_measurement(card()) is None  # no test metrics at all
    assert card_measurement(card(test={"recall_at_1": "high"})) is None


def test_warnings_for_no_metrics_few_classes_and_unknown_counts():
    [none] = quality_warnings("m", [])
    assert "m has no test metrics" in none and "lookalike evaluate DATA --model m" in none
    [few] = quality_warnings("m", [measured(MIN_TEST_CLASSES - 1)])
    assert f"only {MIN_TEST_CLASSES - 1} test classes (class_split.csv (sha256 abababab), " \
        "100 images)" in few
    [unknown] = quality_warnings("m", [measured(None)])
    assert "do not say how many classes" in unknown
    assert quality_warnings("m", [measured(MIN_TEST_CLASSES)]) == []
    # A later evaluation on more classes outweighs a thin card.
    assert quality_warnings("m", [measured(3), measured(41)]) == []


def test_saved_evaluations_by_version_newest_first_skipping_bad_files(tmp_path, caplog):
    def save(name, version, created, **extra):
        document = {"model_version": version, "metrics": FIGURES, "created": created, **extra}
        (tmp_path / name).write_text(json.dumps(document))

    save("old.json", "v1", "2024-01-01T00:00:00", test_classes=["a", "b", "c"])
    save("new.json", "v1", "2025-01-01T00:00:00",
         split=SplitRecord("s", "s.csv", "cd" * 32, 12, 40).as_dict())
    save("other.json", "v2", "2025-01-01T00:00:00")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "no-metrics.json").write_text(json.dumps({"model_version": "v1"}))

    found = saved_evaluations(tmp_path)
    assert sorted(found) == ["v1", "v2"]
    assert [m.source for m in found["v1"]] == ["new.json", "old.json"]
    assert found["v1"][0].split.describe() == "s.csv (sha256 cdcdcdcd), 12 classes, 40 images"
    # Saved before splits were recorded: the metrics still count the classes and images.
    assert found["v1"][1].split == SplitRecord(None, classes=41, images=2031)
    assert "broken.json" in caplog.text and "no-metrics.json" in caplog.text
    assert saved_evaluations(tmp_path / "missing") == {}
