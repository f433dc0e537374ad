"""The last drift check of each signal stream (read by /metrics at scrape time).

Revision ID: 0007_signal_drift
Revises: 0006_notification_trace
Create Date: 2026-11-27
"""

from firewatch.runtime.migrations import execute_script

revision = "0007_signal_drift"
down_revision = "0006_notification_trace"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- One row per stream: the PSI of its latest drift check and the windows it compared.
    CREATE TABLE signal_drift (
        stream_id          bigint PRIMARY KEY REFERENCES signal_streams (id) ON DELETE CASCADE,
        psi                double precision NOT NULL CHECK (psi >= 0 AND psi < 'Infinity'),
        level              text NOT NULL CHECK (level IN ('stable', 'moderate', 'significant')),
        reference_seconds  double precision NOT NULL,
        recent_seconds     double precision NOT NULL,
        reference_points   integer NOT NULL,
        recent_points      integer NOT NULL,
        checked_at         timestamptz NOT NULL DEFAULT now()
    );
    """)


def downgrade() -> None:
    execute_script("DROP TABLE signal_drift;")
