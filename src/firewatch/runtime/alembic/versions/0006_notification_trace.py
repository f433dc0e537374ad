"""Notifications remember the trace of the change that queued them.

Revision ID: 0006_notification_trace
Revises: 0005_detection
Create Date: 2026-11-27
"""

from firewatch.runtime.migrations import execute_script

revision = "0006_notification_trace"
down_revision = "0005_detection"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- The W3C traceparent of the span that enqueued the notification (NULL when
    -- tracing was off): the worker's delivery span continues that trace.
    ALTER TABLE notifications ADD COLUMN traceparent text
        CHECK (char_length(traceparent) <= 256);
    """)


def downgrade() -> None:
    execute_script("ALTER TABLE notifications DROP COLUMN traceparent;")
