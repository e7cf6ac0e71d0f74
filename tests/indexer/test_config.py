"""Settings come from LOOKALIKE_* variables and .env, typed and validated in one place."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from indexer import cli
from indexer.config import MAX_K, InvalidSettings, Settings, load_settings, redact_url


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
    ("variable", "value", "rule"),
    [
        ("LOOKALIKE_SHARDS", "0", "greater than or equal to 1"),
        ("LOOKALIKE_BATCH_SIZE", "many", "valid integer"),
        ("LOOKALIKE_DEVICE", "tpu-zz", "'auto', 'cpu' or 'cuda'"),
        ("LOOKALIKE_FETCH_ALLOW_NETWORKS", "not-json-zz", "not valid JSON"),
    ],
)
def test_bad_values_are_refused_in_one_line_naming_the_variable(monkeypatch, variable, value, rule):
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettings) as refused:
        load_settings()
    message = str(refused.value)
    assert f"{variable}: " in message and rule in message
    assert "\n" not in message and value not in message
    with pytest.raises(ValueError) as direct:  # constructing Settings directly: pydantic's error
        Settings()
    assert value not in str(direct.value)


def test_a_short_api_key_is_refused_without_echoing_it(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOKALIKE_API_KEY", "abc")
    with pytest.raises(InvalidSettings) as refused:
        load_settings()
    assert str(refused.value) == (
        "invalid settings: LOOKALIKE_API_KEY: must be at least 16 characters"
    )
    with pytest.raises(ValidationError) as direct:
        Settings(api_key="abc")
    assert "abc" not in str(direct.value)  # inputs are hidden from pydantic's own errors

    assert cli.main(["index", "stats"]) == 2  # the CLI prints it as one line
    err = capsys.readouterr().err
    assert err == "lookalike: error: invalid settings: LOOKALIKE_API_KEY: must be at " \
        "least 16 characters\n"  # fmt: skip


def test_secrets_stay_out_of_repr_and_the_api_key_is_a_secret(tmp_path):
    settings = Settings(
        home=tmp_path, _env_file=None, api_key="k" * 15 + "-secret-key",
        database_url="postgresql+psycopg://shop:db-secret@db:5432/lookalike",
        broker_url="redis://:broker-secret@redis:6379/0",
        result_backend="redis://user:results-secret@redis:6379/1",
        redis_url="rediss://:redis-secret@redis:6380/2",
    )  # fmt: skip
    shown = repr(settings) + str(settings)
    for secret in ("secret-key", "db-secret", "broker-secret", "results-secret", "redis-secret"):
        assert secret not in shown
    assert "postgresql+psycopg://shop:***@db:5432/lookalike" in shown
    assert settings.api_key.get_secret_value() == "k" * 15 + "-secret-key"
    assert settings.database_url.endswith("db-secret@db:5432/lookalike")  # the real value


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("postgresql://user:p%40ss@h/db?sslmode=require", "postgresql://user:***@h/db?sslmode=require"),
        ("postgresql://user@h/db", "postgresql://user@h/db"),
        ("sqlite:////data/catalog.sqlite3", "sqlite:////data/catalog.sqlite3"),
        (None, None),
    ],
)
def test_redact_url_masks_only_the_password(url, shown):
    assert redact_url(url) == shown


def test_the_largest_k_setting_is_bounded_by_the_cores_max_k(tmp_path):
    assert Settings(home=tmp_path, api_search_max_k=MAX_K, _env_file=None).api_search_max_k == MAX_K
    with pytest.raises(InvalidSettings, match=f"LOOKALIKE_API_SEARCH_MAX_K: .*{MAX_K}"):
        load_settings(home=tmp_path, api_search_max_k=MAX_K + 1)
