"""The configuration's schema: every setting, its default and its rule, checked once at start.

Where the values come from (file, environment) is `sources.py`; the development defaults are
`development.py`. A bad setting stops the service with one line naming it (``ConfigError``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storage.base import MAX_URL_LIFETIME_SECONDS
from webhook_service.database import event_types
from webhook_service.database.limits import DEFAULT_LIMITS, STATEMENT_TIMEOUT_SECONDS
from webhook_service.model.phone import normalize_e164

DEFAULT_TENANT_ID = "00000000-0000-0000-0000-000000000000"
DEFAULT_PHONE_NUMBER_ID = "00000000-0000-0000-0000-000000000000"
DEFAULT_PHONE_NUMBER = "+15551234567"

MIB = 1024 * 1024

# Seed 001, "Supported Formats".
DEFAULT_ALLOWED_MEDIA_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/quicktime",
    "video/x-msvideo",
    "audio/mpeg",
    "audio/wav",
    "audio/aac",
    "application/pdf",
    "text/plain",
    "text/vcard",
)


# The databases the service runs on, by a URL's scheme (SQLAlchemy's dialect[+driver]): SQLite, and
# PostgreSQL through psycopg 3, the driver the service installs (`Settings` makes postgres:// and
# postgresql:// psycopg's). Another driver or database would fail only when first used.
DATABASE_URL_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg"})
DATABASE_URL_FORMS = (
    "sqlite:///FILE or postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or postgres://, postgresql+psycopg://)"
)
# SQLAlchemy's own pattern (sqlalchemy.engine.url._parse_url; tests/config keeps the two in step), so that a
# URL passes here when the engine can parse it, without loading SQLAlchemy to read the settings.
_DATABASE_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)


class ConfigError(Exception):
    """A setting is missing or wrong. The message is one line and names the setting; `problems` has a
    line for every one found (`check-config` shows them all)."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = list(problems) or [message]

    @classmethod
    def listing(cls, problems: Sequence[str]) -> ConfigError:
        """The error for `problems` (at least one): the first one's line, saying how many more there are."""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return cls(problems[0] + more, problems)


class Strict(BaseModel):
    # Unknown keys are typos; reject them instead of silently ignoring a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhoneNumber(Strict):
    id: str
    number: str

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str) -> str:
        normalized = normalize_e164(value)
        if normalized is None:
            raise ValueError(f"{value!r} is not a phone number in E.164 form")
        return normalized


class Tenant(Strict):
    # Letters, digits, ".", "_" and "-" (GUIDs, slugs): it becomes part of blob keys.
    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    name: str = ""
    phone_numbers: list[PhoneNumber] = []
    # Overrides storage.url_ttl_seconds for this tenant's signed media URLs.
    media_url_ttl_seconds: int | None = Field(default=None, gt=0, le=MAX_URL_LIFETIME_SECONDS)
    # Overrides storage.upload_url_ttl_seconds for the URLs the upload API returns to this tenant.
    upload_url_ttl_seconds: int | None = Field(default=None, gt=0, le=MAX_URL_LIFETIME_SECONDS)

    @field_validator("id")
    @classmethod
    def _key_segment(cls, value: str) -> str:
        # The pattern admits them, and every blob store refuses them as a key's segment.
        if value in (".", ".."):
            raise ValueError(f"{value!r} cannot be a tenant id: it is the first segment of the tenant's blob keys")
        return value


class ApiUser(Strict):
    username: str = Field(min_length=1)
    # A werkzeug password hash (`webhook-service hash-password` prints one).
    password_hash: str = Field(min_length=1)
    tenant: str


class ApiKey(Strict):
    name: str = Field(min_length=1)
    # Hex SHA-256 of the key (`webhook-service new-api-key` prints a key and its hash).
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tenant: str


class Operator(Strict):
    """Someone who signs in to the operator console (/console/)."""

    username: str = Field(min_length=1, max_length=255)
    # A werkzeug password hash (`webhook-service hash-password` prints one).
    password_hash: str = Field(min_length=1)
    # admin: may replay, discard and retry; viewer: reads only.
    role: Literal["admin", "viewer"] = "viewer"
    # The tenants whose requests, messages and attachments the operator sees, or ["*"] for all of them
    # (and for requests to URLs no connection answers, which belong to no tenant).
    tenants: list[str] = Field(min_length=1)

    @property
    def all_tenants(self) -> bool:
        return self.tenants == ["*"]


def _rate_limits(value: str) -> str:
    try:
        if not parse_many(value):
            raise ValueError("empty")
    except ValueError:
        raise ValueError(f"{value!r} is not a rate limit such as '5/minute;30/hour'") from None
    return value


class ConsoleSettings(Strict):
    # How long a console sign-in lasts.
    session_hours: float = Field(default=12, gt=0, le=24 * 30)
    # Sign-in attempts allowed per client address and per username (whether it exists or not), in the
    # notation of the `limits` library: "5/minute;30/hour" allows 5 in any minute and 30 in any hour.
    login_limit_per_address: str = "20/minute;100/hour"
    login_limit_per_username: str = "5/minute;30/hour"
    # Actions per operator (quarantine replays and discards, attachment retries, delivery resends and
    # retries, re-enabling an endpoint), in the same notation: one click is one, however much it acts on.
    action_limit_per_operator: str = "30/minute;300/hour"
    # Where attempts and actions are counted: a `limits` storage URL ("redis://host:6379/1"; "memory://":
    # each process counts its own). None: redis_url when it is set, else the service's database; both are
    # shared by every process and host of the deployment.
    rate_limit_storage_url: str | None = None

    _limits = field_validator("login_limit_per_address", "login_limit_per_username", "action_limit_per_operator")(
        _rate_limits
    )


class MediaAuth(Strict):
    """Credentials for downloading a provider's media, sent only to `hosts`."""

    kind: Literal["basic", "header"]
    username: str | None = None
    password: str | None = None
    header: str | None = None
    value: str | None = None
    # Exact host names, or "*.example.com" for subdomains. Empty: the adapter's own media hosts.
    hosts: list[str] = []

    @model_validator(mode="after")
    def _complete(self) -> MediaAuth:
        if self.kind == "basic" and not (self.username and self.password):
            raise ValueError("kind 'basic' needs username and password")
        if self.kind == "header" and not (self.header and self.value):
            raise ValueError("kind 'header' needs header and value")
        return self


class Connection(Strict):
    """One provider account: where its webhooks come in, how they are proven, whose they are."""

    provider: str
    name: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    tenant: str = DEFAULT_TENANT_ID
    # False only for development connections that accept unsigned requests (refused in production).
    verify: bool = True
    # Signing secrets, auth tokens or public keys, as the provider's scheme needs. Any one of them may
    # match, so a secret is rotated by listing the new one beside the old one. Never empty: anyone can
    # sign with an empty HMAC key (an empty variable behind "env:NAME" is the usual way to get one). What
    # else a secret must look like is the adapter's to say (ProviderAdapter.validate_secrets).
    secrets: list[Annotated[str, Field(min_length=1)]] = []
    # Accepted "username:password" pairs for HTTP Basic auth on the webhook URL (rotation: list both).
    basic_auth: list[str] = []
    # The exact public URL the provider calls, when signatures cover the URL and a proxy rewrites it.
    public_url: str | None = None
    timestamp_tolerance_seconds: int | None = Field(default=None, gt=0)
    media_auth: MediaAuth | None = None
    media_max_bytes: int | None = Field(default=None, gt=0)
    # Provider-specific settings, validated by the provider's adapter.
    options: dict[str, Any] = {}

    @field_validator("basic_auth")
    @classmethod
    def _pairs(cls, values: list[str]) -> list[str]:
        for value in values:
            username, colon, password = value.partition(":")
            if not (username and colon and password):  # an empty password would admit anyone with the name
                raise ValueError("each entry must be 'username:password', neither of them empty")
        return values

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.name}"


class ProxySettings(Strict):
    """How many trusted proxies set each X-Forwarded-* header (werkzeug ProxyFix). 0 = ignore it."""

    x_for: int = Field(default=0, ge=0)
    x_proto: int = Field(default=0, ge=0)
    x_host: int = Field(default=0, ge=0)
    x_port: int = Field(default=0, ge=0)
    x_prefix: int = Field(default=0, ge=0)


class FetchSettings(Strict):
    allow_http: bool = False
    max_redirects: int = Field(default=3, ge=0, le=10)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    total_timeout: float = Field(default=30.0, gt=0)
    # Explicit exemptions from the private-address refusal: a private media host, the tests' server.
    allow_private_hosts: list[str] = []
    allow_private_networks: list[str] = []
    # A PEM bundle to trust instead of the system store (a private media host's CA).
    tls_ca_file: str | None = None

    @field_validator("allow_private_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_network(value, strict=False)
        return values


class MediaSettings(Strict):
    max_bytes: int = Field(default=5 * MIB, gt=0)
    allowed_types: list[str] = list(DEFAULT_ALLOWED_MEDIA_TYPES)
    # Decompression-bomb limit, checked from the image header before any pixel is decoded.
    # (Pillow refuses to go above its own 89,478,485-pixel bomb threshold.)
    max_image_pixels: int = Field(default=40_000_000, gt=0, le=89_478_485)
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    # Images decoded at once per process (None: one per CPU); each decoded frame can take up to
    # max_image_pixels x 4 bytes of memory.
    max_concurrent_image_decodes: int | None = Field(default=None, ge=1, le=64)
    retry_max_attempts: int = Field(default=8, ge=1)
    retry_base_delay_seconds: float = Field(default=5.0, ge=0)
    retry_max_delay_seconds: float = Field(default=900.0, ge=0)
    # A 404 this soon after the webhook is the provider still propagating the file: retry it.
    not_found_grace_seconds: float = Field(default=60.0, ge=0)
    # Attachments still pending this long after they were due are enqueued again by the sweep.
    sweep_after_seconds: float = Field(default=120.0, gt=0)
    fetch: FetchSettings = FetchSettings()


class S3Settings(Strict):
    bucket: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    prefix: str = ""


class AzureSettings(Strict):
    container: str
    connection_string: str | None = None
    account_url: str | None = None
    account_name: str | None = None
    account_key: str | None = None
    prefix: str = ""

    @model_validator(mode="after")
    def _credentials(self) -> AzureSettings:
        if not self.connection_string and not self.account_url:
            raise ValueError("set connection_string, or account_url (with account_name/account_key)")
        return self


class StorageSettings(Strict):
    backend: Literal["local", "s3", "azure"] = "local"
    # Lifetime of signed media URLs. Short by default; see the README on long-lived links.
    url_ttl_seconds: int = Field(default=3600, gt=0, le=MAX_URL_LIFETIME_SECONDS)
    # Lifetime of the signed URL the upload API (POST /api/v1/media) returns for a client to put in
    # `mediaUrls`. Carriers fetch MMS media within minutes of the send, so a day leaves room for queued
    # and scheduled messages. S3 and Azure user-delegation SAS URLs cannot outlive 7 days: the store
    # shortens longer lifetimes and the response's expiresAt tells the truth. Longer-lived links use
    # the upload's stableUrl instead.
    upload_url_ttl_seconds: int = Field(default=24 * 3600, gt=0, le=MAX_URL_LIFETIME_SECONDS)
    # Lifetime of an upload's stableUrl (a link to this service that redirects to a fresh signed URL).
    # None: it works until the upload is deleted.
    upload_stable_url_ttl_seconds: int | None = Field(default=None, gt=0, le=MAX_URL_LIFETIME_SECONDS)
    local_dir: Path | None = None
    s3: S3Settings | None = None
    azure: AzureSettings | None = None

    @model_validator(mode="after")
    def _backend_settings(self) -> StorageSettings:
        if self.backend == "s3" and self.s3 is None:
            raise ValueError("backend 's3' needs a [storage.s3] section")
        if self.backend == "azure" and self.azure is None:
            raise ValueError("backend 'azure' needs a [storage.azure] section")
        return self


class QueueSettings(Strict):
    # Distinguishes this deployment's queue from others sharing one Redis database. Letters, digits and
    # "_" only: huey drops every other character from the Redis key, so "acme-prod" and "acme.prod"
    # would share one queue. The default is the key the earlier default, "webhook-service", had.
    name: str = Field(default="webhookservice", min_length=1, max_length=64)
    # Concurrent downloads of `webhook-service worker`, spread over worker_processes processes.
    worker_threads: int = Field(default=4, ge=1, le=64)
    # None: one process per CPU, at most one per thread (see worker_processes.py for why).
    worker_processes: int | None = Field(default=None, ge=1, le=64)
    # Embedded default: tasks run in this process' consumer. "immediate" runs them inline (tests).
    immediate: bool = False
    # How long an enqueue (and the readiness check) waits on Redis before giving up. An enqueue is only a
    # trigger that the sweep makes again, so a frozen or unreachable Redis must never hold a webhook; a
    # healthy Redis answers in well under a millisecond, so this is plenty even across hosts.
    enqueue_timeout_seconds: float = Field(default=0.25, gt=0, le=10)
    # How often an idle worker of the embedded queue looks at it on its own. Every task that reaches the
    # queue wakes the idle workers at once, so this only bounds the wait for one whose wake-up was lost
    # (no socket to send it from); each look is a read of the queue's SQLite file.
    idle_poll_seconds: float = Field(default=1.0, gt=0, le=60)

    @field_validator("name")
    @classmethod
    def _kept_by_huey(cls, value: str) -> str:
        kept = re.sub(r"[^A-Za-z0-9_]", "", value)
        if kept != value:
            suggestion = f"write {kept!r} (the queue it has used so far) or another name" if kept else "use a name"
            raise ValueError(
                f"{value!r} has characters the queue drops from its Redis key (only letters, digits and _ "
                f"are kept), so it would share a queue with any name that differs only in them; "
                f"{suggestion} of letters, digits and _"
            )
        return value


# Svix's schedule: the waits after the first, second... failed attempt; the event fails after the last.
DEFAULT_DELIVERY_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)


def _event_types(values: list[str]) -> list[str]:
    unknown = sorted(set(values) - set(event_types.TYPES))
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r}; use {', '.join(event_types.TYPES)}")
    return list(dict.fromkeys(values))


class DeclaredEndpoint(Strict):
    """A push-delivery endpoint declared here, for deployments managed as code: the worker creates,
    updates and removes the tenant's declared endpoints to match (the API cannot change them)."""

    tenant: str
    # Unique per tenant: what identifies the endpoint from one configuration to the next.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    url: str = Field(min_length=1, max_length=2048)
    # A Standard Webhooks secret, "whsec_" and the base64 of 24 to 64 random bytes.
    secret: str
    event_types: list[str] = []
    description: str | None = Field(default=None, max_length=1024)
    enabled: bool = True
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=10_000)

    _known_types = field_validator("event_types")(_event_types)

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: str) -> str:
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True) if value.startswith("whsec_") else b""
        except binascii.Error:
            key = b""
        if not 24 <= len(key) <= 64:
            raise ValueError("must be whsec_ and the base64 of 24 to 64 random bytes (a Standard Webhooks secret)")
        return value


class DeliverySettings(Strict):
    """Push delivery of feed events to consumers' endpoints (delivery/)."""

    # Waits, in seconds, after each failed attempt (with jitter); after the last the event is `failed`
    # for that endpoint.
    retry_schedule_seconds: list[float] = Field(
        default=list(DEFAULT_DELIVERY_RETRY_SCHEDULE), min_length=1, max_length=20
    )
    # An endpoint that has failed every attempt for this long is disabled (endpoint.disabled).
    disable_after_hours: float = Field(default=120, gt=0)
    # A 2xx must come within this long of starting the attempt (connecting included).
    timeout_seconds: float = Field(default=15, gt=0, le=120)
    # Explicit exemptions from the SSRF rules endpoint URLs follow (as media.fetch's): plain http, and
    # private addresses in these networks (cloud metadata addresses stay refused).
    allow_http: bool = False
    allow_private_networks: list[str] = []
    # A PEM bundle to trust instead of the system store (a private endpoint's CA).
    tls_ca_file: str | None = None
    # Events one worker turn on an endpoint takes at most, and how long the turn may go on before it
    # makes way for other endpoints.
    batch_size: int = Field(default=100, ge=1, le=1000)
    turn_seconds: float = Field(default=10, gt=0, le=300)
    # How often, at most, a turn reads its endpoint again during its sending, to stop once its owner has
    # disabled, deleted or changed it (URL, secret, rate limit): a change reaches the old URL for at most
    # this long, and the POST in flight. 0: before every POST (a round trip to the database each).
    endpoint_check_seconds: float = Field(default=0.1, ge=0, le=10)
    # How often a worker looks at the end of the event feed for new events to deliver.
    poll_interval_seconds: float = Field(default=0.1, gt=0, le=60)
    # Worker processes do a turn's database work beside its sending in a process of their own (started at
    # their first backlog), rather than on a thread that competes with the sending for the GIL.
    books_process: bool = True
    endpoints: list[DeclaredEndpoint] = []

    @field_validator("retry_schedule_seconds")
    @classmethod
    def _schedule(cls, values: list[float]) -> list[float]:
        if any(value <= 0 for value in values):
            raise ValueError("every wait must be positive")
        return values

    @field_validator("allow_private_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_network(value, strict=False)
        return values


class DatabaseSettings(Strict):
    """How long the service waits for PostgreSQL (the reasons: database/limits.py). SQLite is a local file
    and needs none of them."""

    # libpq takes whole seconds, and no fewer than 2.
    connect_timeout_seconds: int = Field(default=DEFAULT_LIMITS.connect_timeout, ge=2, le=60)
    # The server cancels a statement running longer; the client abandons a connection that has not
    # answered for one second more.
    statement_timeout_seconds: float = Field(default=STATEMENT_TIMEOUT_SECONDS, gt=0, le=3600)
    # A request waiting this long for a free pooled connection gets a 503.
    pool_timeout_seconds: float = Field(default=DEFAULT_LIMITS.pool_timeout, gt=0, le=60)


class Settings(Strict):
    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("data")
    database_url: str | None = None
    redis_url: str | None = None
    # Signs local media URLs. Development generates one under data_dir; production must set it.
    secret_key: str | None = Field(default=None, min_length=32)
    public_base_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    web_workers: int = Field(default=2, ge=1, le=64)
    # Threads let one process group-commit several webhooks into one durable transaction.
    web_threads: int = Field(default=8, ge=1, le=64)
    # Slow and idle clients (gunicorn_worker.py): a request head must be complete this long after the
    # connection (or the next request's first byte); a body gets web_body_timeout_seconds plus one second
    # per web_body_min_bytes_per_second, and each read of one waits at most web_body_timeout_seconds.
    web_header_timeout_seconds: float = Field(default=10, gt=0, le=300)
    web_body_timeout_seconds: float = Field(default=10, gt=0, le=300)
    web_body_min_bytes_per_second: int = Field(default=32 * 1024, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # One JSON line per HTTP request from gunicorn (method, path, query with secrets hidden, status,
    # time, bytes, client, request id). Off: the intake's own line per webhook says more.
    access_log: bool = False
    # The worker serves GET /metrics on this port (at `host`) for its consumer processes; unset, the web
    # process on the same host (sharing data_dir) includes them in its own /metrics.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    phone_default_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    webhook_max_body_bytes: int = Field(default=MIB, gt=0)
    # Quarantined and accepted raw requests older than this are removed by `webhook-service prune`.
    retention_days: int = Field(default=30, gt=0)
    # Bodies of refused requests kept in quarantine, all together; past it only their headers and
    # reasons are (anyone can send refused requests, and a full disk would refuse valid ones too).
    quarantine_max_bytes: int = Field(default=1024 * MIB, gt=0)
    # Verified webhooks kept on this host's disk (data_dir/spool) while the database cannot be reached,
    # and acknowledged; past this size they are answered 503 again. 0 turns the spool off.
    spool_max_bytes: int = Field(default=1024 * MIB, ge=0)
    database: DatabaseSettings = DatabaseSettings()
    proxy: ProxySettings = ProxySettings()
    media: MediaSettings = MediaSettings()
    storage: StorageSettings = StorageSettings()
    queue: QueueSettings = QueueSettings()
    delivery: DeliverySettings = DeliverySettings()
    tenants: list[Tenant] = []
    api_users: list[ApiUser] = []
    api_keys: list[ApiKey] = []
    connections: list[Connection] = []
    operators: list[Operator] = []
    console: ConsoleSettings = ConsoleSettings()

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: Any) -> Any:
        # LOG_LEVEL=debug is how most tools spell it.
        return value.upper() if isinstance(value, str) else value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/?#]+(/[^?#]*)?$", value):
            raise ValueError("must be an absolute http(s) URL without query, e.g. https://hooks.example.com")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value:
            _check_database_url(value)
        if value and value.startswith("postgres://"):
            # Heroku-style URLs; SQLAlchemy needs the dialect name and we use psycopg 3.
            value = "postgresql+psycopg://" + value[len("postgres://") :]
        elif value and value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://") :]
        return value

    @model_validator(mode="after")
    def _references(self) -> Settings:
        tenant_ids = [tenant.id for tenant in self.tenants]
        _unique("tenants", tenant_ids)
        _unique("connections", [c.key for c in self.connections], label="provider/name")
        _unique("api_users", [u.username for u in self.api_users], label="username")
        known = set(tenant_ids)
        owned: tuple[tuple[str, Sequence[ApiUser | ApiKey | Connection]], ...] = (
            ("api_users", self.api_users),
            ("api_keys", self.api_keys),
            ("connections", self.connections),
        )
        for section, items in owned:
            for index, item in enumerate(items):
                if item.tenant not in known:
                    raise _located(f"{section}[{index}].tenant", f"unknown tenant {item.tenant!r}")
        for index, endpoint in enumerate(self.delivery.endpoints):
            if endpoint.tenant not in known:
                raise _located(f"delivery.endpoints[{index}].tenant", f"unknown tenant {endpoint.tenant!r}")
        _unique("delivery.endpoints", [f"{e.tenant}/{e.name}" for e in self.delivery.endpoints], label="tenant/name")
        _unique("operators", [o.username for o in self.operators], label="username")
        for index, operator in enumerate(self.operators):
            if "*" in operator.tenants and len(operator.tenants) > 1:
                raise _located(f"operators[{index}].tenants", '["*"] (all tenants) stands alone')
            unknown = [tenant for tenant in operator.tenants if tenant != "*" and tenant not in known]
            if unknown:
                raise _located(f"operators[{index}].tenants", f"unknown tenant {unknown[0]!r}")
        for index, connection in enumerate(self.connections):
            where = f"connections[{index}] ({connection.key})"
            if not connection.verify and self.environment == "production":
                raise _located(where, "verify = false (an unsigned development connection) is refused in production")
            if connection.verify and not connection.secrets and not connection.basic_auth:
                raise _located(
                    where,
                    "has no secrets and no basic_auth, so nothing can prove its "
                    "requests genuine; add one, or set verify = false in development",
                )
        if self.environment == "production" and not self.secret_key:
            raise _located("secret_key", "must be set in production (SECRET_KEY, at least 32 characters)")
        return self

    # Derived values -------------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'service.db').resolve()}"

    @property
    def spool_dir(self) -> Path:
        return (self.data_dir / "spool").resolve()

    @property
    def local_blob_dir(self) -> Path:
        return (self.storage.local_dir or self.data_dir / "blobs").resolve()

    def tenant(self, tenant_id: str) -> Tenant | None:
        return next((t for t in self.tenants if t.id == tenant_id), None)


def _check_database_url(url: str) -> None:
    """Raise ValueError unless the service can connect with `url`. The messages never repeat the URL,
    which may hold a password."""
    parsed = _DATABASE_URL.match(url)
    if parsed is None:
        raise ValueError(f"not a database URL: use {DATABASE_URL_FORMS}")
    if parsed["name"] not in DATABASE_URL_SCHEMES:
        raise ValueError(f"unsupported database {parsed['name'] + '://'!r}: use {DATABASE_URL_FORMS}")
    if parsed["port"] is not None and not (parsed["port"].isascii() and parsed["port"].isdigit()):
        raise ValueError(f"the port {parsed['port']!r} is not a number: use {DATABASE_URL_FORMS}")


class _LocatedError(ValueError):
    def __init__(self, location: str, message: str):
        super().__init__(f"{location}: {message}")


def _located(location: str, message: str) -> _LocatedError:
    return _LocatedError(location, message)


def _unique(section: str, values: list[str], label: str = "id") -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise _located(f"{section}[{index}]", f"duplicate {label} {value!r}")
        seen.add(value)
