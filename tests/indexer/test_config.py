"""Settings come from LOOKALIKE_* variables and .env, typed and validated in one place."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from indexer.config import Settings, load_settings


def test_defaults_use_an_sqlite_catalog_inside_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.home == tmp_path / "lookalike-data"
    assert settings.catalog_url == f"sqlite:///{tmp_path / 'lookalike-data' / 'catalog.sqlite3'}"
    assert settings.vectors_dir == settings.home / "vectors"
    assert settings.index_dir == settings.home / "index"


def test_environment_variables_are_read_and_typed(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LOOKALIKE_SHARDS", "4")
    monkeypatch.setenv("LOOKALIKE_DATABASE_URL", "postgresql+psycopg://db/lookalike")
    settings = load_settings()
    assert settings.home == tmp_path / "data"
    assert settings.shards == 4
    assert settings.catalog_url == "postgresql+psycopg://db/lookalike"


def test_dotenv_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path(".env").write_text("LOOKALIKE_BATCH_SIZE=64\nLOOKALIKE_SHARDS=3\n")
    monkeypatch.setenv("LOOKALIKE_SHARDS", "5")
    settings = load_settings()
    assert settings.batch_size == 64
    assert settings.shards == 5


def test_explicit_overrides_win(tmp_path):
    assert load_settings(home=tmp_path, shards=2).shards == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LOOKALIKE_SHARDS", "0"), ("LOOKALIKE_BATCH_SIZE", "many"), ("LOOKALIKE_DEVICE", "tpu")],
)
def test_bad_values_are_refused_with_the_setting_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.removeprefix("LOOKALIKE_").lower()):
        Settings()
