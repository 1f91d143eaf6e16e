"""Configuration: defaults, TOML + environment, and one clear line for every bad setting."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.app import STANDARD_SECRET
from tests.support.telnyx import VECTOR_PUBLIC_KEY
from webhook_service.config.development import DEVELOPMENT_USERNAME, add_development_defaults
from webhook_service.config.model import DEFAULT_TENANT_ID, ConfigError
from webhook_service.providers import ADAPTERS
from webhook_service.settings import load_settings


def _load(tmp_path: Path, toml: str = "", environ: dict | None = None):
    path = tmp_path / "service.toml"
    path.write_text(toml)
    return load_settings(path, environ=environ or {})


def test_zero_configuration_gives_a_working_development_setup():
    settings = load_settings(environ={})
    assert settings.environment == "development"
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("data/service.db")
    assert [t.id for t in settings.tenants] == [DEFAULT_TENANT_ID]
    assert settings.api_users[0].username == DEVELOPMENT_USERNAME
    # One unsigned development connection per provider, so every README example works at once.
    assert {c.provider for c in settings.connections} == set(ADAPTERS)
    assert all(not c.verify for c in settings.connections)


def test_toml_file_and_environment_overrides(tmp_path):
    settings = _load(
        tmp_path,
        """
        database_url = "sqlite:////tmp/from-file.db"
        [media]
        max_bytes = 1000
        [[tenants]]
        id = "t1"
        [[connections]]
        provider = "standard"
        name = "main"
        tenant = "t1"
        secrets = ["env:HOOK_SECRET"]
    """,
        environ={"DATABASE_URL": "postgres://u@db/x", "WEBHOOK__MEDIA__MAX_BYTES": "2000", "HOOK_SECRET": "whsec_abc"},
    )
    assert settings.database_url == "postgresql+psycopg://u@db/x"
    assert settings.media.max_bytes == 2000
    assert settings.connections[0].secrets == ["whsec_abc"]


BAD_SETTINGS = [
    ("unknown key", "colour = 'blue'", "colour: no such setting"),
    ("typo in a key", "[media]\nmax_byte = 1", "media.max_byte: no such setting; did you mean media.max_bytes?"),
    ("bad type", "[media]\nmax_bytes = 'big'", "media.max_bytes: Input should be a valid integer"),
    (
        "typo in provider",
        "[[tenants]]\nid='t'\n[[connections]]\nprovider='twillio'\ntenant='t'\nsecrets=['x']",
        "connections[0].provider: unknown provider 'twillio'",
    ),
    (
        "unknown tenant",
        "[[tenants]]\nid='t'\n[[connections]]\nprovider='standard'\ntenant='nope'\nsecrets=['x']",
        "connections[0].tenant: unknown tenant 'nope'",
    ),
    (
        "nothing to verify with",
        "[[tenants]]\nid='t'\n[[connections]]\nprovider='standard'\ntenant='t'",
        "has no secrets and no basic_auth",
    ),
    (
        "duplicate connection",
        "[[tenants]]\nid='t'\n[[connections]]\nprovider='standard'\ntenant='t'\nsecrets=['x']\n"
        "[[connections]]\nprovider='standard'\ntenant='t'\nsecrets=['y']",
        "connections[1]: duplicate provider/name 'standard/default'",
    ),
    (
        "phone number",
        "[[tenants]]\nid='t'\nphone_numbers=[{id='1', number='hello'}]",
        "tenants[0].phone_numbers[0].number: 'hello' is not a phone number",
    ),
    (
        "basic auth pair",
        "[[tenants]]\nid='t'\n[[connections]]\nprovider='standard'\ntenant='t'\nbasic_auth=['nocolon']",
        "connections[0].basic_auth: each entry must be 'username:password'",
    ),
    ("storage section", "[storage]\nbackend='s3'", "storage: backend 's3' needs a [storage.s3] section"),
    ("public url", "public_base_url = 'hooks.example.com'", "public_base_url: must be an absolute http(s) URL"),
    (
        "missing env secret",
        "[[tenants]]\nid='t'\n[[connections]]\nprovider='standard'\ntenant='t'\nsecrets=['env:NOT_SET_ANYWHERE']",
        "connections[0].secrets[0]: environment variable NOT_SET_ANYWHERE is not set",
    ),
    ("not TOML", "this is = = not toml", "not valid TOML"),
    (
        "operator of an unknown tenant",
        "[[tenants]]\nid='t'\n[[operators]]\nusername='o'\npassword_hash='h'\ntenants=['nope']",
        "operators[0].tenants: unknown tenant 'nope'",
    ),
    (
        "all tenants and more",
        "[[tenants]]\nid='t'\n[[operators]]\nusername='o'\npassword_hash='h'\ntenants=['*', 't']",
        'operators[0].tenants: ["*"] (all tenants) stands alone',
    ),
    (
        "operator role",
        "[[operators]]\nusername='o'\npassword_hash='h'\nrole='root'\ntenants=['*']",
        "operators[0].role: Input should be 'admin' or 'viewer'",
    ),
    (
        "duplicate operator",
        "[[operators]]\nusername='o'\npassword_hash='h'\ntenants=['*']\n"
        "[[operators]]\nusername='o'\npassword_hash='i'\ntenants=['*']",
        "operators[1]: duplicate username 'o'",
    ),
    (
        "sign-in limit",
        "[console]\nlogin_limit_per_username = 'often'",
        "console.login_limit_per_username: 'often' is not a rate limit",
    ),
    (
        "action limit",
        "[console]\naction_limit_per_operator = '30 a minute'",
        "console.action_limit_per_operator: '30 a minute' is not a rate limit",
    ),
    # Blob keys begin with the tenant's id, and no store takes "." or ".." for a segment.
    ("tenant id of dots", "[[tenants]]\nid='..'", "tenants[0].id: '..' cannot be a tenant id"),
    # Beyond what a signed URL can carry: every media URL, and so every read of a message with one, failed.
    (
        "media URL lifetime",
        "[storage]\nurl_ttl_seconds = 10_000_000_000",
        "storage.url_ttl_seconds: Input should be less than or equal to 3162240000",
    ),
    (
        "tenant's media URL lifetime",
        "[[tenants]]\nid='t'\nmedia_url_ttl_seconds = 10_000_000_000",
        "tenants[0].media_url_ttl_seconds: Input should be less than or equal to 3162240000",
    ),
    (
        "database connect timeout",
        "[database]\nconnect_timeout_seconds = 1",
        "database.connect_timeout_seconds: Input should be greater than or equal to 2",
    ),
]


@pytest.mark.parametrize("label, toml, message", BAD_SETTINGS, ids=[case[0] for case in BAD_SETTINGS])
def test_a_bad_setting_is_one_line_naming_it(tmp_path, label, toml, message):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, toml)
    text = str(error.value)
    assert message in text
    assert "\n" not in text


# The sections the development defaults fill in (all of them: whatever development.py adds to nothing).
_FILLED: dict = {}
add_development_defaults(_FILLED, provider_names=ADAPTERS)
DEVELOPMENT_SECTIONS = sorted(_FILLED)
MALFORMED_SHAPES = {
    "a table": "[{section}]",
    "a table with a key": "[{section}]\nid = 't'",
    "an array of numbers": "{section} = [1]",
    "an array of strings": "{section} = ['t']",
    "an array of arrays": "{section} = [[]]",
    "a string": "{section} = 't'",
    "an empty string": "{section} = ''",
    "a number": "{section} = 5",
    "a boolean": "{section} = true",
}


@pytest.mark.parametrize("shape", MALFORMED_SHAPES.values(), ids=list(MALFORMED_SHAPES))
@pytest.mark.parametrize("section", DEVELOPMENT_SECTIONS)
def test_development_refuses_a_malformed_section_as_production_does(tmp_path, section, shape):
    """Not filled in over it, nor a traceback from filling in the others (KeyError: 0 for `[tenants]`
    with a key, AttributeError for `tenants = [1]`): the same lines as production's."""
    toml = shape.format(section=section)
    problems = {}
    for environment in ("development", "production"):
        with pytest.raises(ConfigError) as error:
            _load(tmp_path, f'environment = "{environment}"\n{toml}')
        problems[environment] = error.value.problems
    assert problems["development"] == problems["production"]
    assert all(problem.startswith(section) for problem in problems["development"]), problems


def test_development_refuses_a_table_from_the_environment_where_a_list_belongs(tmp_path):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, environ={"WEBHOOK__TENANTS__0__ID": "t"})
    assert error.value.problems == ["tenants: Input should be a valid list"]


def test_development_fills_in_each_section_left_out_on_its_own(tmp_path):
    settings = _load(
        tmp_path, "[[tenants]]\nid = 't'\n[[connections]]\nprovider = 'twilio'\ntenant = 't'\nsecrets = ['token']"
    )
    # The file's one connection replaces every development one; its tenant owns the development user and key.
    assert [connection.key for connection in settings.connections] == ["twilio/default"]
    assert [(user.username, user.tenant) for user in settings.api_users] == [(DEVELOPMENT_USERNAME, "t")]
    assert [key.tenant for key in settings.api_keys] == ["t"]
    # An empty list is a section left out.
    settings = _load(tmp_path, "tenants = []\nconnections = []")
    assert [tenant.id for tenant in settings.tenants] == [DEFAULT_TENANT_ID]
    assert {connection.provider for connection in settings.connections} == set(ADAPTERS)
    # API users or API keys of the file's own: neither development one is added.
    settings = _load(
        tmp_path, "[[tenants]]\nid = 't'\n[[api_keys]]\nname = 'k'\nkey_sha256 = '" + "0" * 64 + "'\ntenant = 't'"
    )
    assert settings.api_users == [] and [key.name for key in settings.api_keys] == ["k"]


def _connection_toml(provider: str, *secrets: str) -> str:
    listed = ", ".join(f"'{secret}'" for secret in secrets)
    return f"[[tenants]]\nid = 't'\n[[connections]]\nprovider = '{provider}'\nname = 'main'\ntenant = 't'\nsecrets = [{listed}]"


SMALL_ORDER_KEY = base64.b64encode(bytes(32)).decode()  # a placeholder under which forged signatures verify
TELNYX_KEY = "not a Telnyx public key: {} (the portal shows the account's Ed25519 public key as the base64 of 32 bytes)"
STANDARD_SECRET_SHAPE = "not a Standard Webhooks secret (whsec_ and the base64 of the key)"
MALFORMED_CREDENTIALS = [
    ("telnyx", "not a key", TELNYX_KEY.format("not base64")),
    ("telnyx", base64.b64encode(bytes(range(31))).decode(), TELNYX_KEY.format("the base64 of 31 bytes")),
    ("telnyx", STANDARD_SECRET, TELNYX_KEY.format("not base64")),
    (
        "telnyx",
        SMALL_ORDER_KEY,
        "not a Telnyx public key: a key of small order, under which forged signatures verify (a placeholder?)",
    ),
    ("standard", "whsec_", STANDARD_SECRET_SHAPE),  # no key at all: the library raises
    ("standard", "whsec_c2VjcmV0-_c2VjcmV0", STANDARD_SECRET_SHAPE),  # url-safe base64: the library skips - and _
    ("standard", "whsec_c2VjcmV0c", STANDARD_SECRET_SHAPE),  # a length base64 cannot have: the library raises
    ("standard", "my shared secret", STANDARD_SECRET_SHAPE),
]


@pytest.mark.parametrize(
    ("provider", "secret", "problem"),
    MALFORMED_CREDENTIALS,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(MALFORMED_CREDENTIALS)],
)
def test_a_provider_secret_its_scheme_cannot_use_is_refused_without_showing_it(tmp_path, provider, secret, problem):
    """Where a connection's secret has a shape of its own, one without it can verify nothing: every
    request would be refused 401. Named with the connection and the secret's place, never its value."""
    good = {"telnyx": VECTOR_PUBLIC_KEY, "standard": STANDARD_SECRET}[provider]
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, _connection_toml(provider, good, secret))
    assert error.value.problems == [f"connections[0] ({provider}/main): secrets[1]: {problem}"]


@pytest.mark.parametrize(
    ("provider", "secret"),
    [
        ("telnyx", VECTOR_PUBLIC_KEY),
        ("standard", STANDARD_SECRET),
        ("standard", STANDARD_SECRET.removeprefix("whsec_")),  # the library takes it without the prefix
        ("standard", "whsec_c2VjcmV0"),  # and without base64's padding
        ("twilio", "any token at all"),  # an auth token or signing key has no shape to check
        ("mapping", "x"),
    ],
)
def test_provider_secrets_their_schemes_can_use_are_accepted(tmp_path, provider, secret):
    options = "\noptions = { auth = { kind = 'token', header = 'X-Token' } }" if provider == "mapping" else ""
    assert _load(tmp_path, _connection_toml(provider, secret) + options).connections[0].secrets == [secret]


def test_an_empty_secret_or_password_is_refused(tmp_path):
    """Anyone can sign with an empty HMAC key; an empty variable behind env: is how one slips in."""
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, _connection_toml("twilio", "env:TWILIO_AUTH_TOKEN"), environ={"TWILIO_AUTH_TOKEN": ""})
    assert error.value.problems == [
        "connections[0].secrets[0] (from the environment variable TWILIO_AUTH_TOKEN): String should have at least 1 character"
    ]
    with pytest.raises(ConfigError) as error:
        _load(
            tmp_path, "[[tenants]]\nid = 't'\n[[connections]]\nprovider = 'plivo'\ntenant = 't'\nbasic_auth = ['hook:']"
        )
    assert error.value.problems == [
        "connections[0].basic_auth: each entry must be 'username:password', neither of them empty"
    ]


def test_production_refuses_unsigned_development_connections(tmp_path):
    with pytest.raises(ConfigError) as error:
        _load(
            tmp_path,
            """
            environment = "production"
            secret_key = "0123456789abcdef0123456789abcdef0123"
            [[tenants]]
            id = "t"
            [[connections]]
            provider = "twilio"
            name = "dev"
            tenant = "t"
            verify = false
        """,
        )
    assert "verify = false" in str(error.value) and "production" in str(error.value)


def test_production_adds_no_development_defaults(tmp_path):
    settings = _load(tmp_path, 'environment = "production"\nsecret_key = "' + "k" * 40 + '"')
    assert settings.tenants == [] and settings.api_users == [] and settings.connections == []


def test_production_needs_a_secret_key(tmp_path):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, 'environment = "production"')
    assert str(error.value).startswith("secret_key: must be set in production")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_settings(tmp_path / "absent.toml", environ={})
    assert "no such file" in str(error.value)


def test_the_command_line_prints_one_line_and_exits_nonzero(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[media]\nmax_bytes = -1\n")
    completed = subprocess.run(
        [sys.executable, "-m", "webhook_service.cli", "check-config"],
        env={"WEBHOOK_SERVICE_CONFIG": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "configuration error: media.max_bytes: Input should be greater than 0"
    ]


@pytest.mark.parametrize(("configured", "expected"), [(None, os.cpu_count() or 1), (3, 3)])
def test_concurrent_image_decodes_reach_the_media_policy(tmp_path, configured, expected):
    from webhook_service.runtime import Runtime

    media = {} if configured is None else {"max_concurrent_image_decodes": configured}
    runtime = Runtime(load_settings(environ={}, overrides={"data_dir": str(tmp_path / "data"), "media": media}))
    try:
        assert runtime.media_policy.max_concurrent_decodes == expected
    finally:
        runtime.close()
