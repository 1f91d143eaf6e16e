"""sealed endpoint secrets: room for a signing secret sealed with AES-GCM (a 64-byte secret's sealed form
is some 180 characters); the secrets themselves are sealed by the delivery sweep, which has the key

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 03:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.alter_column("secret", type_=sa.String(length=512), existing_type=sa.String(length=128))
        batch_op.alter_column("previous_secret", type_=sa.String(length=512), existing_type=sa.String(length=128))


def downgrade() -> None:
    # Code before 0008 reads secrets in plain text only: rotate every endpoint's secret after going back
    # (on PostgreSQL a sealed secret does not even fit the old width, and the downgrade stops there).
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.alter_column("secret", type_=sa.String(length=128), existing_type=sa.String(length=512))
        batch_op.alter_column("previous_secret", type_=sa.String(length=128), existing_type=sa.String(length=512))
