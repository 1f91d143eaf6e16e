"""Endpoints: made, changed and removed through the API (tenant-scoped), or declared in the
configuration and kept in step with it by the worker. The worker's side (delivering) is engine.py.

A new endpoint starts at the end of the event feed: it receives what happens from then on (older events
come by replay). An endpoint that is disabled, automatically or by its owner, gives up its pending
deliveries (`failed`, reason endpoint_disabled); enabled again, it starts at the end of the feed anew,
and a replay recovers what it missed. Secrets are shown once, when made; a rotation keeps the previous
secret signing beside the new one for SECRET_OVERLAP, so receivers can switch without a gap."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import sqlalchemy as sa

from webhook_service.config.model import DeclaredEndpoint
from webhook_service.database import feed
from webhook_service.database.engine import Database
from webhook_service.database.tables import DELIVERIES, ENDPOINTS, new_id
from webhook_service.delivery import history
from webhook_service.delivery.endpoint_secrets import SEALED_PREFIX, EndpointSecrets, SecretUnreadable, is_sealed
from webhook_service.delivery.signing import new_secret
from webhook_service.delivery.urls import EndpointUrls
from webhook_service.model.message_json import iso
from webhook_service.observability.redaction import redact_query

SECRET_OVERLAP = timedelta(hours=24)
# Endpoints per tenant: a list answer holds them all.
MAX_ENDPOINTS_PER_TENANT = 100
ENDPOINT_DISABLED = "endpoint_disabled"
# The disabled reason of an endpoint its owner disabled (through the API, or in the configuration).
DISABLED_BY_OWNER = "Disabled by its owner."

# Wakes the workers for these endpoints (the queue is only a trigger; the sweep makes up for a lost one).
Wake = Callable[[list[str]], None]
Row = Any

# Pending deliveries of an endpoint that stops being enabled: they will not be attempted.
GIVE_UP_PENDING = (
    sa.update(DELIVERIES)
    .where(DELIVERIES.c.endpoint_id == sa.bindparam("of_endpoint"), DELIVERIES.c.status == "pending")
    .values(status="failed", last_error=ENDPOINT_DISABLED, next_attempt_at=None, completed_at=sa.bindparam("now"))
)
# Health and disabled state cleared: an endpoint (re-)enabled or pointed at a new URL starts afresh.
_FRESH_START = {
    "failing_since": None,
    "consecutive_failures": 0,
    "paused_until": None,
    "disabled_at": None,
    "disabled_reason": None,
}


class EndpointNotFound(Exception):
    pass


class ManagedByConfiguration(Exception):
    """The endpoint is declared in the configuration: change it there."""


class TooManyEndpoints(Exception):
    pass


class NotReenabled(Exception):
    """An operator may re-enable only an endpoint the service disabled (the message says why not)."""


@dataclass(frozen=True)
class EndpointChanges:
    """What PATCH may change; None leaves a field as it is (`description` and `rate_limit_per_second`
    are cleared with `clear`)."""

    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None
    rate_limit_per_second: int | None = None
    clear: frozenset[str] = frozenset()


def endpoint_json(row: Row) -> dict[str, Any]:
    """An endpoint as the API shows it (never its secret)."""
    return {
        "id": row.id,
        "url": row.url,
        "eventTypes": list(row.event_types or []),
        "description": row.description,
        "enabled": row.enabled,
        "rateLimitPerSecond": row.rate_limit_per_second,
        "managedBy": "configuration" if row.config_name else "api",
        "name": row.config_name,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "failingSince": iso(row.failing_since),
        "disabledAt": iso(row.disabled_at),
        "disabledReason": row.disabled_reason,
    }


def announced_url(url: str) -> str:
    """`url` as an event shows it to the tenant's other endpoints (and the feed's readers): every query
    parameter's value redacted, its name kept. The query is often the endpoint's credential (?token=...),
    under any name its consumer chose, so no list of secret names would do."""
    parts = urlsplit(url)
    names = {name.lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    query = redact_query(parts.query, names)
    return url if query == parts.query else urlunsplit(parts._replace(query=query))


def disable(conn: sa.Connection, endpoint: Row, reason: str, now: datetime, *, announce: bool) -> None:
    """Disable `endpoint` and give up its pending deliveries; with `announce`, an endpoint.disabled
    event goes into the feed (delivered to the tenant's other endpoints). Call last in a transaction:
    the feed's head stays below the event until the commit (database/feed.py)."""
    conn.execute(
        sa.update(ENDPOINTS)
        .where(ENDPOINTS.c.id == endpoint.id)
        .values(enabled=False, disabled_at=now, disabled_reason=reason, paused_until=None, updated_at=now)
    )
    conn.execute(GIVE_UP_PENDING, {"of_endpoint": endpoint.id, "now": now})
    if announce:
        data = {
            **endpoint_json(endpoint),
            "url": announced_url(endpoint.url),
            "enabled": False,
            "disabledAt": iso(now),
            "disabledReason": reason,
        }
        feed.append(
            conn,
            [
                {
                    "tenant_id": endpoint.tenant_id,
                    "type": feed.ENDPOINT_DISABLED,
                    "message_id": None,
                    "attachment_id": None,
                    "created_at": now,
                    "data": data,
                }
            ],
        )


class EndpointStore:
    def __init__(self, db: Database, urls: EndpointUrls, wake: Wake, secrets: EndpointSecrets):
        self.db = db
        self._urls = urls
        self._wake = wake
        self._secrets = secrets

    # Reading --------------------------------------------------------------------------------------
    def for_tenant(self, tenant_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(ENDPOINTS)
            .where(ENDPOINTS.c.tenant_id == tenant_id)
            .order_by(ENDPOINTS.c.created_at, ENDPOINTS.c.id)
        )
        with self.db.reading() as session:
            return [endpoint_json(row) for row in session.execute(query)]

    def get(self, tenant_id: str, endpoint_id: str) -> dict[str, Any]:
        with self.db.reading() as session:
            return endpoint_json(self._row(session.connection(), tenant_id, endpoint_id))

    def tenant_of(self, endpoint_id: str) -> str:
        """The tenant an endpoint belongs to (operators name endpoints by id alone)."""
        with self.db.reading() as session:
            tenant_id = session.scalar(sa.select(ENDPOINTS.c.tenant_id).where(ENDPOINTS.c.id == endpoint_id))
        if tenant_id is None:
            raise EndpointNotFound(endpoint_id)
        return tenant_id

    def wake(self, endpoint_ids: list[str]) -> None:
        if endpoint_ids:
            self._wake(endpoint_ids)

    def row(self, tenant_id: str, endpoint_id: str) -> Row:
        with self.db.reading() as session:
            return self._row(session.connection(), tenant_id, endpoint_id)

    # Changing (API) -------------------------------------------------------------------------------
    def create(
        self,
        tenant_id: str,
        *,
        url: str,
        event_types: list[str],
        description: str | None,
        rate_limit_per_second: int | None,
    ) -> dict[str, Any]:
        """The new endpoint, with its secret (shown this once). Raises OutboundError for a refused URL."""
        url = self._urls.check(url)
        now = datetime.now(UTC)
        secret = new_secret()
        endpoint_id = new_id()
        row = {
            "id": endpoint_id,
            "tenant_id": tenant_id,
            "url": url,
            "description": description,
            "event_types": list(event_types),
            "enabled": True,
            "rate_limit_per_second": rate_limit_per_second,
            "secret": self._secrets.seal(endpoint_id, secret),
            "consecutive_failures": 0,
            "created_at": now,
            "updated_at": now,
        }
        with self.db.writing() as conn:
            count = conn.scalar(
                sa.select(sa.func.count()).select_from(ENDPOINTS).where(ENDPOINTS.c.tenant_id == tenant_id)
            )
            if (count or 0) >= MAX_ENDPOINTS_PER_TENANT:
                raise TooManyEndpoints(f"A tenant may have at most {MAX_ENDPOINTS_PER_TENANT} endpoints.")
            # Nothing at or below the feed's head can appear later (database/feed.py): every event after it is new.
            row["feed_position"] = feed.head(conn)
            created = conn.execute(sa.insert(ENDPOINTS).values(row).returning(*ENDPOINTS.c)).one()
        return {**endpoint_json(created), "secret": secret}

    def update(self, tenant_id: str, endpoint_id: str, changes: EndpointChanges) -> dict[str, Any]:
        url = self._urls.check(changes.url) if changes.url is not None else None
        now = datetime.now(UTC)
        with self.db.writing() as conn:
            endpoint = self._row(conn, tenant_id, endpoint_id, for_update=True)
            _refuse_declared(endpoint)
            values: dict[str, Any] = {"updated_at": now}
            if url is not None and url != endpoint.url:
                values.update(url=url, failing_since=None, consecutive_failures=0, paused_until=None)
            if changes.event_types is not None:
                values["event_types"] = list(changes.event_types)
            for name in ("description", "rate_limit_per_second"):
                if getattr(changes, name) is not None:
                    values[name] = getattr(changes, name)
                elif name in changes.clear:
                    values[name] = None
            values.update(_enabled_change(conn, endpoint, changes.enabled, now))
            updated = conn.execute(
                sa.update(ENDPOINTS).where(ENDPOINTS.c.id == endpoint.id).values(values).returning(*ENDPOINTS.c)
            ).one()
        if updated.enabled:
            self._wake([updated.id])
        return endpoint_json(updated)

    def delete(self, tenant_id: str, endpoint_id: str) -> None:
        with self.db.writing() as conn:
            endpoint = self._row(conn, tenant_id, endpoint_id, for_update=True)
            _refuse_declared(endpoint)
            conn.execute(sa.delete(ENDPOINTS).where(ENDPOINTS.c.id == endpoint.id))

    def rotate_secret(self, tenant_id: str, endpoint_id: str) -> dict[str, Any]:
        """A new secret (shown this once); the current one keeps signing beside it for SECRET_OVERLAP."""
        secret = new_secret()
        now = datetime.now(UTC)
        with self.db.writing() as conn:
            endpoint = self._row(conn, tenant_id, endpoint_id, for_update=True)
            _refuse_declared(endpoint)
            updated = conn.execute(
                sa.update(ENDPOINTS)
                .where(ENDPOINTS.c.id == endpoint.id)
                .values(
                    secret=self._secrets.seal(endpoint.id, secret),
                    previous_secret=self._sealed_again(endpoint.id, endpoint.secret),
                    previous_secret_expires_at=now + SECRET_OVERLAP,
                    updated_at=now,
                )
                .returning(*ENDPOINTS.c)
            ).one()
        return {
            **endpoint_json(updated),
            "secret": secret,
            "previousSecretExpiresAt": iso(updated.previous_secret_expires_at),
        }

    # Changing (operators) -------------------------------------------------------------------------
    def reenable(self, tenant_id: str, endpoint_id: str) -> dict[str, Any]:
        """Enable again an endpoint that the service disabled (it answered 410, or failed for too long),
        whether made through the API or declared in the configuration: it starts afresh at the end of
        the feed, as when its owner enables it (what it missed comes by replay or retry). One its owner
        disabled stays so, and one that is enabled is left alone: both raise NotReenabled."""
        now = datetime.now(UTC)
        with self.db.writing() as conn:
            endpoint = self._row(conn, tenant_id, endpoint_id, for_update=True)
            if endpoint.enabled:
                raise NotReenabled("It is enabled.")
            if endpoint.disabled_reason == DISABLED_BY_OWNER:
                where = "in the configuration" if endpoint.config_name else "through the API"
                raise NotReenabled(f"Its owner disabled it; they enable it again ({where}).")
            updated = conn.execute(
                sa.update(ENDPOINTS)
                .where(ENDPOINTS.c.id == endpoint.id)
                .values({"updated_at": now, **_enabled_change(conn, endpoint, True, now)})
                .returning(*ENDPOINTS.c)
            ).one()
        self._wake([updated.id])
        return endpoint_json(updated)

    # History ---------------------------------------------------------------------------------------
    def attempts(
        self, tenant_id: str, endpoint_id: str, *, before: int | None, limit: int, event_id: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The endpoint's attempts, newest first, and the next page's cursor (history.list_attempts)."""
        endpoint = self.row(tenant_id, endpoint_id)
        return history.list_attempts(self.db, endpoint.id, before=before, limit=limit, event_id=event_id)

    def replay(self, tenant_id: str, endpoint_id: str, *, since: datetime | None, event_ids: Sequence[int]) -> int:
        """Deliver these events to the endpoint again (history.replay), at once if it is enabled. An
        enabled endpoint's replay stops at its place in the feed (later events are on their way anyway); a
        disabled one's goes to the end of the feed, where it starts when enabled again."""
        endpoint = self.row(tenant_id, endpoint_id)
        if endpoint.enabled:
            upto = endpoint.feed_position
        else:
            with self.db.reading() as session:
                upto = feed.head(session)
        count = history.replay(self.db, endpoint, upto=upto, since=since, event_ids=event_ids)
        if count and endpoint.enabled:
            self._wake([endpoint.id])
        return count

    # The configuration's endpoints ----------------------------------------------------------------
    def sync_declared(self, declared: Iterable[DeclaredEndpoint]) -> None:
        """Make the declared endpoints exist as the configuration says, and remove those it no longer
        declares. Their URLs are checked like the API's (a refused one raises OutboundError)."""
        wanted = {(d.tenant, d.name): d for d in declared}
        urls = {key: self._urls.check(d.url) for key, d in wanted.items()}
        now = datetime.now(UTC)
        woken = []
        with self.db.writing() as conn:
            existing = {
                (row.tenant_id, row.config_name): row
                for row in conn.execute(sa.select(ENDPOINTS).where(ENDPOINTS.c.config_name.is_not(None)))
            }
            for key, old in existing.items():
                if key not in wanted:
                    conn.execute(sa.delete(ENDPOINTS).where(ENDPOINTS.c.id == old.id))
            head = feed.head(conn)
            for key, declaration in wanted.items():
                values = {
                    "url": urls[key],
                    "event_types": list(declaration.event_types),
                    "description": declaration.description,
                    "rate_limit_per_second": declaration.rate_limit_per_second,
                }
                current = existing.get(key)
                if current is None:
                    endpoint_id = new_id()
                    conn.execute(
                        sa.insert(ENDPOINTS).values(
                            id=endpoint_id,
                            secret=self._secrets.seal(endpoint_id, declaration.secret),
                            tenant_id=declaration.tenant,
                            config_name=declaration.name,
                            enabled=declaration.enabled,
                            feed_position=head,
                            consecutive_failures=0,
                            created_at=now,
                            updated_at=now,
                            **values,
                        )
                    )
                    continue
                if current.url != values["url"]:
                    values.update(failing_since=None, consecutive_failures=0, paused_until=None)
                values.update(_enabled_change(conn, current, declaration.enabled, now))
                if not self._keeps(current.id, current.secret, declaration.secret):
                    values["secret"] = self._secrets.seal(current.id, declaration.secret)
                if any(getattr(current, name) != value for name, value in values.items()):
                    conn.execute(
                        sa.update(ENDPOINTS).where(ENDPOINTS.c.id == current.id).values({**values, "updated_at": now})
                    )
                    woken.append(current.id)
        if woken:
            self._wake(woken)

    def seal_plain_secrets(self) -> int:
        """Seal the secrets still kept in plain text (made before sealing existed): how many rows."""
        plain = sa.or_(
            ENDPOINTS.c.secret.not_like(f"{SEALED_PREFIX}%"),
            sa.and_(
                ENDPOINTS.c.previous_secret.is_not(None), ENDPOINTS.c.previous_secret.not_like(f"{SEALED_PREFIX}%")
            ),
        )
        with self.db.writing() as conn:
            rows = conn.execute(
                sa.select(ENDPOINTS.c.id, ENDPOINTS.c.secret, ENDPOINTS.c.previous_secret).where(plain)
            ).all()
            for row in rows:
                previous = row.previous_secret
                conn.execute(
                    sa.update(ENDPOINTS)
                    .where(
                        ENDPOINTS.c.id == row.id,
                        ENDPOINTS.c.secret == row.secret,  # not rotated meanwhile
                        ENDPOINTS.c.previous_secret.is_not_distinct_from(previous),
                    )
                    .values(
                        # One that does not open stays as it is: the turns report it.
                        secret=self._sealed_again(row.id, row.secret) or row.secret,
                        previous_secret=None if previous is None else self._sealed_again(row.id, previous),
                    )
                )
        return len(rows)

    def _sealed_again(self, endpoint_id: str, stored: str) -> str | None:
        """A kept secret sealed (a plain one, from before sealing) or as it is (sealed already); None when
        it does not open with this secret_key (it can then sign nothing anyway)."""
        if is_sealed(stored):
            try:
                self._secrets.open(endpoint_id, stored)
            except SecretUnreadable:
                return None
            return stored
        return self._secrets.seal(endpoint_id, stored)

    def _keeps(self, endpoint_id: str, stored: str, secret: str) -> bool:
        """Whether the row's kept secret is `secret`, sealed."""
        if not is_sealed(stored):
            return False
        try:
            return self._secrets.open(endpoint_id, stored) == secret
        except SecretUnreadable:
            return False

    def _row(self, conn: sa.Connection, tenant_id: str, endpoint_id: str, *, for_update: bool = False) -> Row:
        query = sa.select(ENDPOINTS).where(ENDPOINTS.c.tenant_id == tenant_id, ENDPOINTS.c.id == endpoint_id)
        if for_update:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise EndpointNotFound(endpoint_id)
        return row


def _refuse_declared(endpoint: Row) -> None:
    if endpoint.config_name:
        raise ManagedByConfiguration(endpoint.config_name)


def _enabled_change(conn: sa.Connection, endpoint: Row, enabled: bool | None, now: datetime) -> dict[str, Any]:
    """The column values for enabling or disabling `endpoint` by its owner (no endpoint.disabled event:
    that announces what the service decided)."""
    if enabled is None or enabled == endpoint.enabled:
        return {}
    if enabled:
        return {"enabled": True, "feed_position": feed.head(conn), **_FRESH_START}
    conn.execute(GIVE_UP_PENDING, {"of_endpoint": endpoint.id, "now": now})
    return {"enabled": False, "disabled_at": now, "disabled_reason": DISABLED_BY_OWNER, "paused_until": None}
