"""`webhook-service check-config`: every problem named with the nearest known key for a typo and the
environment variable a bad value came from; variables that look like ours but are not read pointed out;
LOG_LEVEL in any case; and with --connect, whether the database, blob store and queue can be used."""

from __future__ import annotations

import base64

import pytest
from alembic import command
from click.testing import CliRunner, Result

from tests.fixtures.blob_servers import MOTO_CREDENTIALS, unique_bucket_name
from tests.fixtures.services import free_port
from tests.support.migrations import REVISIONS, migrations
from webhook_service.cli.main import cli
from webhook_service.database.migrate import alembic_config


@pytest.fixture
def check_config(tmp_path, monkeypatch):
    """check-config with this file (TOML text) and these variables, in an environment of its own."""
    config = tmp_path / "service.toml"
    # --config sets this variable for the commands it runs: set here first, it is restored afterwards.
    monkeypatch.setenv("WEBHOOK_SERVICE_CONFIG", str(config))

    def invoke(toml: str = "", *arguments: str, **variables: str) -> Result:
        config.write_text(f'data_dir = "{tmp_path / "data"}"\n{toml}')
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return CliRunner().invoke(cli, ["--config", str(config), "check-config", *arguments], catch_exceptions=False)

    return invoke


def test_a_typo_in_the_file_gets_the_nearest_key(check_config):
    result = check_config("[media]\nmax_byte = 1000\n")
    assert result.exit_code == 2
    assert result.stderr == "configuration error: media.max_byte: no such setting; did you mean media.max_bytes?\n"


def test_a_typo_in_a_variable_gets_the_variable_to_set(check_config):
    result = check_config(WEBHOOK__MEDIA__FETCH__ALLOW_HTTPS="true")
    assert result.exit_code == 2
    assert result.stderr == (
        "configuration error: media.fetch.allow_https (from the environment variable "
        "WEBHOOK__MEDIA__FETCH__ALLOW_HTTPS): no such setting; did you mean WEBHOOK__MEDIA__FETCH__ALLOW_HTTP?\n"
    )


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("PORT", "eighty", "port (from the environment variable PORT): Input should be a valid integer"),
        (
            "WEBHOOK__MEDIA__MAX_BYTES",
            "-1",
            "media.max_bytes (from the environment variable WEBHOOK__MEDIA__MAX_BYTES)",
        ),
        (
            "WEBHOOK__QUEUE",
            '{"worker_threads": 0}',
            "queue.worker_threads (from the environment variable WEBHOOK__QUEUE)",
        ),
        ("WEBHOOK_ENV", "staging", "environment (from the environment variable WEBHOOK_ENV): Input should be"),
    ],
)
def test_a_bad_value_from_the_environment_names_the_variable(check_config, variable, value, problem):
    result = check_config(**{variable: value})
    assert result.exit_code == 2
    assert result.stderr.startswith(f"configuration error: {problem}")


def test_a_bad_value_read_through_env_names_that_variable(check_config):
    result = check_config('redis_url = "env:QUEUE_REDIS"\nport = "env:SERVICE_PORT"\n', SERVICE_PORT="http")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["configuration error: redis_url: environment variable QUEUE_REDIS is not set"]
    result = check_config('port = "env:SERVICE_PORT"\n', SERVICE_PORT="http")
    assert "port (from the environment variable SERVICE_PORT): Input should be a valid integer" in result.stderr


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", "not a database URL"),  # was a traceback (SQLAlchemy's ArgumentError)
        ("mysql://u:secret@db/x", "unsupported database 'mysql://'"),  # passed, and `migrate` failed
    ],
)
def test_a_database_url_the_service_cannot_use_is_a_problem_like_any_other(check_config, url, problem):
    result = check_config(DATABASE_URL=url)
    assert result.exit_code == 2
    assert result.stderr == (
        f"configuration error: database_url (from the environment variable DATABASE_URL): {problem}: use "
        "sqlite:///FILE or postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or postgres://, postgresql+psycopg://)\n"
    )
    # And every command stops on it with the same line.
    migrate = CliRunner().invoke(cli, ["migrate"], catch_exceptions=False)
    assert (migrate.exit_code, migrate.stderr) == (2, result.stderr)


def test_every_problem_is_listed(check_config):
    result = check_config("colour = 'blue'\nport = 0\n[media]\njpeg_quality = 101\n")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "configuration error: port: Input should be greater than or equal to 1",
        "configuration error: media.jpeg_quality: Input should be less than or equal to 100",
        "configuration error: colour: no such setting",
    ]


def test_variables_that_look_like_ours_but_are_not_read_are_pointed_out(check_config):
    result = check_config(
        WEBHOOK_MEDIA__MAX_BYTES="1048576",  # one underscore short
        webhook__port="9000",  # the right name in lower case
        WEBHOOK_LOGLEVEL="debug",
    )
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "warning: the environment variable WEBHOOK_LOGLEVEL is not read by this service "
        "(it reads WEBHOOK__<SECTION>__<KEY> variables)",
        "warning: the environment variable WEBHOOK_MEDIA__MAX_BYTES is not read by this service; "
        "did you mean WEBHOOK__MEDIA__MAX_BYTES?",
        "warning: the environment variable webhook__port is not read by this service; did you mean WEBHOOK__PORT?",
    ]


@pytest.mark.parametrize("level", ["debug", "Warning", "INFO"])
def test_log_level_is_accepted_in_any_case(check_config, level):
    assert check_config(LOG_LEVEL=level).exit_code == 0


@pytest.mark.parametrize("name", ["acme-prod", "acme.prod", "acme prod"])
def test_a_queue_name_that_would_share_a_redis_queue_is_refused(check_config, name):
    # huey keeps only letters, digits and _ of the name in its Redis keys: acme-prod and acme.prod both
    # became the queue acmeprod.
    result = check_config(f'[queue]\nname = "{name}"\n')
    assert result.exit_code == 2
    assert result.stderr.startswith(f"configuration error: queue.name: {name!r} has characters the queue drops")
    assert "write 'acmeprod' (the queue it has used so far)" in result.stderr


def test_queue_names_huey_keeps_as_they_are_are_accepted(check_config):
    assert check_config('[queue]\nname = "acme_prod"\n').exit_code == 0
    assert (
        "queue: Redis, queue 'acme_prod'"
        in check_config('redis_url = "redis://127.0.0.1:1/0"\n[queue]\nname = "acme_prod"\n').output
    )


# --connect -----------------------------------------------------------------------------------------


def test_connect_checks_the_database_blob_store_and_queue(run):
    result = run("check-config", "--connect")
    assert result.exit_code == 0, result.output
    assert f"check database: ok, reachable, schema up to date (revision {REVISIONS[-1]})" in result.output
    assert "check blob store: ok, local store can be used" in result.output
    assert "check queue: ok, embedded queue answers" in result.output


def test_connect_reports_a_database_that_lacks_migrations(run, runtime, database_url):
    config = alembic_config(database_url)
    newer = REVISIONS[REVISIONS.index("0002") + 1 :]
    command.downgrade(config, "0002")
    try:
        result = run("check-config", "--connect")
    finally:
        command.upgrade(config, "head")  # the database is shared with the tests that follow
    assert result.exit_code == 1
    assert (
        f"check database: FAILED, reachable, schema at revision 0002 lacks {migrations(newer)} ({', '.join(newer)}): "
        "run `webhook-service migrate`"
    ) in result.output
    assert "check blob store: ok" in result.output  # every check runs


def test_connect_reports_what_cannot_be_reached(check_config):
    closed = free_port()
    result = check_config(
        f'database_url = "postgresql://nobody@127.0.0.1:{closed}/x"\nredis_url = "redis://127.0.0.1:{closed}/0"\n',
        "--connect",
    )
    assert result.exit_code == 1
    assert "check database: FAILED, OperationalError: " in result.output
    assert "check queue: FAILED, ConnectionError: " in result.output


def test_connect_reports_a_missing_bucket_with_the_command_that_creates_it(check_config, moto_s3_endpoint):
    bucket = unique_bucket_name()
    result = check_config(
        f'[storage]\nbackend = "s3"\n[storage.s3]\nbucket = "{bucket}"\nendpoint_url = "{moto_s3_endpoint}"\n'
        f'access_key_id = "{MOTO_CREDENTIALS["access_key_id"]}"\n'
        f'secret_access_key = "{MOTO_CREDENTIALS["secret_access_key"]}"\n',
        "--connect",
    )
    assert result.exit_code == 1
    assert (
        f"check blob store: FAILED, S3 bucket '{bucket}' does not exist (`webhook-service storage init` creates it)"
    ) in result.output


def test_connect_on_a_new_sqlite_database_says_to_migrate_and_creates_no_file(check_config, tmp_path):
    result = check_config("", "--connect")
    database = tmp_path / "data" / "service.db"
    assert result.exit_code == 1
    assert f"check database: FAILED, no database file at {database} yet: run `webhook-service migrate`" in result.output
    assert not database.exists()  # a check changes nothing
    assert "check blob store: ok" in result.output  # every check runs


def test_what_the_service_refuses_only_as_it_starts_is_found_too(check_config, tmp_path):
    """A declared endpoint URL the delivery rules refuse, and a storage setting the store cannot use: the
    configuration's own checks pass them, and `web` and `worker` stop on them as they start."""
    result = check_config(f"""
[storage]
backend = "azure"
[storage.azure]
container = "media"
connection_string = "garbage"
[[tenants]]
id = "00000000-0000-0000-0000-00000000000a"
[[delivery.endpoints]]
tenant = "00000000-0000-0000-0000-00000000000a"
name = "private"
url = "http://10.0.0.5/hook"
secret = "whsec_{"A" * 32}"
""")
    assert result.exit_code == 2, result.output
    problems = result.stderr.splitlines()
    assert len(problems) == 2 and all(line.startswith("configuration error: ") for line in problems)
    assert problems[0].startswith("configuration error: delivery.endpoints[0].url: ")
    assert problems[1].startswith("configuration error: storage.azure: ")
    assert not (tmp_path / "data").exists()  # nothing written to find them


S3_WITH_A_KEY_ID = '[storage]\nbackend = "s3"\n[storage.s3]\nbucket = "media"\n'


@pytest.mark.parametrize(
    ("toml", "variables", "problem"),
    [
        (
            S3_WITH_A_KEY_ID + 'access_key_id = "AKIAEXAMPLE"\n',
            {},
            "storage.s3: Partial credentials found in explicit, missing: aws_secret_access_key",
        ),
        (
            S3_WITH_A_KEY_ID,
            {"AWS_PROFILE": "no-such-profile"},
            "storage.s3: The config profile (no-such-profile) could not be found",
        ),
        (
            'redis_url = "redis://:s3cret@127.0.0.1:6379/0?socket_timeout=soon"\n',
            {},
            "redis_url: Invalid value for 'socket_timeout' in connection URL.",
        ),
        (
            'redis_url = "redis://:s3cret@127.0.0.1:63790x/0"\n',
            {},
            "redis_url: Port could not be cast to integer value as '63790x'",
        ),
        (
            'redis_url = "http://127.0.0.1:6379/0"\n',
            {},
            "redis_url: Redis URL must specify one of the following schemes",
        ),
    ],
    ids=["S3 key id without its secret", "unknown AWS profile", "redis option", "redis port", "redis scheme"],
)
def test_what_the_queue_and_store_libraries_refuse_as_they_start_is_a_configuration_error(
    check_config, toml, variables, problem
):
    """Settings botocore and redis-py refused only as each process made its store or its queue: a
    traceback from `run` itself (S3), or from every gunicorn worker and worker process (Redis)."""
    result = check_config(toml, **variables)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"configuration error: {problem}")
    assert result.stderr.count("\n") == 1 and "s3cret" not in result.stderr


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('[tenants]\nid = "t"\n', "tenants: Input should be a valid list"),
        ("tenants = [1]\n", "tenants[0]: Input should be a valid dictionary or instance of Tenant"),
        ('connections = "twilio"\n', "connections: Input should be a valid list"),
    ],
)
def test_a_malformed_section_in_development_is_named_not_a_traceback(check_config, toml, problem):
    result = check_config(toml)  # development: the defaults fill in the other sections
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"configuration error: {problem}"]


def test_a_provider_secret_its_scheme_cannot_use_is_named_not_shown(check_config):
    not_a_key = base64.b64encode(b"a Telnyx API key, not its public key").decode()
    result = check_config(
        '[[tenants]]\nid = "t"\n[[connections]]\nprovider = "telnyx"\nname = "main"\ntenant = "t"\n'
        'secrets = ["env:TELNYX_PUBLIC_KEY"]\n',
        TELNYX_PUBLIC_KEY=not_a_key,
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "configuration error: connections[0] (telnyx/main): secrets[0]: not a Telnyx public key: the base64 of 36 "
        "bytes (the portal shows the account's Ed25519 public key as the base64 of 32 bytes)"
    ]
    assert not_a_key not in result.output


def test_what_is_found_only_at_start_is_found_beside_schema_errors(check_config, tmp_path):
    """The sections valid on their own are checked as the service would check them as it starts (and the
    connections against their adapters), whatever problems the others have."""
    result = check_config("""
colour = "blue"
[media]
jpeg_quality = 101
[storage]
backend = "azure"
[storage.azure]
container = "media"
connection_string = "garbage"
[[tenants]]
id = "t"
[[connections]]
provider = "standard"
tenant = "t"
secrets = ["whsec_not-base64"]
""")
    assert result.exit_code == 2, result.output
    problems = result.stderr.splitlines()
    assert problems[:3] == [
        "configuration error: media.jpeg_quality: Input should be less than or equal to 100",
        "configuration error: colour: no such setting",
        "configuration error: connections[0] (standard/default): secrets[0]: not a Standard Webhooks secret "
        "(whsec_ and the base64 of the key)",
    ]
    assert problems[3].startswith("configuration error: storage.azure: ") and len(problems) == 4
    assert not (tmp_path / "data").exists()


# One connection's (or declared endpoint's) schema error used to leave the whole list out of the further
# checks, so the others' secrets and options were checked only once it was fixed: one problem per run.
CONNECTIONS_ONE_BROKEN = """
[[tenants]]
id = "t"
[[connections]]
provider = "twilio"
name = "typo"
tenant = "t"
secret = ["token"]
[[connections]]
provider = "telnyx"
name = "main"
tenant = "t"
secrets = ["env:TELNYX_PUBLIC_KEY"]
[[connections]]
provider = "standard"
tenant = "t"
secrets = ["whsec_not-base64"]
[[connections]]
provider = "plivo"
tenant = "t"
secrets = ["auth-token"]
options = { colour = "blue" }
"""
NOT_A_TELNYX_KEY = base64.b64encode(b"a Telnyx API key, not its public key").decode()


def test_a_connection_with_a_schema_error_leaves_the_others_checked(check_config):
    result = check_config(CONNECTIONS_ONE_BROKEN, TELNYX_PUBLIC_KEY=NOT_A_TELNYX_KEY)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "configuration error: connections[0].secret: no such setting; did you mean connections[0].secrets?",
        # Each named by its place in the file, not among the connections left to check.
        "configuration error: connections[1] (telnyx/main): secrets[0]: not a Telnyx public key: the base64 of 36 "
        "bytes (the portal shows the account's Ed25519 public key as the base64 of 32 bytes)",
        "configuration error: connections[2] (standard/default): secrets[0]: not a Standard Webhooks secret "
        "(whsec_ and the base64 of the key)",
        "configuration error: connections[3] (plivo/default): takes no options, got ['colour']",
    ]
    assert NOT_A_TELNYX_KEY not in result.output and "not-base64" not in result.output


def test_the_service_refuses_at_start_what_check_config_lists(check_config):
    listed = check_config(CONNECTIONS_ONE_BROKEN, TELNYX_PUBLIC_KEY=NOT_A_TELNYX_KEY).stderr.splitlines()
    for start in ("web", "worker", "run"):
        result = CliRunner().invoke(cli, [start], catch_exceptions=False)
        assert result.exit_code == 2
        # Its first problem, on one line, counting the others.
        assert result.stderr == f"{listed[0]} (and {len(listed) - 1} more)\n"


def test_a_declared_endpoint_with_a_schema_error_leaves_the_others_checked(check_config):
    secret = f"whsec_{'A' * 32}"
    result = check_config(f"""
[[tenants]]
id = "t"
[[delivery.endpoints]]
tenant = "t"
name = "typo"
url = "https://hooks.example.com/in"
secret = "{secret}"
enabeld = false
[[delivery.endpoints]]
tenant = "t"
name = "private"
url = "http://10.0.0.5/hook"
secret = "{secret}"
""")
    assert result.exit_code == 2
    problems = result.stderr.splitlines()
    assert problems[0] == (
        "configuration error: delivery.endpoints[0].enabeld: no such setting; did you mean delivery.endpoints[0].enabled?"
    )
    assert problems[1].startswith("configuration error: delivery.endpoints[1].url: ") and len(problems) == 2
    assert secret not in result.output


def test_a_table_with_problems_of_its_own_waits_for_them_to_be_fixed(check_config):
    # The endpoints' URLs are checked under the rules [delivery] sets: with one of its settings refused,
    # checking them under the defaults instead could name problems the configuration does not have.
    result = check_config(f"""
[[tenants]]
id = "t"
[delivery]
allow_http = "yes please"
[[delivery.endpoints]]
tenant = "t"
name = "plain"
url = "http://hooks.example.com/in"
secret = "whsec_{"A" * 32}"
""")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "configuration error: delivery.allow_http: Input should be a valid boolean, unable to interpret input"
    ]
