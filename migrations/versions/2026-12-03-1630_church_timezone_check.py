"""a church's timezone is a zone PostgreSQL can convert to, checked by the database

Python's zoneinfo accepted names PostgreSQL (the embedded server's tz database) does not know:
`right/...`, `posix/...`, `localtime`, `posixrules`. A church saved with one made every
statement that converts to its local time fail: the stats endpoints and every inbound text to
that church (a STOP never applied). The API now accepts only canonical IANA names; this
repairs any stored name the database cannot use, or that is not canonical, to UTC and adds a
CHECK so no write can store one again.

Revision ID: 5d2c8e1f7a30
Revises: 4e8b2c7d1a90
Create Date: 2026-12-03 16:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5d2c8e1f7a30"
down_revision: str | None = "4e8b2c7d1a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# IMMUTABLE: the answer changes only with the server's tz database, i.e. a reinstall. The
# conversion is tried on a fixed instant (no scan of pg_timezone_names, which reads every zone
# file); the names the API refuses as not canonical are refused here too.
IS_TIMEZONE = """
CREATE OR REPLACE FUNCTION koinonia_is_timezone(tz text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF tz IS NULL OR tz ~ '^(posix|right)/' OR tz IN ('localtime', 'posixrules', 'Factory') THEN
        RETURN false;
    END IF;
    PERFORM TIMESTAMPTZ '2000-01-01 00:00:00+00' AT TIME ZONE tz;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END $$
"""


def upgrade() -> None:
    op.execute(IS_TIMEZONE)
    op.execute("UPDATE churches SET timezone = 'UTC' WHERE NOT koinonia_is_timezone(timezone)")
    op.execute(
        "ALTER TABLE churches ADD CONSTRAINT ck_churches_timezone"
        " CHECK (koinonia_is_timezone(timezone))"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE churches DROP CONSTRAINT ck_churches_timezone")
    op.execute("DROP FUNCTION koinonia_is_timezone(text)")
