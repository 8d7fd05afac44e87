"""The nightly history store: claims, results, verdicts, accepted changes.

Revision ID: 0001_history
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_history"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "nightly_claims",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("suite", sa.String(100), nullable=False),
        sa.Column("night", sa.Date, nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("claimed_at", TZ, nullable=False),
        sa.Column("heartbeat_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        sa.UniqueConstraint("suite", "night", name="uq_nightly_claims_suite_night"),
    )
    op.create_table(
        "nightly_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("suite", sa.String(100), nullable=False),
        sa.Column("night", sa.Date, nullable=False, index=True),
        sa.Column("entry", sa.String(100), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("wall_seconds", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_value", sa.Float, nullable=True),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("machine", sa.String(200), nullable=False),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.UniqueConstraint("suite", "night", "entry", "seed", "metric", name="uq_nightly_results_key"),
    )
    op.create_table(
        "nightly_verdicts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("suite", sa.String(100), nullable=False),
        sa.Column("night", sa.Date, nullable=False),
        sa.Column("entry", sa.String(100), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("verdict", sa.String(30), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("decided_at", TZ, nullable=False),
        sa.UniqueConstraint("suite", "night", "entry", "metric", name="uq_nightly_verdicts_key"),
    )
    op.create_table(
        "nightly_accepts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("suite", sa.String(100), nullable=False),
        sa.Column("entry", sa.String(100), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("night", sa.Date, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("accepted_by", sa.String(200), nullable=False),
        sa.Column("accepted_at", TZ, nullable=False),
        sa.UniqueConstraint("suite", "entry", "metric", "night", name="uq_nightly_accepts_key"),
    )


def downgrade() -> None:
    for table in ("nightly_accepts", "nightly_verdicts", "nightly_results", "nightly_claims"):
        op.drop_table(table)
