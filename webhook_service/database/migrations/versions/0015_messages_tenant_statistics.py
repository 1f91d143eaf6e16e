"""PostgreSQL: the planner assumes a tenant holds many messages (messages.tenant_id n_distinct = 100)

A message is found by its key (tenant_id, provider, provider_message_id), through the key's unique
index. But `ix_messages_tenant_seq` (tenant_id, seq) can serve the same lookup, by reading the tenant's
messages and filtering them, and PostgreSQL takes whichever it estimates cheaper. When ANALYZE last saw
about one message per tenant (a multi-tenant deployment's first days, many small tenants), it estimates
one row for a tenant not among its most common values, both indexes cost the same, and the narrower
tenant index wins: every status report of a tenant grown since then read all of that tenant's
messages (30,000 in the test, 7 ms a lookup; a statement timeout at a few million). The batch statements
(intake/postgres_batch.py, postgres_reports.py) are planned for any tenant, so they estimate by the
count of distinct tenants alone, whatever the most common values say; so do the ordinary way's lookups,
which hide the tenant's value from the planner (intake/message_store.py `_has_key`), since a tenant
ANALYZE did not see at all is estimated at one message too.

So the count of distinct tenants that ANALYZE records is fixed at 100: a tenant whose share is not
known is estimated at a hundredth of the messages, and the key's unique index wins as it should. The
most common values ANALYZE finds are still used for the tenants they name. The option takes effect at
the next ANALYZE, run here (it samples the table: seconds on any size), but not on an empty table: its
statistics would then say empty until autovacuum's next, and a table growing meanwhile was read by
sequential scans (a new deployment's first reports read 120,000 rows in the growth test).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 00:20:00
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Distinct tenants the planner assumes; see the docstring. The value matters little above a few: the
# lookup needs a tenant estimated at more than one message.
TENANTS_ASSUMED = 100


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"ALTER TABLE messages ALTER COLUMN tenant_id SET (n_distinct = {TENANTS_ASSUMED})")
        if bind.exec_driver_sql("SELECT EXISTS (SELECT FROM messages)").scalar():
            op.execute("ANALYZE messages")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE messages ALTER COLUMN tenant_id RESET (n_distinct)")
