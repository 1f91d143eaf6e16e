"""delivery attempts indexed by event (delivery_attempts: endpoint_id, event_id)

The attempts of given events, asked by `GET /api/v1/endpoints/{id}/attempts?event_id=` and by every
console page of an endpoint's deliveries, were found by the (endpoint_id, id) index: reading the
endpoint's attempts from its newest back until the page was full. For an old event, or a delivery given
up without an attempt (all but the first when an endpoint is disabled), that read every attempt the
endpoint ever had, past the statement timeout on a busy one.

Built CONCURRENTLY on PostgreSQL, as 0010's to 0012's indexes (`database/concurrent_indexes.py`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 22:00:00
"""

from alembic import op

from webhook_service.database.concurrent_indexes import create_indexes, drop_indexes

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

INDEXES = {"ix_delivery_attempts_endpoint_id_event_id": ("delivery_attempts", ["endpoint_id", "event_id"])}


def upgrade() -> None:
    create_indexes(op, INDEXES)


def downgrade() -> None:
    drop_indexes(op, INDEXES)
