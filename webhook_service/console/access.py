"""Who may use the console and what they may see: operators from the configuration (`[[operators]]`),
password checks that do not reveal which usernames exist, sign-in attempts counted per client address and
per username and actions per operator (shared by every web process: in Redis or the database), and the
signed-in operator of a request.

An operator's session holds their username, a fingerprint of their password hash and when they signed in:
removing an operator or changing their password ends their sessions at the next request, and a sign-in
ends `console.session_hours` after it began, however busy it was (the cookie is signed anew with each
answer, so its own timestamp only says when it was last used).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

from flask import g, session
from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError, StorageError
from limits.storage import SCHEMES, MemoryStorage, StorageTypes, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.security import check_password_hash, generate_password_hash

from webhook_service.config.model import ConfigError, ConsoleSettings, Operator
from webhook_service.database.engine import Database
from webhook_service.database.rate_limits import DatabaseStorage
from webhook_service.database.scope import Tenants
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.console")

# A Redis that does not answer must not hold a sign-in for long (see SignInLimiter).
_STORAGE_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class SignedIn:
    """The operator of the current request."""

    username: str
    role: str
    # None: every tenant (and rows of no tenant).
    tenants: Tenants

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Operators:
    def __init__(self, operators: list[Operator], fingerprint_key: bytes, lifetime: timedelta):
        self._by_name = {operator.username: operator for operator in operators}
        self._fingerprint_key = fingerprint_key
        self._lifetime_seconds = lifetime.total_seconds()

    @cached_property
    def _decoy_hash(self) -> str:
        """Checked when the username is unknown, so that the time taken does not tell which usernames
        exist; made with the configured hashes' method, so it costs the same. (Made on first use: hashing
        is slow on purpose, and most processes never see a sign-in.)"""
        method = next((o.password_hash.split("$", 1)[0] for o in self._by_name.values()), "scrypt")
        try:
            return generate_password_hash(secrets.token_urlsafe(16), method=method)
        except ValueError:
            return generate_password_hash(secrets.token_urlsafe(16))

    def check_password(self, username: str, password: str) -> Operator | None:
        operator = self._by_name.get(username)
        if operator is None:
            check_password_hash(self._decoy_hash, password)
            return None
        return operator if check_password_hash(operator.password_hash, password) else None

    def start_session(self, operator: Operator) -> None:
        session.clear()  # nothing of a session from before the sign-in survives it (session fixation)
        session["operator"] = operator.username
        session["credential"] = self._fingerprint(operator)
        session["signed_in_at"] = time.time()
        session.permanent = True

    def signed_in(self) -> SignedIn | None:
        """The session's operator, while they are configured with the password they signed in with."""
        if "signed_in" not in g:
            g.signed_in = self._from_session()
        result: SignedIn | None = g.signed_in
        return result

    def _from_session(self) -> SignedIn | None:
        username = session.get("operator")
        operator = self._by_name.get(username) if isinstance(username, str) else None
        if operator is None:
            return None
        fingerprint = session.get("credential")
        if not isinstance(fingerprint, str) or not hmac.compare_digest(fingerprint, self._fingerprint(operator)):
            return None
        signed_in_at = session.get("signed_in_at")
        if not isinstance(signed_in_at, int | float) or time.time() - signed_in_at > self._lifetime_seconds:
            return None
        tenants = None if operator.all_tenants else frozenset(operator.tenants)
        return SignedIn(operator.username, operator.role, tenants)

    def _fingerprint(self, operator: Operator) -> str:
        return hmac.new(self._fingerprint_key, operator.password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def _shared_storage(uri: str, options: dict, setting: str) -> StorageTypes:
    """The `limits` storage at `uri`. What it refuses (no storage of that scheme, a storage whose library
    is not installed, an option in the URL it cannot read, a port that is not one) is the configuration's
    problem, a ConfigError naming `setting` that the web says in one line as it starts: it was a traceback
    from every gunicorn worker. The messages name no URL, which may hold a password."""
    scheme = uri.partition("://")[0]
    if scheme not in SCHEMES:
        raise ConfigError(f"{setting}: no rate limit storage is called {scheme + '://'!r}")
    try:
        return storage_from_string(uri, wrap_exceptions=True, **options)
    except (ConfigurationError, ValueError) as error:
        raise ConfigError(f"{setting}: {error}") from None


class _Limits:
    """Hits counted in a moving window where `console.rate_limit_storage_url` says, by default in Redis
    (`redis_url`) or else in the service's database: either way every process and host of the deployment
    shares the count. Each process counts its own hits in memory too: a key past the limit there is refused
    without asking the shared storage, and if that storage fails, the memory count alone decides
    meanwhile: an outage must neither lock operators out nor lift the limit."""

    def __init__(self, settings: ConsoleSettings, redis_url: str | None, db: Database, purpose: str):
        uri = settings.rate_limit_storage_url or redis_url
        storage: StorageTypes
        if uri is None:
            storage = DatabaseStorage(db, wrap_exceptions=True)
        else:
            options: dict = {}
            if uri.startswith(("redis://", "rediss://", "redis+unix://")):
                options = {
                    "socket_timeout": _STORAGE_TIMEOUT_SECONDS,
                    "socket_connect_timeout": _STORAGE_TIMEOUT_SECONDS,
                }
            storage = _shared_storage(
                uri, options, "console.rate_limit_storage_url" if settings.rate_limit_storage_url else "redis_url"
            )
        self._shared = MovingWindowRateLimiter(storage)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._namespace = f"console-{purpose.replace('_', '-')}"
        self._unavailable = f"{purpose}_limit_storage_unavailable"

    def hit(self, item: RateLimitItem, kind: str, key: str) -> bool:
        # This process's own count first. Past the limit here, the shared count is past it too (every hit
        # counted here was offered to it within the same window), so a flood from one address or at one
        # username is refused without a write to the database or Redis for each request: on SQLite that
        # write would wait for the same lock as the webhooks. (It can refuse for up to one window longer
        # than the shared count alone, after this process's attempts were refused there.)
        if not self._local.hit(item, self._namespace, kind, key):
            return False
        try:
            return self._shared.hit(item, self._namespace, kind, key)
        except StorageError as error:
            log(logger, self._unavailable, logging.WARNING, error=type(error.storage_error).__name__)
            return True  # counted in this process's memory, above


class SignInLimiter:
    """Sign-in attempts per client address and per username (any username, so that a refusal says nothing
    about which exist)."""

    def __init__(self, settings: ConsoleSettings, redis_url: str | None, db: Database):
        self._limits = _Limits(settings, redis_url, db, "sign_in")
        self._per_address: list[RateLimitItem] = parse_many(settings.login_limit_per_address)
        self._per_username: list[RateLimitItem] = parse_many(settings.login_limit_per_username)

    def attempt(self, address: str, username: str) -> bool:
        """Count one attempt; False when one of the limits is already used up."""
        # The username is hashed: it is a caller's text of any length, and a Redis key.
        user_key = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
        checks = [(item, "address", address) for item in self._per_address]
        checks += [(item, "username", user_key) for item in self._per_username]
        # The first limit used up refuses the attempt; the others do not count it (it tried nothing).
        return all(self._limits.hit(item, kind, key) for item, kind, key in checks)


class ActionLimiter:
    """Actions per operator (`console.action_limit_per_operator`): each click of an action that makes the
    service send or put work back in line (resending deliveries, retrying them, enabling an endpoint)
    counts one, however many things it acts on."""

    def __init__(self, settings: ConsoleSettings, redis_url: str | None, db: Database):
        self._limits = _Limits(settings, redis_url, db, "action")
        self._per_operator: list[RateLimitItem] = parse_many(settings.action_limit_per_operator)

    def attempt(self, username: str) -> bool:
        """Count one action; False when one of the limits is already used up."""
        key = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
        return all(self._limits.hit(item, "operator", key) for item in self._per_operator)
