"""The suite's shared fixtures. Each lives in a module of tests/fixtures/, one per concern, and is
imported here by name so that pytest (and a reader) finds it:

- fixtures/app.py: `database_url` (every app test runs on SQLite and PostgreSQL), `settings`
  (override `settings_overrides` in a module to change them), `resolver`, `runtime`, `app`, `client`;
- fixtures/live_server.py: `live_server`, the test app over real HTTP on loopback;
- fixtures/media_server.py: `media_server`, a loopback HTTP(S) server for downloads;
- fixtures/blob_servers.py: moto's S3 server and Azurite, and `blob_store` on each backend;
- fixtures/services.py: `redis_url`, and the rule that a missing server skips on a laptop but fails in CI.

Fixtures used by one folder only live in that folder's conftest.py.

Tests marked `slow` run first (`pytest_collection_modifyitems` below).
"""

from tests.fixtures.app import (
    _postgres_database,
    _postgres_emptier,
    _sqlite_template,
    _url_builders_made_once,
    app,
    client,
    database_url,
    resolver,
    runtime,
    settings,
    settings_overrides,
)
from tests.fixtures.blob_servers import (
    azurite_blob_endpoint,
    azurite_oauth_blob_endpoint,
    blob_store,
    make_azure_store,
    make_local_store,
    make_s3_store,
    moto_s3_endpoint,
)
from tests.fixtures.live_server import live_server
from tests.fixtures.media_server import media_server, media_server_session
from tests.fixtures.services import redis_url

__all__ = [
    "_postgres_database",
    "_postgres_emptier",
    "_sqlite_template",
    "_url_builders_made_once",
    "app",
    "azurite_blob_endpoint",
    "azurite_oauth_blob_endpoint",
    "blob_store",
    "client",
    "database_url",
    "live_server",
    "make_azure_store",
    "make_local_store",
    "make_s3_store",
    "media_server",
    "media_server_session",
    "moto_s3_endpoint",
    "redis_url",
    "resolver",
    "runtime",
    "settings",
    "settings_overrides",
]


def pytest_collection_modifyitems(items: list) -> None:
    """The tests marked `slow` (processes started, a browser, mypy: seconds each) first, the rest in their
    order after them. The folders' order put most of the slow ones last, and the run ended with one
    worker on them for 20 s while the other had finished; first, they are done while quick tests remain
    for an idle worker to take (scripts/test.sh runs pytest-xdist's worksteal)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
