"""The current definition of every PL/pgSQL (and SQL) function and trigger, one file per concern.

Each `*.sql` file here is the one place to read (and change) what the database runs: comments
say why, statements are `CREATE OR REPLACE` so a file can be applied again. Migrations do not
read these files: each applies a frozen copy of the text it needs, so a database is built the
same way whatever the files say today. To change a function or trigger, edit its file, then
write a migration that applies the new text (copied into the migration). The test
`tests/db/test_sql_files.py` compares what the database holds (`pg_get_functiondef`,
`pg_get_triggerdef`) with these files, so an edit without its migration fails it.
"""

from __future__ import annotations

import re
from importlib import resources

# What may hide a semicolon that does not end a statement: a comment, a quoted string or
# identifier, a dollar-quoted body (`$$ ... $$`, `$fn$ ... $fn$`). Scanned left to right, the
# first match wins, so a quote inside a comment (or the reverse) is never taken for one.
_TOKEN = re.compile(
    r"""--[^\n]*
      | /\*.*?\*/
      | '(?:[^']|'')*'
      | "(?:[^"]|"")*"
      | (?P<dollar>\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$).*?(?P=dollar)
      | (?P<end>;)""",
    re.DOTALL | re.VERBOSE,
)
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def statements(script: str) -> list[str]:
    """The statements of `script`, one by one (a driver's prepared statements take one each);
    comments before a statement stay with it, and text that is only comments is dropped."""
    found: list[str] = []
    start = 0
    for token in _TOKEN.finditer(script):
        if token.group("end"):
            found.append(script[start : token.start()])
            start = token.end()
    found.append(script[start:])
    return [s.strip() for s in found if _COMMENT.sub("", s).strip()]


def files() -> dict[str, str]:
    """Every file here, by name (`search.sql`), with its text."""
    here = resources.files(__name__)
    return {
        f.name: f.read_text(encoding="utf-8")
        for f in sorted(here.iterdir(), key=lambda f: f.name)
        if f.name.endswith(".sql")
    }
