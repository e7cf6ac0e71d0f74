"""Class-disjoint split files: the Grocery Store layout, defaults and bad files."""

import pytest

from indexer.splits import ClassSplit, SplitError


def write(tmp_path, text):
    path = tmp_path / "split.csv"
    path.write_text(text)
    return path


def test_grocery_store_layout_is_read(tmp_path):
    path = write(
        tmp_path,
        "class_id,class_name,coarse_name,n_natural_images,half\n"
        "0,Golden-Delicious,Apple,96,train\n1,Granny-Smith,Apple,123,train\n"
        "40,Arla-Medium-Fat-Milk,Milk,72,test\n",
    )
    split = ClassSplit.from_csv(path)
    assert split.train == {"Golden-Delicious", "Granny-Smith"}
    assert split.test == {"Arla-Medium-Fat-Milk"}


def test_default_split_is_first_half_train_second_half_test():
    split = ClassSplit.halves(["d", "a", "c", "b", "e"])
    assert split.train == {"a", "b"}
    assert split.test == {"c", "d", "e"}


def test_classes_missing_from_the_data_are_named(tmp_path):
    split = ClassSplit.from_csv(write(tmp_path, "class_name,half\nkiwi,train\nlime,test\n"))
    with pytest.raises(SplitError, match="not found in the data: lime"):
        split.check_against({"kiwi", "apple"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,part\nkiwi,train\n", "needs a class column"),
        ("class_name,half\nkiwi,validation\n", r"split\.csv:2: expected"),
        ("class_name,half\nkiwi,train\nkiwi,test\n", "in both train and test: kiwi"),
        ("class_name,half\n", "has no rows"),
    ],
)
def test_bad_split_files_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(SplitError, match=message):
        ClassSplit.from_csv(write(tmp_path, text))


def test_shipped_produce_vs_packages_split():
    """splits/ holds the generalisation split: train on produce, test on packaged products."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "splits" / "grocery-produce-vs-packages.csv"
    split = ClassSplit.from_csv(path)
    assert (len(split.train), len(split.test)) == (50, 31)
    assert "Granny-Smith" in split.train and "Asparagus" in split.train
    assert "Oatly-Oat-Milk" in split.test and "Bravo-Apple-Juice" in split.test
