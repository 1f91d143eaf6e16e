"""Served as the Procfile serves it (gunicorn, 2 workers, no Redis), the console's sign-in limit holds for
the service, not per worker: with 5 attempts a minute per username, the 6th and 7th wrong passwords are
refused whichever worker answers them. (Counted in each worker's memory, all 7 were answered 401 when the
kernel spread them over both workers, which it does in some runs only: tests/console/test_shared_limits.py,
with two apps over one database, is the check that fails every time without the shared count.)"""

from __future__ import annotations

import re

import requests
from werkzeug.security import generate_password_hash

from webhook_service.database.migrate import migrate


def _attempt(base: str, username: str, password: str) -> int:
    # A connection of its own each time (no keep-alive), so that the attempts go to either worker.
    with requests.Session() as client:
        client.headers["Connection"] = "close"
        form = client.get(f"{base}/console/login", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token, form
        response = client.post(
            f"{base}/console/login",
            data={"username": username, "password": password, "csrf_token": token.group(1)},
            allow_redirects=False,
            timeout=10,
        )
        return response.status_code


def test_wrong_passwords_are_limited_across_the_workers(gunicorn, tmp_path):
    database = f"sqlite:///{tmp_path / 'service.db'}"
    migrate(database)
    password_hash = generate_password_hash("ada-password-1", method="pbkdf2:sha256:1000")
    served = gunicorn(f"""
data_dir = "{tmp_path / "data"}"
database_url = "{database}"
secret_key = "test-secret-key-0123456789abcdef0123456789"
web_workers = 2
[[operators]]
username = "ada"
password_hash = "{password_hash}"
role = "admin"
tenants = ["*"]
""")
    served.workers(2)
    assert [_attempt(served.base, "ada", "guess") for _ in range(7)] == [401] * 5 + [429] * 2
    assert _attempt(served.base, "ada", "ada-password-1") == 429
