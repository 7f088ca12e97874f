"""One module per revision (Alembic loads them by path; this file only makes the directory a
package, so it is installed with koinonia)."""
