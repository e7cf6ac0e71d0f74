"""Training data: class-disjoint parts, skipped photos and classes, clear refusals."""

import images_factory
import pytest

from indexer.model.preprocess import Preprocessor
from indexer.splits import SplitError
from indexer.training.data import (
    TrainingDataError,
    prepare_training_data,
    validation_classes,
)

PREPROCESSOR = Preprocessor({"input_size": (3, 32, 32), "interpolation": "bilinear",
                             "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0})


def prepare(sources, **kwargs):
    return prepare_training_data(sources, preprocessor=PREPROCESSOR, **kwargs)


def test_classes_are_split_never_images(labelled):
    data = prepare([labelled], validation_fraction=0.4)
    train, val, test = set(data.train_classes), set(data.validation_classes), set(data.test_classes)
    assert len(train) == 3 and len(val) == 2
    assert train | val == {f"class-{i:02d}" for i in range(5)}
    assert not (train & test) and not (train & val) and not (val & test)
    assert test == {f"class-{i:02d}" for i in range(5, 10)}  # the second half, sorted
    assert len(data.test) == 30
    described = data.describe()
    assert described["fingerprint"] == data.fingerprint() and len(data.fingerprint()) == 64
    assert described["classes"]["test"] == sorted(test)


def test_a_single_validation_class_is_not_held_out(labelled):
    data = prepare([labelled], validation_fraction=0.25)  # 1 of 5: no retrieval benchmark
    assert data.validation == [] and len(data.train_classes) == 5


def test_validation_classes_do_not_depend_on_the_seed():
    classes = [f"c{i:02d}" for i in range(40)]
    held_out = validation_classes(classes, 0.2)
    assert len(held_out) == 8 and len(set(held_out)) == 8
    assert validation_classes(classes, 0.2) == held_out
    assert validation_classes(classes, 0) == []


def test_the_fingerprint_changes_with_the_data(labelled):
    before = prepare([labelled]).fingerprint()
    images_factory.class_photo(0, 99).save(labelled / "class-00" / "img-99.jpg")
    assert prepare([labelled]).fingerprint() != before


def test_a_split_file(labelled, tmp_path):
    split = tmp_path / "split.csv"
    rows = [f"class-{i:02d},{'test' if i % 2 else 'train'}" for i in range(10)]
    split.write_text("class_name,half\n" + "\n".join(rows) + "\n")
    data = prepare([labelled], split_file=split, validation_fraction=0)
    assert data.train_classes == [f"class-{i:02d}" for i in range(0, 10, 2)]
    assert data.test_classes == [f"class-{i:02d}" for i in range(1, 10, 2)]
    assert data.describe()["split_file"] == str(split.resolve())


def test_a_split_naming_missing_classes_is_refused(labelled, tmp_path):
    split = tmp_path / "split.csv"
    split.write_text("class_name,half\nclass-00,train\nclass-01,train\nUnicorn,test\n")
    with pytest.raises(SplitError, match="not found in the data: Unicorn"):
        prepare([labelled], split_file=split)


def test_one_class_is_refused(tmp_path):
    folder = images_factory.write_labelled_folder(tmp_path / "one", classes=1, per_class=8)
    with pytest.raises(TrainingDataError, match="found 1 class .*at least two classes"):
        prepare([folder])


def test_a_class_with_a_single_image_is_skipped_and_reported(tmp_path):
    folder = images_factory.write_labelled_folder(
        tmp_path / "photos", classes=8, per_class=[6, 1, 6, 6, 6, 6, 6, 6])
    data = prepare([folder], validation_fraction=0)
    assert "class-01" not in data.train_classes
    assert data.train_classes == ["class-00", "class-02", "class-03"]
    assert ("class class-01", "class has 1 readable image(s); at least 2 are needed to form "
            "a positive pair") in data.skipped


def test_a_corrupt_photo_is_skipped_and_reported(labelled):
    bad = labelled / "class-00" / "broken.jpg"
    bad.write_bytes(images_factory.truncated_jpeg_bytes())
    text = labelled / "class-01" / "notes.jpg"
    text.write_bytes(images_factory.text_bytes())
    data = prepare([labelled])
    reasons = dict(data.skipped)
    assert reasons[str(bad)] == "truncated image data"
    assert reasons[str(text)] == "not an image: unrecognised format"  # as intake says
    assert all(image.path not in (bad, text) for image in data.train + data.validation)
    assert len([i for i in data.train + data.validation if i.label == "class-00"]) == 6


def test_too_few_training_classes_after_skips(tmp_path):
    folder = images_factory.write_labelled_folder(
        tmp_path / "photos", classes=4, per_class=[6, 1, 6, 6])
    with pytest.raises(TrainingDataError, match="1 usable training class"):
        prepare([folder], validation_fraction=0)


def test_a_manifest_with_labels(labelled, tmp_path):
    manifest = tmp_path / "photos.csv"
    lines = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted(labelled.rglob("*.jpg"))]
    manifest.write_text("\n".join(lines) + "\n")
    assert prepare([manifest]).fingerprint() == prepare([labelled]).fingerprint()


def test_a_manifest_of_urls_or_without_labels_is_refused(labelled, tmp_path):
    urls = tmp_path / "urls.csv"
    urls.write_text("image_url,label\nhttps://example.com/a.jpg,shoe\n")
    with pytest.raises(TrainingDataError,
                       match="is a URL; training and evaluation read local files"):
        prepare([urls])
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text(f"path\n{next(labelled.rglob('*.jpg'))}\n")
    with pytest.raises(TrainingDataError, match="no class"):
        prepare([unlabelled])
    with pytest.raises(TrainingDataError, match="no such folder"):
        prepare([tmp_path / "missing"])
