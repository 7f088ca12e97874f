"""CSV member import, stage one: decode, parse and validate a file without touching the database.

`parse_member_csv` turns the uploaded bytes into valid `ImportRow`s (ready for COPY into a staging
table) and precise `RowError`s; `errors_csv` renders the downloadable report. Whole-file problems
raise `ImportFileError` (a 422; its `ImportFileTooLarge` is the 413 when the file is too large).

Decisions worth knowing (SPEC §4.1):

- Row numbers are the row a spreadsheet shows: every CSV record counts, blank ones included, and a
  quoted field spanning several lines is one row. The header is row 1 (unless Excel's `sep=` line
  or leading blank rows come first). The reader's `line_num` counts physical lines instead, so it
  is only used to point at malformed CSV.
- Required columns: phone and a first name (a `first name` column, or a single `name`/`full name`
  column). Per row, phone and first name are required; last name may be empty because many
  members are known by one name and a text only needs the first.
- A `name` column next to a `last name` column (European "Name;Surname") is the first name; without
  either it is split on the last space ("Mary Ann Smith" -> "Mary Ann" / "Smith").
- An invalid email does not reject the member: the row is imported without the email and a
  `warning` is reported, since the phone is what the church texts.
- Duplicate phones: the first valid row wins; later ones are errors "duplicate of row N in this
  file". Rejected rows never claim a phone.
- Cells beyond the header are ignored when empty (trailing commas); a non-empty one means the row
  is misaligned (an unquoted comma, typically), so the whole row is rejected.
- Two columns meaning the same thing (say `Phone` and `Mobile`) are a file error, never a guess.
"""

from __future__ import annotations

import csv
import io
import itertools
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from koinonia.kit.emails import normalize_email
from koinonia.kit.errors import KoinoniaError, PayloadTooLarge
from koinonia.kit.phones import PhoneError
from koinonia.members.import_phones import normalize_phones

Encoding = Literal["utf-8", "utf-8-sig", "cp1252", "latin-1"]
Severity = Literal["error", "warning"]

MAX_NAME_LENGTH: Final = 100
MAX_FILE_BYTES: Final = 32 * 1024 * 1024
# Error reports quote the offending cell; a swallowed-by-a-quote cell can be megabytes.
MAX_REPORTED_VALUE: Final = 200


class ImportRow(NamedTuple):
    """A valid row; a tuple in the staging table's column order, so it is a COPY record as is."""

    row_number: int
    first_name: str
    last_name: str
    phone: str  # E.164
    email: str | None


@dataclass(frozen=True, slots=True)
class RowError:
    """A problem with one row. `error` rejects the row; `warning` imports it without the value."""

    row_number: int
    column: str | None  # canonical column ("phone", "first_name", ...); None = the whole row
    value: str | None
    reason: str
    severity: Severity = "error"


@dataclass
class ParsedImport:
    rows: list[ImportRow]  # valid rows, de-duplicated by phone (first occurrence wins)
    errors: list[RowError]  # ordered by row, then column
    total_rows: int  # data rows seen, excluding the header and blank rows
    encoding: Encoding

    @property
    def rejected_rows(self) -> int:
        return len({e.row_number for e in self.errors if e.severity == "error"})


class ImportFileError(KoinoniaError):
    """The file as a whole cannot be imported; nothing in it is (422; `ImportFileTooLarge`: 413).

    `field` is "file" (empty, binary, undecodable, too large, malformed CSV), "header" (no header,
    missing or ambiguous columns; `missing` lists the canonical names) or "rows" (too many).
    """

    status, code = 422, "invalid_import_file"

    def __init__(self, field: str, reason: str, *, missing: Sequence[str] = ()) -> None:
        super().__init__(reason, fields={field: reason})
        self.field = field
        self.reason = reason
        self.missing = tuple(missing)


class ImportFileTooLarge(PayloadTooLarge, ImportFileError):
    """The file is over the size limit: the API's one 413 (`PayloadTooLarge`: status and code)
    with the import's `field` and `reason`."""


# --- header aliases ---------------------------------------------------------------------------

# As shown to users in error messages; matching ignores case, spaces, "_", "-" and ".".
_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "first_name": ("first name", "first", "firstname", "first_name", "given name", "forename"),
    "last_name": ("last name", "last", "lastname", "last_name", "surname", "family name"),
    "phone": (
        "phone",
        "phone number",
        "mobile",
        "mobile number",
        "mobile phone",
        "cell",
        "cell number",
        "cell phone",
        "telephone",
        "tel",
        "number",
    ),
    "email": ("email", "e-mail", "email address"),
    "name": ("name", "full name"),
}
_HEADER_NOISE: Final = str.maketrans("", "", " _-.\ufeff\u00a0")


def _header_key(cell: str) -> str:
    return cell.strip().lower().translate(_HEADER_NOISE)


_COLUMN_BY_KEY: Final[dict[str, str]] = {
    _header_key(alias): column for column, aliases in _ALIASES.items() for alias in aliases
}


def _accepted(column: str) -> str:
    return ", ".join(_ALIASES[column])


# --- decoding ---------------------------------------------------------------------------------

_UTF8_BOM: Final = b"\xef\xbb\xbf"
# C0 controls that never appear in a text CSV (tab, LF, VT, FF, CR and DOS's EOF ^Z are allowed).
_BINARY_BYTES: Final = bytes(b for b in range(32) if b not in b"\t\n\x0b\x0c\r\x1a")
_SAVE_AS_CSV: Final = "save it from your spreadsheet as 'CSV UTF-8' and upload that"
_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"PK\x03\x04", "an Excel workbook (.xlsx) or zip archive"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls)"),
    (b"%PDF", "a PDF document"),
    (b"\xff\xfe", "UTF-16 text"),
    (b"\xfe\xff", "UTF-16 text"),
)


def _decode(data: bytes) -> tuple[str, Encoding]:
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise ImportFileError("file", f"this file is {what}, not a CSV: {_SAVE_AS_CSV}")
    if b"\x00" in data:
        raise ImportFileError("file", f"this is a binary file, not a CSV: {_SAVE_AS_CSV}")
    # Counting via translate keeps this a C-speed pass over the whole file.
    controls = len(data) - len(data.translate(None, _BINARY_BYTES))
    if controls > 8 and controls * 100 > len(data):
        raise ImportFileError("file", f"this looks like a binary file, not a CSV: {_SAVE_AS_CSV}")
    if data.startswith(_UTF8_BOM):
        try:
            return data[len(_UTF8_BOM) :].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, len(_UTF8_BOM) + exc.start) + 1
            raise ImportFileError(
                "file", f"the file is marked UTF-8 but line {line} is not: {_SAVE_AS_CSV}"
            ) from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        # cp1252 (Excel on Windows) leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined.
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"  # total: every byte is a character


# --- header -----------------------------------------------------------------------------------

_DELIMITERS: Final = (",", ";", "\t")


@dataclass(slots=True)
class _Columns:
    width: int
    first: int = -1
    last: int = -1
    phone: int = -1
    email: int = -1
    split_name: bool = False  # `first` is a full-name column to split on the last space
    first_label: str = "first_name"


def _first_line(text: str) -> tuple[str, int]:
    """The first line with content, and where it starts."""
    start = 0
    for line in io.StringIO(text, newline=""):
        if line.strip(" \t\r\n,;"):  # a row of empty cells is blank too
            return line, start
        start += len(line)
    return "", start


def _csv_problem(exc: csv.Error) -> str:
    """What a csv.Error means for whoever fixes the file."""
    limit = csv.field_size_limit()
    if str(exc).startswith("field larger than field limit"):
        return f"a cell is longer than {limit:,} characters"
    return str(exc)


def _split_header(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])
    except csv.Error as exc:  # e.g. a header cell beyond the csv module's field limit
        raise ImportFileError(
            "header", f"the first row is not valid CSV: {_csv_problem(exc)}"
        ) from None


def _sniff_delimiter(header_line: str) -> str:
    """Pick the delimiter under which the header names the most known columns (then most cells)."""

    def score(delimiter: str) -> tuple[int, int]:
        cells = _split_header(header_line, delimiter)
        return sum(_header_key(c) in _COLUMN_BY_KEY for c in cells), len(cells)

    return max(_DELIMITERS, key=score)  # max keeps the first of equals: "," wins ties


def _map_columns(header: list[str]) -> _Columns:
    found: dict[str, int] = {}
    for index, cell in enumerate(header):
        column = _COLUMN_BY_KEY.get(_header_key(cell))
        if column is None:
            continue
        if column in found:
            raise ImportFileError(
                "header",
                f"columns {header[found[column]].strip()!r} and {cell.strip()!r} both look like"
                f" {column.replace('_', ' ')}: rename or remove one",
            )
        found[column] = index
    shown = ", ".join(repr(c.strip()) for c in header if c.strip())
    if not found:
        raise ImportFileError(
            "header",
            "the first row must name the columns (first name, last name, phone, email);"
            f" found {shown or 'nothing'}",
            missing=("first_name", "phone"),
        )
    missing: list[str] = []
    problems: list[str] = []
    if "first_name" not in found and "name" not in found:
        missing.append("first_name")
        problems.append(
            f"first name (accepted: {_accepted('first_name')};"
            f" or a single column: {_accepted('name')})"
        )
    if "phone" not in found:
        missing.append("phone")
        problems.append(f"phone (accepted: {_accepted('phone')})")
    if missing:
        raise ImportFileError(
            "header",
            f"missing required column{'s' if len(missing) > 1 else ''}: {'; '.join(problems)}."
            f" Found: {shown}",
            missing=missing,
        )
    columns = _Columns(
        width=len(header),
        last=found.get("last_name", -1),
        phone=found["phone"],
        email=found.get("email", -1),
    )
    if "first_name" in found:
        columns.first = found["first_name"]
    elif "last_name" in found:  # "Name;Surname": the name column holds the first name
        columns.first, columns.first_label = found["name"], "name"
    else:
        columns.first, columns.first_label, columns.split_name = found["name"], "name", True
    return columns


# --- cells ------------------------------------------------------------------------------------


def _clean_name(raw: str) -> str:
    """Trim, turn control characters and odd spaces into one space, drop invisible ones."""
    value = raw.strip()
    if value.isprintable():  # the common case: no control, format or odd space characters
        return " ".join(value.split()) if "  " in value else value
    out: list[str] = []
    for char in value:
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp", "Zs"):  # line breaks, tabs, NBSP... -> a plain space
            out.append(" ")
        elif category != "Cf":  # zero-width and direction marks vanish
            out.append(char)
    return " ".join("".join(out).split())


def _shown(value: str) -> str:
    if len(value) <= MAX_REPORTED_VALUE:
        return value
    return value[:MAX_REPORTED_VALUE] + "…"


def _phone_error_reason(raw: str, error: PhoneError) -> str:
    if "E+" in raw.upper() and raw.replace(".", "", 1).upper().replace("E+", "", 1).isdigit():
        return (
            "the spreadsheet turned this number into scientific notation and lost digits:"
            " format the phone column as text and export again"
        )
    return error.reason


# --- parsing ---------------------------------------------------------------------------------


# A row that passed the cheap checks, waiting for the bulk phone check:
# (row number, first name, last name, raw phone or "", email, errors so far, invalid email).
_Pending = tuple[int, str, str, str, str | None, list[RowError] | None, str | None]


def _check_rows(
    records: Iterator[tuple[int, list[str]]], columns: _Columns, max_rows: int, total: int = 0
) -> tuple[list[_Pending], list[str], int]:
    """Validate everything but phones, cheaply; phones go to one `normalize_phones` call.

    This loop runs once per row of files up to 100,000 rows, so it sticks to locals, tuples and
    C-level string methods; anything slow (unicode clean-up, regexes on names) runs only when a
    cheap test says the value needs it.
    """
    width, first_at, last_at = columns.width, columns.first, columns.last
    phone_at, email_at, split_name = columns.phone, columns.email, columns.split_name
    pending: list[_Pending] = []
    raw_phones: list[str] = []
    for row_number, row in records:
        if len(row) < width:
            row.extend([""] * (width - len(row)))  # spreadsheets drop trailing empty cells
        first_raw = row[first_at]
        last_raw = row[last_at] if last_at >= 0 else ""
        phone = row[phone_at].strip()
        email_raw = row[email_at].strip() if email_at >= 0 else ""
        first = first_raw.strip()
        last = last_raw.strip()
        if not (phone or first or last or email_raw) and not any(c.strip() for c in row):
            continue  # blank row: not counted, not an error
        total += 1
        if total > max_rows:
            raise ImportFileError(
                "rows",
                f"the file has more than {max_rows:,} member rows: split it into smaller files",
            )
        if len(row) > width and any(c.strip() for c in row[width:]):
            ragged = RowError(
                row_number,
                None,
                None,
                f"row has {len(row)} cells but the header has {width}:"
                " is there an unquoted comma or semicolon in a value?",
            )
            pending.append((row_number, "", "", "", None, [ragged], None))
            continue

        if not first.isprintable() or "  " in first:
            first = _clean_name(first)
        if not last.isprintable() or "  " in last:
            last = _clean_name(last)
        if split_name:
            head, _, tail = first.rpartition(" ")
            first, last = (head, tail) if head else (tail, "")
        errors: list[RowError] | None = None
        if not first or len(first) > MAX_NAME_LENGTH or len(last) > MAX_NAME_LENGTH or not phone:
            errors = _row_errors(row_number, first, last, phone, first_raw, last_raw, columns)

        email: str | None = None
        bad_email: str | None = None
        if email_raw:
            try:
                email = normalize_email(email_raw)  # the API's check: POST /members agrees
            except ValueError:
                bad_email = email_raw
        if phone:
            # Numbers that went through a float (pandas, some Sheets exports) end in ".0".
            raw_phones.append(
                phone[:-2] if phone.endswith(".0") and phone[:-2].isdigit() else phone
            )
        pending.append((row_number, first, last, phone, email, errors, bad_email))
    return pending, raw_phones, total


def _row_errors(
    row_number: int,
    first: str,
    last: str,
    phone: str,
    first_raw: str,
    last_raw: str,
    columns: _Columns,
) -> list[RowError]:
    """The precise problems of a row that failed the cheap name/phone checks, in column order."""
    first_label = columns.first_label
    last_label = first_label if columns.split_name else "last_name"
    errors: list[RowError] = []
    if not first:
        reason = "missing name" if first_label == "name" else "missing first name"
        errors.append(RowError(row_number, first_label, first_raw.strip() or None, reason))
    if columns.split_name:
        last_raw = first_raw  # both halves come from the one name cell
    for label, value, raw in ((first_label, first, first_raw), (last_label, last, last_raw)):
        if len(value) > MAX_NAME_LENGTH:
            reason = f"too long: {len(value)} characters (at most {MAX_NAME_LENGTH})"
            errors.append(RowError(row_number, label, _shown(raw.strip()), reason))
    if not phone:
        errors.append(RowError(row_number, "phone", None, "missing phone"))
    return errors


def _check_phones(
    pending: list[_Pending],
    raw_phones: list[str],
    region: str,
    first_row_by_phone: dict[str, int] | None = None,
) -> tuple[list[ImportRow], list[RowError]]:
    """Normalise all phones in one call, then keep the first valid row of each number
    (`first_row_by_phone` carries the numbers claimed by earlier pieces of the file)."""
    phones = iter(normalize_phones(raw_phones, region))
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    claim = ({} if first_row_by_phone is None else first_row_by_phone).setdefault
    for row_number, first, last, raw, email, row_errors, bad_email in pending:
        imported = False
        if raw:
            phone = next(phones)
            if row_errors is None and type(phone) is str:  # the common case: a good row
                seen = claim(phone, row_number)
                if seen == row_number:
                    rows.append(ImportRow(row_number, first, last, phone, email))
                    imported = True
                else:
                    reason = f"duplicate of row {seen} in this file"
                    errors.append(RowError(row_number, "phone", _shown(raw), reason))
            elif isinstance(phone, PhoneError):
                reason = _phone_error_reason(raw, phone)
                row_errors = [
                    *(row_errors or ()),
                    RowError(row_number, "phone", _shown(raw), reason),
                ]
        if row_errors:
            errors.extend(row_errors)
        if bad_email is not None:
            reason = "invalid email: member imported without it" if imported else "invalid email"
            errors.append(RowError(row_number, "email", _shown(bad_email), reason, "warning"))
    return rows, errors


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(spreadsheet row number, cells) for every record, blank ones included."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    row_number = 0
    start_line = end_line = 0  # physical lines of the latest record
    try:
        for row in reader:
            row_number += 1
            start_line, end_line = end_line + 1, reader.line_num
            yield row_number, row
    except csv.Error as exc:
        raise ImportFileError(
            "file",
            f"row {row_number + 1} (line {end_line + 1}) is not valid CSV: {_csv_problem(exc)}",
        ) from None
    if end_line > start_line and _ends_inside_quotes(text, start_line, delimiter):
        raise ImportFileError(
            "file",
            f"row {row_number} (line {start_line}) opens a quote that is never closed,"
            " so the rest of the file became one cell: fix the quote and upload again",
        )


def _ends_inside_quotes(text: str, from_line: int, delimiter: str) -> bool:
    """Whether the last record ran to the end of the file inside a quoted cell.

    The lenient reader (which takes whatever Excel takes) silently closes such a cell at the end
    of the file; only a strict re-read of the last record tells it apart from a legitimately
    multi-line cell. Only called when that record spans lines, which is rare.
    """
    tail = "".join(io.StringIO(text, newline="").readlines()[from_line - 1 :])
    try:
        for _ in csv.reader(io.StringIO(tail, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


class MemberCsvReader:
    """A member CSV decoded and its header understood (`ImportFileError` for whole-file problems
    is raised here), then read in pieces: `read(n)` validates the next `n` records (all the rest
    when None). Rows are numbered, de-duplicated and counted across pieces exactly as if the
    file were read at once, so the importer can stage and upsert the first piece while the rest
    is parsed. A later piece can still raise `ImportFileError` (malformed CSV, too many rows).
    """

    def __init__(
        self,
        data: bytes,
        *,
        region: str = "US",
        max_rows: int = 100_000,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        if len(data) > max_bytes:
            raise ImportFileTooLarge(
                "file",
                f"the file is {len(data):,} bytes, more than the {max_bytes:,} allowed: split it",
            )
        text, self.encoding = _decode(data)

        header_line, header_at = _first_line(text)
        hint = header_line.rstrip("\r\n")
        if len(hint) == 5 and hint[:4].lower() == "sep=":
            # Excel's delimiter hint; Excel hides this line, so rows are numbered after it.
            delimiter = hint[4]
            text = text[header_at + len(header_line) :]
            header_line, header_at = _first_line(text)
        else:
            delimiter = _sniff_delimiter(header_line)
        if not header_line:
            raise ImportFileError("file", "the file is empty")

        self._records = _records(text, delimiter)
        header: list[str] = []
        for _, row in self._records:
            if any(cell.strip() for cell in row):
                header = row
                break
        self._columns = _map_columns(header)
        self._region = region
        self._max_rows = max_rows
        self._first_row_by_phone: dict[str, int] = {}
        self.total_rows = 0  # data rows read so far, excluding the header and blank rows

    def read(self, records: int | None = None) -> tuple[list[ImportRow], list[RowError]]:
        """Valid rows and row errors of the next `records` CSV records (None: all the rest)."""
        chunk = self._records if records is None else itertools.islice(self._records, records)
        pending, raw_phones, self.total_rows = _check_rows(
            chunk, self._columns, self._max_rows, self.total_rows
        )
        return _check_phones(pending, raw_phones, self._region, self._first_row_by_phone)


def parse_member_csv(
    data: bytes, *, region: str = "US", max_rows: int = 100_000, max_bytes: int = MAX_FILE_BYTES
) -> ParsedImport:
    """Decode, parse and validate a member CSV. Raises `ImportFileError` for whole-file problems."""
    reader = MemberCsvReader(data, region=region, max_rows=max_rows, max_bytes=max_bytes)
    rows, errors = reader.read()
    return ParsedImport(
        rows=rows, errors=errors, total_rows=reader.total_rows, encoding=reader.encoding
    )


# --- report -----------------------------------------------------------------------------------

_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER: Final = frozenset("0123456789 +-().")


def _neutralise(value: str) -> str:
    """Stop a spreadsheet from running a cell as a formula (CSV injection), keeping phones as is."""
    if value.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.issuperset(value):
        return "'" + value
    return value


def errors_csv(errors: Sequence[RowError]) -> str:
    """The downloadable report: row,column,value,reason,severity (CRLF, RFC 4180).

    Encode it as "utf-8-sig" when serving it so Excel shows accented names correctly.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("row", "column", "value", "reason", "severity"))
    writer.writerows(
        (e.row_number, e.column or "", _neutralise(e.value or ""), e.reason, e.severity)
        for e in errors
    )
    return out.getvalue()
