"""Endpoints as operators see them (the console's Endpoints pages): each with its health (enabled, or
disabled and why; failing since when; paused until when), what it has left to deliver (history.work_left,
as the worker measures it for delivery_backlog_age_seconds), its last attempt, and how many of its
deliveries are in each state. Reading only; `tenants` scopes (database/scope.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from webhook_service.database.engine import Database
from webhook_service.database.scope import Tenants, visible, within
from webhook_service.database.tables import DELIVERIES, DELIVERY_ATTEMPTS, DELIVERY_STATES, ENDPOINTS
from webhook_service.delivery.history import WorkLeft, work_left

Row = Any

# Deliveries are counted per state up to this many: an endpoint gets one per event, hundreds of millions
# in a month on a busy service, and counting them all read as many index entries (PostgreSQL, about a
# second per ten million), past the statement timeout. Past it the pages say "10,000+".
COUNT_CAP = 10_000


@dataclass(frozen=True)
class EndpointOverview:
    endpoint: Row  # an endpoints row
    # Its deliveries per state (DELIVERY_STATES), each counted up to COUNT_CAP + 1 (`shown` says which).
    counts: Mapping[str, int]
    # None while it is disabled: it takes no events then, and its backlog is not measured.
    work: WorkLeft | None
    last_attempt: Row | None  # a delivery_attempts row

    def shown(self, state: str) -> str:
        """How many deliveries are in `state`, as the pages print it: "10,000+" past the count's cap."""
        count = self.counts.get(state, 0)
        return f"{COUNT_CAP:,}+" if count > COUNT_CAP else str(count)

    @property
    def paused_until(self) -> datetime | None:
        """Until when nothing is sent to it, after failures in a row (engine.py), while that is ahead."""
        until = self.endpoint.paused_until
        return until if self.endpoint.enabled and until is not None and until > datetime.now(UTC) else None


def endpoint_overviews(db: Database, *, tenants: Tenants) -> list[EndpointOverview]:
    """The endpoints of these tenants, by tenant, oldest first."""
    query = sa.select(ENDPOINTS).order_by(ENDPOINTS.c.tenant_id, ENDPOINTS.c.created_at, ENDPOINTS.c.id)
    if tenants is not None:
        query = query.where(within(ENDPOINTS.c.tenant_id, tenants))
    with db.reading() as session:
        return _overviews(session, list(session.execute(query)))


def endpoint_overview(db: Database, endpoint_id: str, *, tenants: Tenants) -> EndpointOverview | None:
    """One endpoint, if it is one of these tenants'."""
    with db.reading() as session:
        endpoint = session.execute(sa.select(ENDPOINTS).where(ENDPOINTS.c.id == endpoint_id)).first()
        if endpoint is None or not visible(endpoint.tenant_id, tenants):
            return None
        return _overviews(session, [endpoint])[0]


def _overviews(session: Session, endpoints: Sequence[Row]) -> list[EndpointOverview]:
    """Three queries for any number of endpoints, and work_left's two for each enabled one."""
    if not endpoints:
        return []
    ids = [endpoint.id for endpoint in endpoints]
    counts = {
        row.id: {state: int(row[index + 1]) for index, state in enumerate(DELIVERY_STATES)}
        for row in session.execute(
            sa.select(ENDPOINTS.c.id, *(_capped_count(state) for state in DELIVERY_STATES)).where(
                ENDPOINTS.c.id.in_(ids)
            )
        )
    }
    # Each endpoint's last attempt id, one backward step of the (endpoint_id, id) index apiece: a
    # max(id) grouped by endpoint read every attempt of theirs (24 ms with 190,000).
    attempts = DELIVERY_ATTEMPTS.alias("attempts")
    latest = sa.select(
        sa.select(sa.func.max(attempts.c.id)).where(attempts.c.endpoint_id == ENDPOINTS.c.id).scalar_subquery()
    ).where(ENDPOINTS.c.id.in_(ids))
    last = {
        row.endpoint_id: row
        for row in session.execute(sa.select(DELIVERY_ATTEMPTS).where(DELIVERY_ATTEMPTS.c.id.in_(latest)))
    }
    return [
        EndpointOverview(
            endpoint,
            counts[endpoint.id],
            work_left(session, endpoint.id, endpoint.tenant_id, endpoint.feed_position) if endpoint.enabled else None,
            last.get(endpoint.id),
        )
        for endpoint in endpoints
    ]


def _capped_count(state: str) -> Any:
    """The endpoint's deliveries in `state`, up to COUNT_CAP + 1: that many steps of the (endpoint_id,
    status, event_id) index at most."""
    some = (
        sa.select(sa.literal(1))
        .where(DELIVERIES.c.endpoint_id == ENDPOINTS.c.id, DELIVERIES.c.status == state)
        .correlate(ENDPOINTS)
        .limit(COUNT_CAP + 1)
        .subquery()
    )
    return sa.select(sa.func.count()).select_from(some).scalar_subquery()
