"""`lookalike index build | rollback | reindex`: refusals in one line."""

import json

from training_factory import write_tiny_model

from indexer.sample import write_sample_catalogue


def test_invalid_factory_string_is_refused(tmp_path, capsys, run, one_line_error):
    photos = tmp_path / "photos"
    write_sample_catalogue(photos, products=2, shots=2)
    assert run(tmp_path / "home", "ingest", str(photos)) == 0
    assert run(tmp_path / "home", "embed") == 0
    capsys.readouterr()
    assert run(tmp_path / "home", "index", "build", "--factory", "IVF-banana") == 2
    assert "IVF-banana" in one_line_error()


def test_rollback_with_no_version_and_a_background_reindex_without_a_queue(
    tmp_path, monkeypatch, capsys, run, one_line_error, no_job_queue
):
    monkeypatch.setenv("LOOKALIKE_MODEL", str(write_tiny_model(tmp_path / "tiny")))
    home = tmp_path / "home"
    assert run(home, "index", "rollback") == 2
    assert "no index version is current" in one_line_error()
    assert run(home, "index", "reindex", "--background") == 2
    assert one_line_error().endswith("or re-index here without --background")
    assert run(home, "jobs", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []  # no job recorded for it
