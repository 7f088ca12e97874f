"""Parsing and validation of member CSV files: a corpus of the files churches really upload."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from koinonia.kit.phones import PhoneError, normalize_phone
from koinonia.members.csv_import import (
    ImportFileError,
    ImportRow,
    MemberCsvReader,
    ParsedImport,
    RowError,
    errors_csv,
    parse_member_csv,
)
from koinonia.members.schemas import MemberCreate


def phone_reason(raw: str) -> str:
    """The phone module owns the wording of phone errors; the import passes it through."""
    with pytest.raises(PhoneError) as caught:
        normalize_phone(raw)
    return caught.value.reason


def file_error(data: bytes, *, max_rows: int = 100_000, max_bytes: int = 2**25) -> ImportFileError:
    with pytest.raises(ImportFileError) as caught:
        parse_member_csv(data, max_rows=max_rows, max_bytes=max_bytes)
    return caught.value


def row(n: int, first: str, last: str, phone: str, email: str | None = None) -> ImportRow:
    return ImportRow(n, first, last, phone, email)


# --- encodings --------------------------------------------------------------------------------


def test_utf8_with_bom_excel_csv_utf8() -> None:
    data = (
        b"\xef\xbb\xbfFirst Name,Last Name,Phone\r\n"
        b"Jos\xc3\xa9,N\xc3\xba\xc3\xb1ez,(201) 555-0100\r\n"
    )
    parsed = parse_member_csv(data)
    assert parsed == ParsedImport([row(2, "José", "Núñez", "+12015550100")], [], 1, "utf-8-sig")


def test_utf8_without_bom() -> None:
    parsed = parse_member_csv("first,last,phone\nZoë,Ångström,2015550100\n".encode())
    assert parsed.encoding == "utf-8"
    assert parsed.rows == [row(2, "Zoë", "Ångström", "+12015550100")]


def test_cp1252_from_excel_on_windows() -> None:
    # 0xE9 é, 0xEB ë, 0x92 right single quote: valid cp1252, invalid UTF-8.
    data = b"first,last,phone\r\nJos\xe9,O\x92Brien,2015550100\r\nZo\xeb,M\xfcller,2015550101\r\n"
    parsed = parse_member_csv(data)
    assert parsed.encoding == "cp1252"
    assert parsed.rows == [
        row(2, "José", "O\u2019Brien", "+12015550100"),
        row(3, "Zoë", "Müller", "+12015550101"),
    ]


def test_latin1_when_cp1252_has_no_such_byte() -> None:
    # 0x81 and 0x90 are undefined in cp1252, so only latin-1 decodes this; they decode to C1
    # control characters, which names shed.
    data = b"first,last,phone\nJos\xe9\x81,Zo\xeb\x90,2015550100\n"
    parsed = parse_member_csv(data)
    assert parsed.encoding == "latin-1"
    assert parsed.rows == [row(2, "José", "Zoë", "+12015550100")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)),
            "this file is an Excel workbook (.xlsx) or zip archive, not a CSV:"
            " save it from your spreadsheet as 'CSV UTF-8' and upload that",
        ),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            "this file is an old Excel workbook (.xls), not a CSV:"
            " save it from your spreadsheet as 'CSV UTF-8' and upload that",
        ),
        (
            "first,phone\n".encode("utf-16"),
            "this file is UTF-16 text, not a CSV:"
            " save it from your spreadsheet as 'CSV UTF-8' and upload that",
        ),
        (
            "first,phone\n".encode("utf-16-le"),  # no BOM: NUL bytes give it away
            "this is a binary file, not a CSV:"
            " save it from your spreadsheet as 'CSV UTF-8' and upload that",
        ),
        (
            bytes((i * 37 + 11) % 256 for i in range(4096) if (i * 37 + 11) % 256),  # no NULs
            "this looks like a binary file, not a CSV:"
            " save it from your spreadsheet as 'CSV UTF-8' and upload that",
        ),
        (
            b"\xef\xbb\xbffirst,phone\nJos\xe9,2015550100\n",
            "the file is marked UTF-8 but line 2 is not:"
            " save it from your spreadsheet as 'CSV UTF-8' and upload that",
        ),
    ],
    ids=["xlsx", "xls", "utf16-bom", "utf16-no-bom", "binary-no-nul", "bom-but-cp1252"],
)
def test_binary_and_undecodable_files(data: bytes, reason: str) -> None:
    error = file_error(data)
    assert (error.field, error.reason, error.status) == ("file", reason, 422)


def test_a_few_stray_control_bytes_are_still_text() -> None:
    data = b"first,last,phone\nAnn\x0b,Lee\x1b,2015550100\n"
    assert parse_member_csv(data).rows == [row(2, "Ann", "Lee", "+12015550100")]


# --- line endings, quoting, blank lines, row numbers ---------------------------------------------


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(newline: bytes) -> None:
    lines = [b"first,last,phone", b"Ann,Lee,2015550100", b"Bob,,bad", b"Cy,Ng,2015550102"]
    parsed = parse_member_csv(newline.join(lines) + newline)
    assert parsed.rows == [row(2, "Ann", "Lee", "+12015550100"), row(4, "Cy", "Ng", "+12015550102")]
    assert parsed.errors == [RowError(3, "phone", "bad", phone_reason("bad"))]
    assert parsed.total_rows == 3


def test_no_newline_at_end_of_file() -> None:
    assert parse_member_csv(b"first,phone\nAnn,2015550100").rows == [
        row(2, "Ann", "", "+12015550100")
    ]


def test_quoted_fields_and_spreadsheet_row_numbers() -> None:
    # Row numbers are what a spreadsheet shows: a quoted cell spanning lines is one row, blank
    # lines are rows too. The bad phone on the last line is physical line 9 but row 6.
    data = (
        b"first name,last name,phone,notes\r\n"
        b'"Ann","Lee, Jr.",2015550100,"likes ""choir"", tea"\r\n'
        b'"Mary\r\nAnn",Smith,2015550101,"line one\r\nline two\r\nline three"\r\n'
        b"\r\n"
        b'  "Bob" ,"Ng",2015550102,\r\n'
        b"Cy,Ng,12345,\r\n"
    )
    parsed = parse_member_csv(data)
    assert parsed.rows == [
        row(2, "Ann", "Lee, Jr.", "+12015550100"),
        row(3, "Mary Ann", "Smith", "+12015550101"),
        row(5, "Bob", "Ng", "+12015550102"),
    ]
    assert parsed.errors == [RowError(6, "phone", "12345", phone_reason("12345"))]
    assert parsed.total_rows == 4


def test_blank_lines_are_skipped_but_keep_their_row_number() -> None:
    data = (
        b"\n"  # row 1: blank line before the header
        b"first,last,phone\n"  # row 2
        b"Ann,Lee,2015550100\n"  # row 3
        b"\n"  # row 4
        b"   \n"  # row 5
        b",,\n"  # row 6: empty cells
        b" , ,\t\n"  # row 7
        b"Bob,Ng,\n"  # row 8
    )
    parsed = parse_member_csv(data)
    assert parsed.rows == [row(3, "Ann", "Lee", "+12015550100")]
    assert parsed.errors == [RowError(8, "phone", None, "missing phone")]
    assert parsed.total_rows == 2


def test_unterminated_quote_is_a_file_error() -> None:
    data = b'first,last,phone\nAnn,"Lee,2015550100\nBob,Ng,2015550101\n'
    error = file_error(data)
    assert (error.field, error.reason) == (
        "file",
        "row 2 (line 2) opens a quote that is never closed, so the rest of the file became one"
        " cell: fix the quote and upload again",
    )


def test_multi_line_cell_in_the_last_row_is_fine() -> None:
    data = b'first,last,phone,notes\nAnn,Lee,2015550100,"a\n""b""\nc"\n'
    assert parse_member_csv(data).rows == [row(2, "Ann", "Lee", "+12015550100")]


def test_cell_beyond_the_csv_field_limit_is_a_file_error() -> None:
    data = b"first,phone,notes\nAnn,2015550100,ok\n\nBob,2015550101," + b"x" * 200_000 + b"\n"
    error = file_error(data)
    assert (error.field, error.reason) == (
        "file",
        "row 4 (line 4) is not valid CSV: a cell is longer than 131,072 characters",
    )


# --- header -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"First Name,Last Name,Phone Number,Email",
        b"first_name,last_name,phone,e-mail",
        b"FIRST,LAST,MOBILE,EMAIL ADDRESS",
        b"  firstname , lastname , cell phone , email ",
        b"Given Name,Family Name,Telephone,E-Mail",
        b"Forename,Surname,Tel.,Email_Address",
        b"first-name,last-name,Mobile Phone,email",
        b'"First Name","Surname","Cell","Email"',
        b"First Name,Last Name,Number,Email",
    ],
)
def test_header_aliases(header: bytes) -> None:
    parsed = parse_member_csv(header + b"\nAnn,Lee,2015550100,ann@example.org\n")
    assert parsed.rows == [row(2, "Ann", "Lee", "+12015550100", "ann@example.org")]


def test_extra_columns_in_any_order_are_ignored() -> None:
    data = b"Member ID,Phone,Notes,Last Name,Birthday,First Name\n7,2015550100,hi,Lee,1/2/90,Ann\n"
    assert parse_member_csv(data).rows == [row(2, "Ann", "Lee", "+12015550100")]


def test_last_name_column_is_optional() -> None:
    assert parse_member_csv(b"First,Phone\nAnn,2015550100\n").rows == [
        row(2, "Ann", "", "+12015550100")
    ]


def test_full_name_column_is_split_on_the_last_space() -> None:
    data = (
        b"Full Name,Phone\n"
        b"Mary Ann Smith,2015550100\n"
        b"Madonna,2015550101\n"
        b"  Jean  Dupont ,2015550102\n"
        b",2015550103\n"
    )
    parsed = parse_member_csv(data)
    assert parsed.rows == [
        row(2, "Mary Ann", "Smith", "+12015550100"),
        row(3, "Madonna", "", "+12015550101"),
        row(4, "Jean", "Dupont", "+12015550102"),
    ]
    assert parsed.errors == [RowError(5, "name", None, "missing name")]


def test_full_name_too_long_reports_the_name_cell() -> None:
    name = "Ann " + "B" * 101
    parsed = parse_member_csv(f"Name,Phone\n{name},2015550100\n".encode())
    assert parsed.errors == [RowError(2, "name", name, "too long: 101 characters (at most 100)")]


def test_name_next_to_surname_is_the_first_name() -> None:
    data = b"Name;Surname;Mobile\nAnna Maria;Rossi;+39 06 6982 0001\n"
    assert parse_member_csv(data).rows == [row(2, "Anna Maria", "Rossi", "+390669820001")]


def test_first_name_column_wins_over_a_name_column() -> None:
    data = b"Name,First Name,Phone\nAnn Lee (Mrs),Ann,2015550100\n"
    assert parse_member_csv(data).rows == [row(2, "Ann", "", "+12015550100")]


def test_missing_phone_column_lists_accepted_aliases() -> None:
    error = file_error(b"First Name,Last Name,Home\nAnn,Lee,2015550100\n")
    assert error.field == "header"
    assert error.missing == ("phone",)
    assert error.reason == (
        "missing required column: phone (accepted: phone, phone number, mobile, mobile number,"
        " mobile phone, cell, cell number, cell phone, telephone, tel, number)."
        " Found: 'First Name', 'Last Name', 'Home'"
    )
    assert error.status == 422
    assert error.body()["fields"] == {"header": error.reason}


def test_missing_first_name_and_phone_columns() -> None:
    error = file_error(b"Surname,Email\nLee,ann@example.org\n")
    assert error.missing == ("first_name", "phone")
    assert error.reason == (
        "missing required columns: first name (accepted: first name, first, firstname,"
        " first_name, given name, forename; or a single column: name, full name);"
        " phone (accepted: phone, phone number, mobile, mobile number, mobile phone, cell,"
        " cell number, cell phone, telephone, tel, number). Found: 'Surname', 'Email'"
    )


def test_no_header_row() -> None:
    error = file_error(b"Ann,Lee,2015550100\nBob,Ng,2015550101\n")
    assert (error.field, error.missing) == ("header", ("first_name", "phone"))
    assert error.reason == (
        "the first row must name the columns (first name, last name, phone, email);"
        " found 'Ann', 'Lee', '2015550100'"
    )


def test_two_columns_for_the_same_thing_are_refused() -> None:
    error = file_error(b"First Name,Phone,Mobile\nAnn,2015550100,2015550101\n")
    assert (error.field, error.reason) == (
        "header",
        "columns 'Phone' and 'Mobile' both look like phone: rename or remove one",
    )


@pytest.mark.parametrize(
    "data", [b"", b"\xef\xbb\xbf", b"\n\r\n  \n", b",,,\n;;\n"], ids=["0", "bom", "blank", "cells"]
)
def test_empty_file(data: bytes) -> None:
    error = file_error(data)
    assert (error.field, error.reason) == ("file", "the file is empty")


def test_header_only() -> None:
    for data in (b"First Name,Last Name,Phone", b"First Name,Last Name,Phone\r\n\r\n,,\r\n"):
        assert parse_member_csv(data) == ParsedImport([], [], 0, "utf-8")


# --- delimiters -------------------------------------------------------------------------------


def test_semicolon_delimiter_european_excel() -> None:
    data = b"Name;Surname;Phone;Email\r\nJ\xfcrgen;M\xfcller, geb. Schmidt;+49 30 901820;j@x.de\r\n"
    parsed = parse_member_csv(data)
    assert parsed.encoding == "cp1252"
    assert parsed.rows == [row(2, "Jürgen", "Müller, geb. Schmidt", "+4930901820", "j@x.de")]


def test_tab_delimiter() -> None:
    data = b"First Name\tLast Name\tPhone\nAnn\tLee, Jr.\t(201) 555-0100\n"
    assert parse_member_csv(data).rows == [row(2, "Ann", "Lee, Jr.", "+12015550100")]


def test_excel_sep_hint_line_is_not_a_row() -> None:
    data = b"sep=;\r\nfirst;phone\r\nAnn;2015550100\r\nBob;\r\n"
    parsed = parse_member_csv(data)
    assert parsed.rows == [row(2, "Ann", "", "+12015550100")]
    assert parsed.errors == [RowError(3, "phone", None, "missing phone")]


# --- row validation ---------------------------------------------------------------------------


def test_invalid_phones_carry_the_phone_module_reason() -> None:
    data = (
        b"first,phone\n"
        b"Ann,555-1234\n"
        b"Bob,12345\n"
        b"Cy,call me\n"
        b"Di,+999 1234 5678\n"
        b"Ed,2.01555E+09\n"
        b"Flo,\n"
    )
    parsed = parse_member_csv(data)
    assert parsed.rows == []
    assert parsed.errors == [
        RowError(2, "phone", "555-1234", phone_reason("555-1234")),
        RowError(3, "phone", "12345", phone_reason("12345")),
        RowError(4, "phone", "call me", phone_reason("call me")),
        RowError(5, "phone", "+999 1234 5678", phone_reason("+999 1234 5678")),
        RowError(
            6,
            "phone",
            "2.01555E+09",
            "the spreadsheet turned this number into scientific notation and lost digits:"
            " format the phone column as text and export again",
        ),
        RowError(7, "phone", None, "missing phone"),
    ]


def test_phones_that_went_through_a_float() -> None:
    parsed = parse_member_csv(b"first,phone\nAnn,2015550100.0\nBob,12015550101.0\nCy,1.0\n")
    assert parsed.rows == [row(2, "Ann", "", "+12015550100"), row(3, "Bob", "", "+12015550101")]
    assert parsed.errors == [RowError(4, "phone", "1.0", phone_reason("1"))]


def test_region_applies_to_national_numbers() -> None:
    parsed = parse_member_csv(b"first,phone\nAnn,020 7946 0958\n", region="GB")
    assert parsed.rows == [row(2, "Ann", "", "+442079460958")]


def test_duplicates_in_file_first_valid_row_wins() -> None:
    data = (
        b"first,last,phone\n"
        b",Nobody,2015550100\n"  # rejected: does not claim the number
        b"Ann,Lee,(201) 555-0100\n"
        b"Bob,Ng,2015550101\n"
        b"Ann,Lee,+1 201-555-0100\n"
        b"Bobby,Ng,201.555.0101\n"
    )
    parsed = parse_member_csv(data)
    assert parsed.rows == [
        row(3, "Ann", "Lee", "+12015550100"),
        row(4, "Bob", "Ng", "+12015550101"),
    ]
    assert parsed.errors == [
        RowError(2, "first_name", None, "missing first name"),
        RowError(5, "phone", "+1 201-555-0100", "duplicate of row 3 in this file"),
        RowError(6, "phone", "201.555.0101", "duplicate of row 4 in this file"),
    ]
    assert (parsed.total_rows, parsed.rejected_rows) == (5, 3)


def test_names_are_cleaned_and_limited() -> None:
    long_name = "A" * 101
    data = (
        "first,last,phone\n"
        "\u200bAnn\u00a0,\tLee\u200e ,2015550100\n"
        "Mary\u00a0 Ann ,Lee  Smith,2015550101\n"
        f"{long_name},Lee,2015550102\n"
        f"Bo,{'B' * 100},2015550103\n"
        " \t ,Lee,\n"
    ).encode()
    parsed = parse_member_csv(data)
    assert parsed.rows == [
        row(2, "Ann", "Lee", "+12015550100"),
        row(3, "Mary Ann", "Lee Smith", "+12015550101"),
        row(5, "Bo", "B" * 100, "+12015550103"),
    ]
    assert parsed.errors == [
        RowError(4, "first_name", long_name, "too long: 101 characters (at most 100)"),
        RowError(6, "first_name", None, "missing first name"),
        RowError(6, "phone", None, "missing phone"),
    ]


def test_invalid_email_is_a_warning_and_the_member_is_imported() -> None:
    data = (
        b"first,phone,email\n"
        b"Ann,2015550100,ann@example.org\n"
        b"Bob,2015550101,bob@gmail,com\n"  # unquoted comma: one cell too many, row rejected
        b'Cy,2015550102,"cy@gmail,com"\n'
        b"Di,2015550103,di at example.org\n"
        b"Ed,2015550104, ed@m\xc3\xbcnchen.de \n"
        b"Flo,2015550105,\n"
        b"Gus,,gus@\n"
    )
    parsed = parse_member_csv(data)
    assert parsed.rows == [
        row(2, "Ann", "", "+12015550100", "ann@example.org"),
        row(4, "Cy", "", "+12015550102"),
        row(5, "Di", "", "+12015550103"),
        row(6, "Ed", "", "+12015550104", "ed@münchen.de"),
        row(7, "Flo", "", "+12015550105"),
    ]
    warning = "invalid email: member imported without it"
    assert parsed.errors == [
        RowError(
            3,
            None,
            None,
            "row has 4 cells but the header has 3:"
            " is there an unquoted comma or semicolon in a value?",
        ),
        RowError(4, "email", "cy@gmail,com", warning, "warning"),
        RowError(5, "email", "di at example.org", warning, "warning"),
        RowError(8, "phone", None, "missing phone"),
        RowError(8, "email", "gus@", "invalid email", "warning"),
    ]
    assert parsed.rejected_rows == 2


@pytest.mark.parametrize(
    "address",
    # The import's own pattern used to take all of these; POST /members never did.
    ["ann..lee@example.org", ".ann@example.org", "ann@example.test", "ann@ex_ample.org"],
)
def test_the_import_refuses_the_addresses_the_api_refuses(address: str) -> None:
    with pytest.raises(ValidationError):
        MemberCreate(first_name="Ann", phone="2015550100", email=address)
    parsed = parse_member_csv(f"first,phone,email\nAnn,2015550100,{address}\n".encode())
    assert parsed.rows == [row(2, "Ann", "", "+12015550100")]
    warning = "invalid email: member imported without it"
    assert parsed.errors == [RowError(2, "email", address, warning, "warning")]


@pytest.mark.parametrize(
    ("address", "stored"),
    [("Ann@Example.ORG", "Ann@example.org"), ("Ann Lee <ann@example.org>", "ann@example.org")],
)
def test_the_import_stores_an_address_as_the_api_does(address: str, stored: str) -> None:
    member = MemberCreate(first_name="Ann", phone="2015550100", email=address)
    parsed = parse_member_csv(f'first,phone,email\nAnn,2015550100,"{address}"\n'.encode())
    assert member.email == parsed.rows[0].email == stored


def test_short_rows_are_padded_and_trailing_empty_cells_ignored() -> None:
    data = b"first,last,phone,email\nAnn,Lee,2015550100\nBob,Ng,2015550101,,,,\nCy\n"
    parsed = parse_member_csv(data)
    assert parsed.rows == [
        row(2, "Ann", "Lee", "+12015550100"),
        row(3, "Bob", "Ng", "+12015550101"),
    ]
    assert parsed.errors == [RowError(4, "phone", None, "missing phone")]


def test_a_row_of_only_extra_cells_is_not_blank() -> None:
    parsed = parse_member_csv(b"first,phone,notes\n,,moved away\n")
    assert parsed.total_rows == 1
    assert parsed.errors == [
        RowError(2, "first_name", None, "missing first name"),
        RowError(2, "phone", None, "missing phone"),
    ]


# --- size limits and bulk -------------------------------------------------------------------------


def generated_csv(count: int) -> bytes:
    lines = ["First Name,Last Name,Phone,Email"]
    lines += [
        f"Member{i},Family{i % 997},({201 + i // 10_000}) 555-{i % 10_000:04d},m{i}@example.org"
        for i in range(count)
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def test_ten_thousand_rows_all_valid() -> None:
    parsed = parse_member_csv(generated_csv(10_000))
    assert (len(parsed.rows), len(parsed.errors), parsed.total_rows) == (10_000, 0, 10_000)
    assert parsed.rows[0] == row(2, "Member0", "Family0", "+12015550000", "m0@example.org")
    assert parsed.rows[-1] == row(
        10_001, "Member9999", "Family29", "+12015559999", "m9999@example.org"
    )
    assert len({r.phone for r in parsed.rows}) == 10_000


def test_max_rows_exceeded() -> None:
    data = generated_csv(11)
    assert parse_member_csv(data, max_rows=11).total_rows == 11
    error = file_error(data, max_rows=10)
    assert (error.field, error.reason) == (
        "rows",
        "the file has more than 10 member rows: split it into smaller files",
    )


def test_blank_rows_do_not_count_towards_max_rows() -> None:
    data = b"first,phone\n" + b"\n,\n" * 50 + b"Ann,2015550100\n"
    assert parse_member_csv(data, max_rows=1).total_rows == 1


def test_file_too_large() -> None:
    data = generated_csv(100)
    assert len(data) == 5004
    error = file_error(data, max_bytes=5003)
    assert (error.field, error.status, error.code) == ("file", 413, "payload_too_large")
    assert error.reason == "the file is 5,004 bytes, more than the 5,003 allowed: split it"
    assert parse_member_csv(data, max_bytes=5004).total_rows == 100


# --- error report -----------------------------------------------------------------------------


def test_errors_csv_round_trips_through_csv_reader() -> None:
    errors = [
        RowError(2, "phone", "+1 (201) 555-01", 'invalid, "really"\nnot a number'),
        RowError(3, None, None, "row has 5 cells but the header has 3"),
        RowError(4, "email", 'José, "Zoë"\r\n@x', "invalid email", "warning"),
        RowError(5, "first_name", "-12", "odd"),
    ]
    text = errors_csv(errors)
    assert text.startswith("row,column,value,reason,severity\r\n")
    back = list(csv.reader(io.StringIO(text, newline="")))
    assert back == [
        ["row", "column", "value", "reason", "severity"],
        ["2", "phone", "+1 (201) 555-01", 'invalid, "really"\nnot a number', "error"],
        ["3", "", "", "row has 5 cells but the header has 3", "error"],
        ["4", "email", 'José, "Zoë"\r\n@x', "invalid email", "warning"],
        ["5", "first_name", "-12", "odd", "error"],
    ]


def test_errors_csv_neutralises_spreadsheet_formulas() -> None:
    errors = [
        RowError(2, "first_name", '=HYPERLINK("http://evil","x")', "too long"),
        RowError(3, "phone", "@SUM(A1)", "bad"),
        RowError(4, "phone", "+1 201 555", "bad"),
    ]
    back = list(csv.reader(io.StringIO(errors_csv(errors), newline="")))
    assert [r[2] for r in back[1:]] == [
        '\'=HYPERLINK("http://evil","x")',
        "'@SUM(A1)",
        "+1 201 555",
    ]


def test_report_of_a_parsed_file() -> None:
    parsed = parse_member_csv(b"first,phone,email\nAnn,12345,\n,2015550100,x@\nBo,2015550101,y@\n")
    report = list(csv.reader(io.StringIO(errors_csv(parsed.errors), newline="")))
    assert report == [
        ["row", "column", "value", "reason", "severity"],
        ["2", "phone", "12345", phone_reason("12345"), "error"],
        ["3", "first_name", "", "missing first name", "error"],
        ["3", "email", "x@", "invalid email", "warning"],
        ["4", "email", "y@", "invalid email: member imported without it", "warning"],
    ]


# --- properties -------------------------------------------------------------------------------

_FUZZ = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@_FUZZ
@given(st.binary(max_size=600))
def test_any_bytes_give_a_result_or_a_file_error(data: bytes) -> None:
    try:
        parsed = parse_member_csv(b"first,last,phone,email\n" + data)
    except ImportFileError as error:
        assert error.reason
        return
    assert len(parsed.rows) <= parsed.total_rows
    numbers = [r.row_number for r in parsed.rows]
    assert numbers == sorted(set(numbers))
    assert len({r.phone for r in parsed.rows}) == len(parsed.rows)


_cell = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)


@_FUZZ
@given(st.lists(st.tuples(st.integers(1, 10**6), _cell, _cell, _cell), max_size=20))
def test_errors_csv_round_trips_any_text(items: list[tuple[int, str, str, str]]) -> None:
    errors = [
        RowError(n, column or None, value, reason or "x") for n, column, value, reason in items
    ]
    back = list(csv.reader(io.StringIO(errors_csv(errors), newline="")))
    assert back[0] == ["row", "column", "value", "reason", "severity"]
    assert len(back) == len(errors) + 1
    for error, line in zip(errors, back[1:], strict=True):
        value = line[2][1:] if line[2] != error.value and line[2].startswith("'") else line[2]
        assert line == [str(error.row_number), error.column or "", line[2], error.reason, "error"]
        assert value == error.value


def _read_in_pieces(data: bytes, first: int) -> tuple[ParsedImport | str, ParsedImport | str]:
    """(the file read at once, read in two pieces of `first` records then the rest), each a
    ParsedImport or the file error's reason."""
    try:
        whole: ParsedImport | str = parse_member_csv(data)
    except ImportFileError as error:
        whole = error.reason
    try:
        reader = MemberCsvReader(data)
        rows, errors = reader.read(first)
        more, more_errors = reader.read()
        pieces: ParsedImport | str = ParsedImport(
            rows + more, errors + more_errors, reader.total_rows, reader.encoding
        )
    except ImportFileError as error:
        pieces = error.reason
    return whole, pieces


def test_reading_in_pieces_is_reading_at_once() -> None:
    """The importer upserts the first piece while parsing the rest: numbering, duplicates (a
    phone claimed in the first piece), errors and counts come out as from one read."""
    data = (
        b"first,last,phone,email\n"
        b"Ann,Lee,201-555-0100,ann@x.org\n"
        b"\n"
        b"Bob,,201-555-0101,not-an-email\n"
        b"Cy,Doe,201-555-0100,\n"
        b",NoFirst,201-555-0102,\n"
        b'"Multi\nLine",Name,201-555-0103,\n'
        b"Dup,Of Bob,(201) 555-0101,\n"
    )
    for first in range(0, 9):
        whole, pieces = _read_in_pieces(data, first)
        assert pieces == whole, first
    assert isinstance(whole, ParsedImport)
    dup = [e for e in whole.errors if e.reason.startswith("duplicate")]
    assert [(e.row_number, e.reason) for e in dup] == [
        (5, "duplicate of row 2 in this file"),
        (8, "duplicate of row 4 in this file"),
    ]


def test_a_file_error_in_the_second_piece_is_raised_there() -> None:
    data = b'first,last,phone\nAnn,Lee,2015550100\nBob,"unclosed,2015550101\nCy,Doe,2015550102\n'
    reader = MemberCsvReader(data)
    rows, _ = reader.read(1)
    assert rows == [row(2, "Ann", "Lee", "+12015550100")]
    with pytest.raises(ImportFileError, match="never closed"):
        reader.read()
    # The row limit counts across pieces.
    reader = MemberCsvReader(b"first,last,phone\n" + b"A,B,2015550100\n" * 3, max_rows=2)
    reader.read(2)
    with pytest.raises(ImportFileError, match="more than 2"):
        reader.read()


@_FUZZ
@given(st.binary(max_size=400), st.integers(0, 12))
def test_any_file_read_in_pieces_is_read_at_once(data: bytes, first: int) -> None:
    whole, pieces = _read_in_pieces(b"first,last,phone,email\n" + data, first)
    assert pieces == whole


@pytest.mark.parametrize(
    ("data", "field"),
    [
        # One header cell past the csv module's 131,072-character field limit: _csv.Error
        # escaped the delimiter sniffing (a 500).
        (b"x" * 131_073 + b",phone\nA,+13035550100\n", "header"),
        (b'"' + b"x" * 140_000 + b'",phone\nA,+13035550100\n', "header"),
        (b"sep=;\n" + b"x" * 131_073 + b";phone\nA;+13035550100\n", "file"),
        (b"first_name,phone\nA," + b"9" * 131_073 + b"\n", "file"),
    ],
)
def test_a_cell_beyond_the_csv_field_limit_is_a_file_error(data: bytes, field: str) -> None:
    with pytest.raises(ImportFileError) as caught:
        parse_member_csv(data)
    assert caught.value.field == field
    assert "longer than 131,072 characters" in caught.value.reason
