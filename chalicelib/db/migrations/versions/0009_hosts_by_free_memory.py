"""hosts by free memory

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 21:16:36.333767
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written by hand: Alembic does not compare indexes on expressions (DESC).
    op.create_index('ix_hosts_free_memory', 'hosts',
                    [sa.text('available_memory_capacity DESC'), 'uuid'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_hosts_free_memory', table_name='hosts')
