"""Alembic migrations, shipped in the package so an installed koinonia migrates its database
(`koinonia migrate`, and every start-up: koinonia.db.migrate). `versions/` starts with one
baseline (the schema as released); functions and triggers live in koinonia/db/sql."""
