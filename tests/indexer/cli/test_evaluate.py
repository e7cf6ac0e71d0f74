"""`lookalike evaluate --report DIR`: the report beside the metrics, and a bad DIR refused."""

import images_factory
from training_factory import write_tiny_model


def test_evaluate_writes_the_report_folder(run, tmp_path, capsys):
    photos = images_factory.write_labelled_folder(tmp_path / "photos", classes=4, per_class=4)
    model = write_tiny_model(tmp_path / "tiny")
    report = tmp_path / "reports" / "tiny"
    assert run(tmp_path / "home", "evaluate", str(photos), "--all-classes", "--model", str(model),
               "--report", str(report)) == 0
    out = capsys.readouterr().out
    assert f"report {report / 'index.html'}" in out.splitlines()
    assert (report / "map.png").is_file() and (report / "report.json").is_file()
    page = (report / "index.html").read_text()
    for number in range(4):
        assert f"class-{number:02d}" in page


def test_a_report_folder_that_is_a_file_is_refused_before_any_work(run, tmp_path, one_line_error):
    taken = tmp_path / "report.html"
    taken.write_text("not a folder")
    # No such photos: the folder is checked first, so this error never shows.
    assert run(tmp_path / "home", "evaluate", str(tmp_path / "nothing"), "--pretrained",
               "--report", str(taken)) == 2
    assert one_line_error().endswith(f"{taken} is a file, not a folder for the report")
