"""`lookalike train` and `lookalike models`: the whole path, and one-line refusals."""

import hashlib
import json

import images_factory
import pytest

from indexer.cli import main

TINY = ["--backbone", "test_efficientnet", "--weights", "random", "--epochs", "2",
        "--batch-size", "8", "--m-per-class", "2", "--views", "2", "--dim", "8",
        "--train-stages", "1", "--device", "cpu"]


def run(home, *args):
    return main(["--home", str(home), *args])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("lookalike: error: "), err
    return err[-1]


def test_train_prints_the_test_table_and_use_makes_it_current(labelled, tmp_path, capsys):
    home = tmp_path / "home"
    assert run(home, "train", str(labelled), *TINY, "--seed", "3", "--use") == 0
    out = capsys.readouterr().out
    for metric in ("Recall@1", "Recall@2", "Recall@4", "Recall@8", "MAP@R", "R-Precision", "NMI"):
        assert any(line.split()[:1] == [metric] for line in out.splitlines()), metric
    version = next(line.split()[1] for line in out.splitlines() if line.startswith("model "))
    assert "now using" in out

    assert run(home, "models", "list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"* {version}") and "softtriple" in line for line in listed)
    assert any(line.startswith("  pretrained") for line in listed)

    assert run(home, "models", "use", "pretrained") == 0
    assert run(home, "models") == 0  # no action: list
    marked = [line for line in capsys.readouterr().out.splitlines() if line.startswith("* ")]
    assert len(marked) == 1 and marked[0].startswith("* pretrained")

    # Evaluate the trained model by name on its test classes; the JSON is saved.
    output = tmp_path / "eval.json"
    assert run(home, "evaluate", str(labelled), "--model", version, "--output",
               str(output)) == 0
    saved = json.loads(output.read_text())
    assert saved["model_version"] == version
    assert saved["test_classes"] == [f"class-{i:02d}" for i in range(5, 10)]
    assert saved["split"] == {"name": "halves", "file": None, "sha256": None, "classes": 5,
                              "images": 30}


def test_a_split_file_travels_with_the_metrics_and_few_classes_warn(labelled, tmp_path,
                                                                    capsys):
    split = tmp_path / "my-split.csv"
    split.write_text("class_name,half\n" + "".join(
        f"class-{i:02d},{'train' if i < 7 else 'test'}\n" for i in range(10)))
    home = tmp_path / "home"
    assert run(home, "train", str(labelled), *TINY, "--split", str(split)) == 0
    captured = capsys.readouterr()
    assert "was evaluated on only 3 test classes (my-split.csv (sha256 " in captured.err
    version = next(line.split()[1] for line in captured.out.splitlines()
                   if line.startswith("model "))
    card = json.loads((home / "models" / version / "card.json").read_text())
    assert card["metrics"]["test_split"] == {
        "name": "my-split", "file": "my-split.csv",
        "sha256": hashlib.sha256(split.read_bytes()).hexdigest(), "classes": 3, "images": 18,
    }

    assert run(home, "evaluate", str(labelled), "--split", str(split), "--model", version) == 0
    out = capsys.readouterr().out
    assert "split        my-split.csv (sha256 " in out and "3 classes, 18 images" in out
    assert run(home, "models", "list") == 0
    listed = capsys.readouterr().out
    assert listed.count("on my-split.csv (sha256 ") == 2  # the card's and the evaluation's


def test_backbone_chooses_the_pretrained_features_only(labelled, tmp_path, capsys):
    assert run(tmp_path / "home", "evaluate", str(labelled), "--backbone",
               "tf_efficientnet_lite9", "--pretrained") == 2
    error = one_line_error(capsys)
    assert "No packaged weights for 'tf_efficientnet_lite9'" in error
    assert "tf_efficientnet_lite0, tf_efficientnet_lite1, tf_efficientnet_lite2" in error
    assert run(tmp_path / "home", "evaluate", str(labelled), "--backbone",
               "tf_efficientnet_lite1", "--model", "some-run") == 2
    assert "--backbone chooses the pretrained features" in one_line_error(capsys)


def test_an_interrupted_run_continues_with_resume(labelled, tmp_path, capsys):
    home = tmp_path / "home"
    assert run(home, "train", str(labelled), *TINY, "--name", "r") == 0
    assert run(home, "train", str(labelled), *TINY, "--name", "r") == 2
    assert "--resume to continue" in one_line_error(capsys)
    assert run(home, "train", str(labelled), *TINY, "--name", "r", "--resume") == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--loss", "tripplet"], "unknown loss 'tripplet'. Did you mean 'triplet'? Valid losses: "
     "softtriple, proxynca, contrastive, triplet, multisimilarity"),
    (["--dim", "0"], "dim must be a positive whole number; got 0"),
    (["--batch-size", "9"], "must be a multiple of m_per_class"),
    (["--train-stages", "9"], "the backbone has 5 stages; cannot train 9"),
    (["--train-stages", "some"], "train stages must be a number or 'all'"),
    (["--loss-param", "margin"], "--loss-param takes NAME=VALUE"),
    (["--loss-param", "scale=2"], "loss 'softtriple' has no setting scale"),
    (["--weights", "/no/such.safetensors"], "/no/such.safetensors"),
])
def test_bad_settings_are_one_line_errors(labelled, tmp_path, capsys, args, message):
    assert run(tmp_path / "home", "train", str(labelled), *TINY, *args) == 2
    assert message in one_line_error(capsys)


def test_bad_data_is_a_one_line_error(tmp_path, capsys):
    one = images_factory.write_labelled_folder(tmp_path / "one", classes=1, per_class=5)
    assert run(tmp_path / "home", "train", str(one), *TINY) == 2
    assert "found 1 class" in one_line_error(capsys)
    split = tmp_path / "split.csv"
    split.write_text("class_name,half\nclass-00,train\nGhost,test\n")
    assert run(tmp_path / "home", "train", str(one), *TINY, "--split", str(split)) == 2
    assert "not found in the data: Ghost" in one_line_error(capsys)
