"""`lookalike serve` and deploy/gunicorn.conf.py: the same gunicorn options from settings."""

import os
import runpy
import socket
from pathlib import Path

import pytest
from gunicorn.workers.gthread import ThreadWorker

from indexer.cli import main
from indexer.config import Settings
from search_api import multiproc
from search_api.serve import WSGI_APP, gunicorn_options

REPO = Path(__file__).resolve().parents[2]


def test_serve_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "lookalike serve --bind" in out and "api/v1/search" in out


def test_options_come_from_settings_and_flags(tmp_path):
    settings = Settings(home=tmp_path, api_bind="0.0.0.0:9000", api_workers=3, api_threads=6,
                        _env_file=None)  # fmt: skip
    options = gunicorn_options(settings, workers=5, threads=None)
    assert (options["bind"], options["workers"], options["threads"]) == ("0.0.0.0:9000", 5, 6)
    assert issubclass(options["worker_class"], ThreadWorker) and options["preload_app"] is False
    assert options["worker_class"].head_timeout == settings.api_head_timeout


def test_the_production_config_file(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path))
    monkeypatch.setenv("LOOKALIKE_API_BIND", "127.0.0.1:8123")
    monkeypatch.chdir(tmp_path)  # no stray .env
    config = runpy.run_path(str(REPO / "deploy" / "gunicorn.conf.py"))
    assert config["wsgi_app"] == WSGI_APP
    assert config["bind"] == "127.0.0.1:8123"
    assert config["limit_request_line"] == 8190


def test_the_master_prepares_and_tidies_the_metrics_directory(monkeypatch, tmp_path):
    # the hook exports the variable: monkeypatch restores what was there (nothing, mostly)
    monkeypatch.setenv(multiproc.ENV, str(tmp_path / "not-this-one"))
    settings = Settings(home=tmp_path, api_bind="0.0.0.0:9000", _env_file=None)
    options = gunicorn_options(settings, bind="127.0.0.1:9001")
    directory = tmp_path / "run" / "metrics" / f"{socket.gethostname()}_127.0.0.1_9001"
    assert settings.api_metrics_dir_for("127.0.0.1:9001") == directory  # one per server
    explicit = Settings(home=tmp_path, api_metrics_dir=tmp_path / "m", _env_file=None)
    assert explicit.api_metrics_dir_for("127.0.0.1:9001") == tmp_path / "m"

    directory.mkdir(parents=True)
    for name in ("counter_11.db", "gauge_livemin_11.db", "keep.txt"):
        (directory / name).write_bytes(b"x")
    options["on_starting"](object())
    assert sorted(path.name for path in directory.iterdir()) == ["keep.txt"]  # only its own
    assert os.environ[multiproc.ENV] == str(directory)
    monkeypatch.delenv(multiproc.ENV)  # this test process's own metrics stay in memory

    for name in ("counter_12.db", "histogram_12.db", "gauge_livemin_12.db",
                 "gauge_livemostrecent_12.db", "gauge_livemin_13.db"):
        (directory / name).write_bytes(b"")
    options["child_exit"](object(), type("Worker", (), {"pid": 12})())
    assert sorted(path.name for path in directory.glob("*.db")) == [
        "counter_12.db", "gauge_livemin_13.db", "histogram_12.db",
    ]  # fmt: skip
