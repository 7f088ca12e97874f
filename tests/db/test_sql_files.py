"""The database runs the functions and triggers of koinonia/db/sql, no more, no other.

The session's database was built by the migrations, which apply frozen copies of those files;
an edit of a file without a migration applying it (or a migration without the file's edit)
fails here. The files are applied over the database in a transaction that is rolled back, and
PostgreSQL's own rendering of every function and trigger (pg_get_functiondef,
pg_get_triggerdef) is compared before and after, whitespace aside.
"""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from koinonia.db.sql import files, statements

# Functions created by extensions (unaccent, pg_trgm, btree_gin) are theirs, not ours.
FUNCTIONS = """
SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid)
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
"""
# Internal triggers are those of foreign keys and other constraints.
TRIGGERS = """
SELECT t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
"""
DEFINED = re.compile(r"CREATE\s+OR\s+REPLACE\s+(FUNCTION|TRIGGER)\s+(\w+)", re.IGNORECASE)


async def _definitions(conn: AsyncConnection) -> dict[str, str]:
    rows = [*(await conn.exec_driver_sql(FUNCTIONS)).all(), *(await conn.exec_driver_sql(TRIGGERS))]
    return {name: " ".join(definition.split()) for name, definition in rows}


async def test_database_functions_and_triggers_are_the_files(engine: AsyncEngine) -> None:
    sql = files()
    named = {m.group(2) for text in sql.values() for m in DEFINED.finditer(text)}
    async with engine.connect() as conn:
        in_database = await _definitions(conn)
        for text in sql.values():
            for statement in statements(text):
                await conn.exec_driver_sql(statement)
        from_files = await _definitions(conn)
        await conn.rollback()

    # Functions are keyed by signature (`koinonia_fold(text)`), triggers by name.
    without_file = sorted(k for k in in_database if k.split("(")[0] not in named)
    assert not without_file, f"in the database, in no file of koinonia/db/sql: {without_file}"
    not_migrated = sorted(k for k in from_files if k not in in_database)
    assert not not_migrated, f"in koinonia/db/sql, not in the database: {not_migrated}"
    changed = sorted(k for k in in_database if in_database[k] != from_files[k])
    assert not changed, (
        f"koinonia/db/sql differs from the database for {changed}: "
        "a changed file needs a migration applying its new text"
    )


def test_statements_split_outside_comments_strings_and_bodies() -> None:
    script = """
-- a comment; with a semicolon
CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT 'a;b' $$;
CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $body$
BEGIN PERFORM 1; RAISE NOTICE 'it''s; fine'; END $body$;
SELECT ";" FROM t /* ; */;
-- nothing after this
"""
    assert statements(script) == [
        "-- a comment; with a semicolon\n"
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT 'a;b' $$",
        "CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $body$\n"
        "BEGIN PERFORM 1; RAISE NOTICE 'it''s; fine'; END $body$",
        'SELECT ";" FROM t /* ; */',
    ]


def test_every_statement_of_the_files_can_be_applied_again() -> None:
    # CREATE OR REPLACE only: the comparison above applies them over the database.
    sql = files()
    assert set(sql) >= {"search.sql", "foreign_keys.sql", "branch_member_counts.sql"}
    for name, text in sql.items():
        assert statements(text), f"{name} holds no statement"
        for statement in statements(text):
            assert DEFINED.search(statement), f"{name}: not CREATE OR REPLACE: {statement[:80]}"
