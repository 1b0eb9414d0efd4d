"""Query results as astropy tables and ECSV/FITS/VOTable files, with their source units."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Column, MaskedColumn, QTable, Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import FLOAT_TYPES, INT_TYPES, _values

from .astro_lakes import FIXTURES, assert_same_table, convert_into, read_astropy


def test_units_and_descriptions_follow_renames_and_projections(fixture_lake):
    from nightlake import Lake

    t = Lake(fixture_lake).table(
        "WITH s AS (SELECT * FROM images) "
        "SELECT AIRMASS_1 AS am, i.ra, dec AS declination, GAINA, fwhm_arcsec(psfSigma) AS fwhm, "
        "psfSigma * 2 AS twice, DIMM2SEE FROM (SELECT * FROM s) i LIMIT 3"
    )
    assert isinstance(t, QTable)
    assert t["ra"].unit == u.deg and t["declination"].unit == u.deg
    assert t["ra"].info.description == "right ascension of the detector centre"
    assert t["GAINA"].unit == u.electron / u.adu and t["DIMM2SEE"].unit == u.arcsec
    assert t["am"].info.description == "AIRMASS header keyword" and t["am"].info.format == ".2f"
    assert t["fwhm"].unit == u.arcsec  # fwhm_arcsec declares its unit
    assert getattr(t["twice"], "unit", None) is None  # computed: no unit
    assert t.meta["query"].startswith("WITH s AS") and len(t.meta["lake_fingerprint"]) == 64


def test_plain_table_flag_and_params(fixture_lake):
    from nightlake import Lake

    t = Lake(fixture_lake).table(
        "SELECT ra, night FROM images WHERE night = $n", {"n": "20190401"}, quantity=False
    )
    assert type(t) is Table and t["ra"].unit == u.deg and set(t["night"]) == {"20190401"}
    assert t.meta["params"] == {"n": "20190401"}


def test_a_bad_query_is_one_query_error(fixture_lake):
    from nightlake import Lake
    from nightlake.errors import QueryError

    with pytest.raises(QueryError):
        Lake(fixture_lake).table("SELECT nope FROM images")


def test_a_temp_table_statement_answers_as_in_sql(fixture_lake):
    """A temp table is allowed on the read-only connection; ``table`` answers with DuckDB's
    row count as ``sql`` does (it failed on the open result of the metadata lookup)."""
    from nightlake import Lake

    lake = Lake(fixture_lake)
    made = lake.table("CREATE TEMP TABLE t AS SELECT visit FROM images")
    expected = lake.sql("CREATE TEMP TABLE u AS SELECT visit FROM images")
    assert made.colnames == expected.column_names == ["Count"]
    assert list(made["Count"]) == expected.column("Count").to_pylist()
    assert expected.column("Count").to_pylist() == [
        lake.sql("SELECT count(*) FROM images")[0][0].as_py()
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT nope FROM images", r"^Binder Error: .*nope"),
        ("SELECT CAST('x' || visit AS INT) FROM images", r"^Conversion Error: .*'x"),
    ],
)
@pytest.mark.parametrize("to", ["table", "ecsv", "fits"])
def test_errors_of_astropy_results_are_one_line(fixture_lake, tmp_path, query, message, to):
    """Binding and reading the rows, for tables and files alike."""
    from nightlake import Lake
    from nightlake.errors import QueryError
    from nightlake.query.astro import write_query

    lake = Lake(fixture_lake)
    with pytest.raises(QueryError, match=message) as raised:
        if to == "table":
            lake.table(query)
        else:
            write_query(lake, query, None, tmp_path / f"out.{to}", to)
    assert "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "collections").glob("*")))
def test_fixture_collections_round_trip_through_ecsv(tmp_path, cli, name):
    """Every column of the collection comes back equal: values, dtype, unit, description,
    mask, in the source's column order. The lake adds target and obs_time (left out here)
    and keeps the case-duplicate AIRMASS as AIRMASS_1, which is renamed back."""
    source = FIXTURES / "collections" / name
    lake = convert_into(tmp_path / "lake", source)
    out = tmp_path / "back.ecsv"
    result = cli(
        "sql", "--lake", lake, "-o", out, "SELECT * EXCLUDE (target, obs_time) FROM images"
    )
    assert result.exit_code == 0, result.output
    back = read_astropy(out)
    back.rename_column("AIRMASS_1", "AIRMASS")
    assert_same_table(read_astropy(source), back, name, {})


def test_ecsv_streams_in_batches_with_one_header(tmp_path, fixture_lake):
    """Several batches (forced small) make one ECSV with one header, equal to the whole."""
    from nightlake import Lake
    from nightlake.query.astro import write_query

    lake = Lake(fixture_lake)
    out = tmp_path / "all.ecsv"
    query = "SELECT visit, detector, ra, DIMM2SEE FROM images ORDER BY visit, detector"
    rows = write_query(lake, query, None, out, "ecsv", batch_rows=7)
    back = Table.read(out, format="ascii.ecsv")
    assert rows == len(back) == 172
    assert out.read_text().count("# %ECSV") == 1
    whole = lake.table(query, quantity=False)
    assert (back["visit"] == whole["visit"]).all() and back["ra"].unit == u.deg


@pytest.mark.parametrize(
    "ext, fmt",
    [(".ecsv", None), (".fits", None), (".vot", None), (".out", "votable"), (".out", "fits")],
)
def test_sql_writes_astropy_formats_with_units(tmp_path, cli, fixture_lake, ext, fmt):
    out = tmp_path / f"r{ext}"
    args = [
        "sql",
        "--lake",
        fixture_lake,
        "-o",
        out,
        "SELECT visit, ra, DIMM2SEE, obs_time FROM images WHERE night = '20190401'",
    ]
    result = cli(*args, *(["--format", fmt] if fmt else []))
    assert result.exit_code == 0, result.output
    kind = {"votable": "votable", "fits": "fits"}.get(fmt) or {
        ".ecsv": "ascii.ecsv",
        ".fits": "fits",
        ".vot": "votable",
    }[ext]
    back = Table.read(out, format=kind)
    assert len(back) == 36 and back["ra"].unit == u.deg and back["DIMM2SEE"].unit == u.arcsec
    assert not list(tmp_path.glob(".*tmp*"))


def test_export_writes_a_view_as_votable(tmp_path, cli, fixture_lake):
    out = tmp_path / "obscore.vot"
    result = cli("export", "obscore", "--to", out, "--lake", fixture_lake)
    assert result.exit_code == 0, result.output
    back = Table.read(out, format="votable")
    assert len(back) == 172 and back["s_ra"].unit == u.deg and back["em_min"].unit == u.m
    again = cli("export", "obscore", "--to", out, "--lake", fixture_lake)
    assert again.exit_code != 0 and "--overwrite" in again.output


def test_bad_astropy_outputs_are_one_error_line(tmp_path, fixture_lake):
    """Real subprocesses: exit code, one line on stderr naming the cause, nothing written."""
    cases = [
        (["sql", "SELECT 1 AS x", "--format", "fits"], "add -o FILE"),
        (["sql", "SELECT nope FROM images", "-o", str(tmp_path / "x.fits")], "nope"),
        (["sql", "SELECT 1 AS x", "-o", str(tmp_path / "no" / "x.ecsv")], "does not exist"),
    ]
    for args, needle in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "nightlake.cli", *args, "--lake", str(fixture_lake)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode != 0, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("*"))


def test_in_memory_formats_are_refused_over_the_limit(tmp_path, fixture_lake, monkeypatch):
    import nightlake.query.astro as astro
    from nightlake import Lake
    from nightlake.errors import UsageError

    monkeypatch.setattr(astro, "IN_MEMORY_ROWS", 100)
    with pytest.raises(UsageError, match="ecsv"):
        astro.write_query(
            Lake(fixture_lake), "SELECT * FROM images", None, tmp_path / "x.fits", "fits"
        )
    assert not (tmp_path / "x.fits").exists()


@st.composite
def scalar_ecsv_tables(draw):
    """Random tables of scalar columns (every ECSV int/float width, bool, str), some masked,
    some with units and descriptions."""
    n = draw(st.integers(min_value=1, max_value=5))
    table = Table()
    dtypes = draw(
        st.lists(st.sampled_from(["bool", *INT_TYPES, *FLOAT_TYPES, "str"]), min_size=1, max_size=5)
    )
    for i, dtype in enumerate(dtypes):
        values = _values(draw, dtype, n)
        if dtype == "str":
            values = np.array(["x" + v for v in values])  # '' and a leading '#' are astropy's
        unit = draw(st.sampled_from([None, "deg", "electron / adu", "arcsec"]))
        if draw(st.booleans()):
            mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
            table[f"c{i}"] = MaskedColumn(values, mask=mask, unit=unit, description=f"col {i}")
        else:
            table[f"c{i}"] = Column(values, unit=unit, description=f"col {i}")
    return table


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scalar_ecsv_tables())
def test_any_scalar_ecsv_round_trips_through_the_lake(tmp_path_factory, table):
    from nightlake import Lake
    from nightlake.ingest.convert import ConvertOptions, convert
    from nightlake.query.astro import write_query

    work = tmp_path_factory.mktemp("astro-roundtrip")
    source = work / "t.ecsv"
    table.write(source, format="ascii.ecsv")
    lake = Lake(work / "lake")
    assert convert(lake, [source], ConvertOptions(target="T", night="20190402")).ok
    out = work / "back.ecsv"
    write_query(lake, "SELECT * EXCLUDE (target, night) FROM images", None, out, "ecsv")
    assert_same_table(read_astropy(source), read_astropy(out), "random", {})


@pytest.mark.parametrize(
    "script",
    [
        "SELECT 1;\nSELECT 2,\n   nosuch FROM images",
        "SELECT 1;\nSELECT ra,\n  CAST('x' || visit AS INT) FROM images",
    ],
)
def test_astropy_results_give_the_error_line_of_lake_sql(fixture_lake, tmp_path, script):
    """The same line, position in the script included, whatever reads the result."""
    from nightlake import Lake
    from nightlake.errors import QueryError
    from nightlake.query.astro import write_query

    lake = Lake(fixture_lake)
    lines = []
    for run in (
        lambda: lake.sql(script),
        lambda: lake.table(script),
        lambda: write_query(lake, script, None, tmp_path / "out.fits", "fits"),
    ):
        with pytest.raises(QueryError) as raised:
            run()
        # the failing value is the first a parallel scan meets: any row's
        lines.append(re.sub(r"'x\d+'", "'x…'", str(raised.value)))
    token = "nosuch" if "nosuch" in script else "CAST"
    column = script.splitlines()[2].index(token) + 1
    assert lines[0].endswith(f"(line 3, column {column})"), lines[0]
    assert lines[1] == lines[0] and lines[2] == lines[0]
