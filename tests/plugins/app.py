"""The application under test, on a real database: every test that uses `app` runs twice, once on
SQLite and once on PostgreSQL.

Test modules customise the configuration by overriding the `settings_overrides` fixture (a dict
merged into the base test configuration below).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from webhook_service.app import create_app
from webhook_service.config import load_settings
from webhook_service.db import migrate
from webhook_service.models import Base
from webhook_service.runtime import Runtime

from .services import POSTGRES_URL, service_unavailable, url_reachable, xdist_worker

TENANT_A = "00000000-0000-0000-0000-000000000000"
TENANT_B = "11111111-1111-1111-1111-111111111111"
NUMBER_A = "+15551234567"
NUMBER_A_ID = "00000000-0000-0000-0000-000000000000"
NUMBER_B = "+15557654321"
NUMBER_B_ID = "22222222-2222-2222-2222-222222222222"
# Seed 000/001's example credentials belong to tenant A, so the seeds' client code runs unchanged.
USER_A = ("your-email@example.com", "your-password")
USER_B = ("other@example.com", "other-password")
API_KEY_A = "key-a-0123456789abcdef"
API_KEY_B = "key-b-0123456789abcdef"

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks official vector key
STANDARD_SECRET_B = "whsec_" + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="


def _fast_hash(password: str) -> str:
    # Few iterations: the hash is test data, and the suite creates many apps.
    return generate_password_hash(password, method="pbkdf2:sha256:1000")


def _key_hash(key: str) -> str:
    import hashlib
    return hashlib.sha256(key.encode()).hexdigest()


def base_test_config(data_dir: Path, database_url: str) -> dict:
    return {
        "environment": "development",
        "data_dir": str(data_dir),
        "database_url": database_url,
        "secret_key": "test-secret-key-0123456789abcdef0123456789",
        # Nothing consumes this queue in tests; the attachment pipeline's tests switch to "immediate".
        "queue": {"immediate": False},
        "tenants": [
            {"id": TENANT_A, "name": "Tenant A", "phone_numbers": [{"id": NUMBER_A_ID, "number": NUMBER_A}]},
            {"id": TENANT_B, "name": "Tenant B", "phone_numbers": [{"id": NUMBER_B_ID, "number": NUMBER_B}]},
        ],
        "api_users": [
            {"username": USER_A[0], "password_hash": _fast_hash(USER_A[1]), "tenant": TENANT_A},
            {"username": USER_B[0], "password_hash": _fast_hash(USER_B[1]), "tenant": TENANT_B},
        ],
        "api_keys": [
            {"name": "a", "key_sha256": _key_hash(API_KEY_A), "tenant": TENANT_A},
            {"name": "b", "key_sha256": _key_hash(API_KEY_B), "tenant": TENANT_B},
        ],
        "connections": [
            {"provider": "standard", "name": "main", "tenant": TENANT_A, "secrets": [STANDARD_SECRET]},
            {"provider": "standard", "name": "other", "tenant": TENANT_B, "secrets": [STANDARD_SECRET_B]},
            {"provider": "standard", "name": "basic", "tenant": TENANT_A, "secrets": [STANDARD_SECRET],
             "basic_auth": ["hook:old-password", "hook:new-password"]},
            {"provider": "standard", "name": "basic-only", "tenant": TENANT_A,
             "basic_auth": ["hook:old-password"]},
            {"provider": "standard", "name": "open", "tenant": TENANT_A, "verify": False},
        ],
    }


# Databases -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file, copied for each test (migrating per test would dominate run time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str]:
    """One migrated database per xdist worker, emptied before each test."""
    if not url_reachable(POSTGRES_URL, 5432):
        service_unavailable("PostgreSQL", f"nothing listens at {POSTGRES_URL} (set TEST_POSTGRES_URL)")
    # Per process, so concurrent runs (two engineers, two terminals) never share or drop each other's.
    name = f"wsvc_test_{xdist_worker()}_{os.getpid()}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "service.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("_postgres_database")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    # DELETE, not TRUNCATE: on tables this small it is some thirty times faster.
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()
    return url


# Application -----------------------------------------------------------------------------------

@pytest.fixture
def settings_overrides() -> dict:
    """Override in a test module to change the configuration (merged into the base config)."""
    return {}


@pytest.fixture
def settings(tmp_path, database_url, settings_overrides):
    config = base_test_config(tmp_path / "data", database_url)
    for key, value in settings_overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return load_settings(environ={}, overrides=config)


@pytest.fixture
def resolver():
    """Host name resolution for media downloads (None: the system resolver). Overridden by media tests."""
    return None


@pytest.fixture
def runtime(settings, resolver):
    runtime = Runtime(settings, resolver=resolver)
    yield runtime
    runtime.close()


@pytest.fixture
def app(runtime):
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()
