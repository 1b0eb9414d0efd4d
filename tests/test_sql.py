"""The macro catalog (nightlake.sql): the macros a connection gets from the catalog file are
the ones the text defines, and an edited text never uses a catalog built from another."""

from __future__ import annotations

import re

import duckdb
import pytest

from nightlake import sql

FUNCTIONS = """
SELECT function_name, function_type, parameters, parameter_types, macro_definition, comment
FROM duckdb_functions() WHERE function_type IN ('macro', 'table_macro') AND NOT internal
ORDER BY ALL
"""


_EXCLUDE = re.compile(r"EXCLUDE \(([^()]*)\)")


def macros_of(con) -> list[tuple]:
    """The macros' rows of ``duckdb_functions()``; an EXCLUDE list is a set, which DuckDB
    prints in no fixed order, so its names are sorted."""

    def sorted_excludes(text):
        if not isinstance(text, str):
            return text
        return _EXCLUDE.sub(lambda m: f"EXCLUDE ({', '.join(sorted(m[1].split(', ')))})", text)

    return [tuple(map(sorted_excludes, row)) for row in con.execute(FUNCTIONS).fetchall()]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(sql.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def text_only() -> list[tuple]:
    con = duckdb.connect()
    for path in sql.macro_files():
        con.execute(path.read_text())
    return macros_of(con)


def test_catalog_defines_what_the_text_defines(cache):
    con = duckdb.connect()
    sql.load_macros(con)
    (catalog,) = cache.glob("macros-*.duckdb")
    assert catalog == sql.macro_catalog()
    expected = text_only()
    assert len(expected) == sum(p.read_text().count("MACRO") for p in sql.macro_files()) / 2
    assert macros_of(con) == expected
    again = duckdb.connect()  # from the file now, nothing rebuilt
    sql.load_macros(again)
    assert macros_of(again) == expected
    assert list(cache.iterdir()) == [catalog]
    assert again.execute("SELECT fwhm_arcsec(1.0)").fetchone() == pytest.approx((2.355 * 0.2637,))
    assert again.execute(
        "SELECT database_name FROM duckdb_databases() WHERE NOT internal"
    ).fetchall() == [("memory",)]


def test_edited_text_gets_its_own_catalog(cache):
    texts = [p.read_text() for p in sql.macro_files()]
    first = sql.macro_catalog(texts)
    edited = texts[:-1] + [texts[-1] + "\nCREATE OR REPLACE MACRO nightlake_test_added() AS 1;"]
    second = sql.macro_catalog(edited)
    assert first != second and first.is_file() and second.is_file()
    con = duckdb.connect()
    assert sql._copy_catalog(con, second)
    assert con.execute("SELECT nightlake_test_added()").fetchone() == (1,)


@pytest.mark.parametrize("setting", ["", "unwritable"])
def test_without_a_catalog_the_text_is_run(tmp_path, monkeypatch, setting):
    if setting:
        blocker = tmp_path / "file"
        blocker.write_text("a file where the cache directory would be")
        setting = str(blocker / "cache")
    monkeypatch.setenv(sql.CACHE_ENV, setting)
    assert sql.macro_catalog() is None
    con = duckdb.connect()
    sql.load_macros(con)
    assert macros_of(con) == text_only()


def test_a_broken_catalog_falls_back_to_the_text(cache):
    path = sql.macro_catalog()
    path.write_bytes(b"not a duckdb file")
    con = duckdb.connect()
    sql.load_macros(con)
    assert macros_of(con) == text_only()
