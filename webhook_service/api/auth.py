"""Who is calling the read and media APIs: HTTP Basic (as the seeds' clients do) or a bearer API key.
Every API query is scoped to the caller's tenant."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from flask import g, request
from werkzeug.datastructures import Authorization
from werkzeug.security import check_password_hash, generate_password_hash

from webhook_service.api.errors import api_error
from webhook_service.config.model import ApiKey, ApiUser

# Password hashes are slow on purpose; a client sending Basic auth on every request would pay that
# every time. Successful checks are remembered for a while, keyed by an HMAC of the credentials with a
# per-process random key (so the cache itself holds nothing reusable).
_CACHE_SECONDS = 300
_CACHE_LIMIT = 1024


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    name: str
    kind: Literal["user", "api_key"]


class ApiAuthenticator:
    def __init__(self, users: list[ApiUser], keys: list[ApiKey]):
        self._users = {user.username: user for user in users}
        self._keys = {key.key_sha256: key for key in keys}
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        # Checked when the user is unknown, so response time does not reveal which usernames exist;
        # made with the same method (and so the same cost) as the configured hashes.
        method = next((u.password_hash.split("$", 1)[0] for u in users), "scrypt")
        try:
            self._decoy_hash = generate_password_hash(secrets.token_urlsafe(16), method=method)
        except ValueError:
            self._decoy_hash = generate_password_hash(secrets.token_urlsafe(16))

    def authenticate(self, authorization: str | None) -> Principal | None:
        scheme, _, credentials = (authorization or "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            key = self._keys.get(hashlib.sha256(credentials.encode("utf-8", "surrogateescape")).hexdigest())
            return Principal(key.tenant, key.name, "api_key") if key else None
        if scheme.lower() == "basic" and credentials:
            offered = Authorization.from_header(authorization)
            if offered is None or offered.username is None or offered.password is None:
                return None
            return self._basic(offered.username, offered.password)
        return None

    def required(self, view: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: 401 (with a Basic challenge) unless the caller authenticates; sets g.principal."""

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = self.authenticate(request.headers.get("Authorization"))
            if principal is None:
                response = api_error(401, "unauthorized", "Valid Basic credentials or a bearer API key are required.")
                response.headers["WWW-Authenticate"] = 'Basic realm="webhook-service", charset="UTF-8"'
                return response
            g.principal = principal
            return view(*args, **kwargs)

        return wrapper

    def _basic(self, username: str, password: str) -> Principal | None:
        fingerprint = hmac.new(self._cache_key, f"{username}:{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            cached = self._verified.get(fingerprint)
        if cached and cached[0] > now:
            return cached[1]
        user = self._users.get(username)
        if user is None:
            check_password_hash(self._decoy_hash, password)
            return None
        if not check_password_hash(user.password_hash, password):
            return None
        principal = Principal(user.tenant, user.username, "user")
        with self._lock:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[fingerprint] = (now + _CACHE_SECONDS, principal)
        return principal


def current_principal() -> Principal:
    principal: Principal = g.principal
    return principal
