"""Where settings come from: which source wins, "env:NAME" references wherever a string stands, and an
injected environment that keeps the machine's own variables out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from webhook_service.config.model import ConfigError
from webhook_service.settings import load_settings

FILE = "sqlite:////tmp/from-file.db"
SHORTCUT = "postgresql://u@shortcut/db"
NESTED = "postgresql://u@nested/db"
OVERRIDE = "postgresql://u@override/db"

# The database URL is one setting that every layer can set: the file, DATABASE_URL, WEBHOOK__DATABASE_URL
# and the overrides. Each case leaves out the layers above the one that must win.
PRECEDENCE = [
    ("the file beats the default", {}, None, FILE),
    ("a shortcut variable beats the file", {"DATABASE_URL": SHORTCUT}, None, SHORTCUT),
    (
        "a WEBHOOK__ variable beats a shortcut",
        {"DATABASE_URL": SHORTCUT, "WEBHOOK__DATABASE_URL": NESTED},
        None,
        NESTED,
    ),
    (
        "overrides beat everything",
        {"DATABASE_URL": SHORTCUT, "WEBHOOK__DATABASE_URL": NESTED},
        {"database_url": OVERRIDE},
        OVERRIDE,
    ),
]


def _file(tmp_path: Path, toml: str) -> Path:
    path = tmp_path / "service.toml"
    path.write_text(toml)
    return path


@pytest.mark.parametrize(("label", "environ", "overrides", "expected"), PRECEDENCE, ids=[c[0] for c in PRECEDENCE])
def test_later_sources_win(tmp_path, label, environ, overrides, expected):
    path = _file(tmp_path, f'database_url = "{FILE}"')
    settings = load_settings(path, environ=environ, overrides=overrides)
    assert settings.database_url == expected.replace("postgresql://", "postgresql+psycopg://")


def test_each_layer_replaces_only_the_settings_it_names(tmp_path):
    path = _file(tmp_path, "port = 8001\n[media]\nmax_bytes = 1000\njpeg_quality = 80\n")
    environ = {"PORT": "8002", "HOST": "0.0.0.0", "WEBHOOK__MEDIA__MAX_BYTES": "2000"}
    settings = load_settings(path, environ=environ, overrides={"media": {"jpeg_quality": 70}})
    assert (settings.port, settings.host) == (8002, "0.0.0.0")
    assert (settings.media.max_bytes, settings.media.jpeg_quality) == (2000, 70)
    assert settings.media.max_image_pixels == 40_000_000


def test_webhook_env_sets_the_environment_and_the_nested_variable_beats_it(tmp_path):
    path = _file(tmp_path, f'environment = "development"\nsecret_key = "{"k" * 40}"')
    assert load_settings(path, environ={"WEBHOOK_ENV": "production"}).environment == "production"
    environ = {"WEBHOOK_ENV": "production", "WEBHOOK__ENVIRONMENT": "development"}
    assert load_settings(path, environ=environ).environment == "development"


def test_an_empty_shortcut_variable_is_not_a_value(tmp_path):
    path = _file(tmp_path, f'database_url = "{FILE}"')
    assert load_settings(path, environ={"DATABASE_URL": ""}).database_url == FILE


def test_section_and_key_names_are_case_insensitive():
    settings = load_settings(environ={"WEBHOOK__Media__Max_Bytes": "1048576", "WEBHOOK__queue__NAME": "q_1"})
    assert settings.media.max_bytes == 1048576
    assert settings.queue.name == "q_1"


def test_webhook_values_are_json_when_they_parse():
    environ = {
        "WEBHOOK__MEDIA__ALLOWED_TYPES": '["image/png", "image/gif"]',
        "WEBHOOK__MEDIA__FETCH": '{"allow_http": true, "max_redirects": 1}',
        "WEBHOOK__DATA_DIR": json.dumps("/srv/quoted"),
        "WEBHOOK__PUBLIC_BASE_URL": "https://hooks.example.com",
    }
    settings = load_settings(environ=environ)
    assert settings.media.allowed_types == ["image/png", "image/gif"]
    assert settings.media.fetch.allow_http and settings.media.fetch.max_redirects == 1
    assert str(settings.data_dir) == "/srv/quoted"
    assert settings.public_base_url == "https://hooks.example.com"


def test_a_string_of_digits_is_written_as_a_json_string():
    """README, "Configuration": a value that parses as JSON is what it parses as."""
    with pytest.raises(ConfigError) as error:
        load_settings(environ={"WEBHOOK__QUEUE__NAME": "123"})
    assert error.value.problems == [
        "queue.name (from the environment variable WEBHOOK__QUEUE__NAME): Input should be a valid string"
    ]
    assert load_settings(environ={"WEBHOOK__QUEUE__NAME": '"123"'}).queue.name == "123"
    # A top-level setting: no section.
    assert load_settings(environ={"WEBHOOK__WEB_WORKERS": "4"}).web_workers == 4


def test_the_config_variable_names_the_file(tmp_path):
    path = _file(tmp_path, "port = 8123")
    assert load_settings(environ={"WEBHOOK_SERVICE_CONFIG": str(path)}).port == 8123


# env: references --------------------------------------------------------------------------------------

CONNECTION = {"provider": "standard", "name": "main", "tenant": "t1"}


def test_env_reference_inside_a_webhook_json_value():
    environ = {
        "WEBHOOK__TENANTS": json.dumps([{"id": "t1"}]),
        "WEBHOOK__CONNECTIONS": json.dumps([{**CONNECTION, "secrets": ["env:HOOK_SECRET"]}]),
        "HOOK_SECRET": "whsec_ZnJvbSB0aGUgZW52aXJvbm1lbnQ=",
    }
    settings = load_settings(environ=environ)
    assert settings.connections[0].secrets == ["whsec_ZnJvbSB0aGUgZW52aXJvbm1lbnQ="]


def test_env_reference_inside_the_file(tmp_path):
    path = _file(
        tmp_path,
        'secret_key = "env:SIGNING_KEY"\n'
        '[[tenants]]\nid = "t1"\n'
        '[[connections]]\nprovider = "standard"\nname = "main"\ntenant = "t1"\nsecrets = ["env:HOOK_SECRET"]\n',
    )
    settings = load_settings(path, environ={"SIGNING_KEY": "s" * 40, "HOOK_SECRET": "whsec_abc"})
    assert settings.secret_key == "s" * 40
    assert settings.connections[0].secrets == ["whsec_abc"]


def test_env_reference_in_a_shortcut_variable_and_in_overrides():
    environ = {"DATABASE_URL": "env:PRIMARY_DB", "PRIMARY_DB": SHORTCUT, "REDIS_ADDRESS": "redis://cache:6379/0"}
    settings = load_settings(environ=environ, overrides={"redis_url": "env:REDIS_ADDRESS"})
    assert settings.database_url == "postgresql+psycopg://u@shortcut/db"
    assert settings.redis_url == "redis://cache:6379/0"


def test_a_missing_variable_in_a_webhook_json_value_names_the_setting():
    environ = {
        "WEBHOOK__TENANTS": json.dumps([{"id": "t1"}]),
        "WEBHOOK__CONNECTIONS": json.dumps([{**CONNECTION, "secrets": ["env:NOT_SET_ANYWHERE"]}]),
    }
    with pytest.raises(ConfigError) as error:
        load_settings(environ=environ)
    assert str(error.value) == "connections[0].secrets[0]: environment variable NOT_SET_ANYWHERE is not set"


def test_a_reference_replaced_by_a_later_source_is_not_looked_up(tmp_path):
    # References are resolved in the merged configuration, so only the value that wins must exist.
    path = _file(tmp_path, 'database_url = "env:UNSET_DATABASE_VARIABLE"')
    assert load_settings(path, environ={"DATABASE_URL": SHORTCUT}).database_url == "postgresql+psycopg://u@shortcut/db"


# An injected environment ------------------------------------------------------------------------------


def test_an_injected_environment_ignores_the_real_one(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://leaked@db/real")
    monkeypatch.setenv("WEBHOOK__MEDIA__MAX_BYTES", "1")
    monkeypatch.setenv("WEBHOOK_SERVICE_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("ONLY_IN_THE_REAL_ENVIRONMENT", "leaked")

    settings = load_settings(environ={})
    assert settings.database_url is None
    assert settings.media.max_bytes == 5 * 1024 * 1024
    with pytest.raises(ConfigError) as error:
        load_settings(environ={}, overrides={"redis_url": "env:ONLY_IN_THE_REAL_ENVIRONMENT"})
    assert str(error.value) == "redis_url: environment variable ONLY_IN_THE_REAL_ENVIRONMENT is not set"


def test_without_an_injected_environment_the_real_one_is_read(monkeypatch):
    monkeypatch.delenv("WEBHOOK_SERVICE_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgres://real@db/x")
    assert load_settings().database_url == "postgresql+psycopg://real@db/x"


# Typos ------------------------------------------------------------------------------------------------

UNKNOWN = [
    ("WEBHOOK__COLOUR", "blue", "colour (from the environment variable WEBHOOK__COLOUR): no such setting"),
    (
        "WEBHOOK__MEDIA__MAX_BYTE",
        "1048576",
        "media.max_byte (from the environment variable WEBHOOK__MEDIA__MAX_BYTE): no such setting; "
        "did you mean WEBHOOK__MEDIA__MAX_BYTES?",
    ),
    (
        "WEBHOOK__MEDIA__FETCH__ALLOW_HTTPS",
        "true",
        "media.fetch.allow_https (from the environment variable WEBHOOK__MEDIA__FETCH__ALLOW_HTTPS): no such "
        "setting; did you mean WEBHOOK__MEDIA__FETCH__ALLOW_HTTP?",
    ),
]


@pytest.mark.parametrize(("variable", "value", "message"), UNKNOWN, ids=[case[0] for case in UNKNOWN])
def test_a_webhook_variable_naming_an_unknown_key_is_one_line_naming_it(variable, value, message):
    with pytest.raises(ConfigError) as error:
        load_settings(environ={variable: value})
    assert str(error.value) == message
