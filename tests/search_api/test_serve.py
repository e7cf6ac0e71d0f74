"""`lookalike serve` and deploy/gunicorn.conf.py: the same gunicorn options from settings."""

import runpy
from pathlib import Path

import pytest

from indexer.cli import main
from indexer.config import Settings
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
    assert options["worker_class"] == "gthread" and options["preload_app"] is False


def test_the_production_config_file(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path))
    monkeypatch.setenv("LOOKALIKE_API_BIND", "127.0.0.1:8123")
    monkeypatch.chdir(tmp_path)  # no stray .env
    config = runpy.run_path(str(REPO / "deploy" / "gunicorn.conf.py"))
    assert config["wsgi_app"] == WSGI_APP
    assert config["bind"] == "127.0.0.1:8123"
    assert config["limit_request_line"] == 8190
