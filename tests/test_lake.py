"""The lake directory: its Parquet partition files and their statistics."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightlake import Lake
from nightlake.errors import LakeError
from nightlake.ingest.convert import convert
from nightlake.lake import LONG_STRING_BYTES, dictionary_columns, statistics_columns

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"

COLLECTIONS = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "collections"


def test_partition_statistics_skip_nan_floats_and_long_strings(tmp_path):
    """Min/max statistics where DuckDB can use them (detector, visit, mjd …); none for a float
    column holding NaN (DuckDB would fold isnan() to false) nor for long JSON strings."""
    import pyarrow.parquet as pq

    lake = Lake(tmp_path / "lake")
    convert(lake, [FIXTURES / "collections"])
    checked = 0
    for path in lake.image_files():
        table = pq.read_table(path)
        meta = pq.ParquetFile(path).metadata
        for i, name in enumerate(table.column_names):
            column = table.column(name)
            has_stats = meta.row_group(0).column(i).is_stats_set
            if name in ("wcs", "config"):
                assert not has_stats, (path, name)
            elif pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
                assert not has_stats, (path, name)
            elif name in ("detector", "visit", "mjd", "band", "obs_time"):
                assert has_stats, (path, name)
                checked += 1
    assert checked >= 5 * len(lake.image_files())


_FLOAT_VALUES = st.one_of(
    st.none(), st.just(float("nan")), st.floats(allow_nan=False, allow_infinity=True, width=32)
)


@st.composite
def _tables_for_statistics(draw):
    """Float columns (NaN, null, both, neither; several chunks, empty ones) among strings
    short and long, and a nested column."""
    n_columns, n_rows = draw(st.integers(1, 8)), draw(st.integers(0, 9))
    columns, names = [], []
    for i in range(n_columns):
        kind = draw(
            st.sampled_from(
                ["float16", "float32", "float64", "short", "long", "short-large", "long-large"]
                + ["short-binary", "long-binary", "list"]
            )
        )
        cuts = sorted(draw(st.lists(st.integers(0, n_rows), max_size=3)))
        chunks = [b - a for a, b in zip([0, *cuts], [*cuts, n_rows])]
        if kind.startswith("float"):
            typ = getattr(pa, kind)()
            parts = [
                pa.array(draw(st.lists(_FLOAT_VALUES, min_size=n, max_size=n)), pa.float64()).cast(
                    typ
                )
                for n in chunks
            ]
        elif kind == "list":
            typ = pa.list_(pa.int64())
            parts = [pa.array([[1]] * n, typ) for n in chunks]
        else:
            typ = {"large": pa.large_string(), "binary": pa.binary()}.get(
                kind.split("-")[-1], pa.string()
            )
            width = 1 if kind.startswith("short") else LONG_STRING_BYTES + 1
            value = b"x" * width if typ == pa.binary() else "x" * width
            parts = [pa.array([value] * n, typ) for n in chunks]
        columns.append(pa.chunked_array(parts, typ))
        names.append(f"c{i}")
    return pa.table(columns, names=names)


@settings(max_examples=150, deadline=None)
@given(_tables_for_statistics())
def test_statistics_columns_match_the_rule_column_by_column(table):
    """Against the rule applied to each column on its own (the batched NaN test must not
    mix up columns, chunks or nulls)."""
    expected = []
    for field, column in zip(table.schema, table.columns):
        values = column.to_pylist()
        if pa.types.is_list(field.type):
            continue
        if pa.types.is_floating(field.type) and any(v is not None and v != v for v in values):
            continue
        if _text(field) and values and len(values[0]) > LONG_STRING_BYTES:
            continue
        expected.append(field.name)
    assert statistics_columns(table) == expected


def _text(field: pa.Field) -> bool:
    kind = field.type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)


@settings(max_examples=150, deadline=None)
@given(_tables_for_statistics())
def test_dictionary_columns_are_the_short_strings(table):
    """Against the rule applied to each column on its own: every string column, large ones
    too, unless its values are long."""
    expected = [
        field.name
        for field, column in zip(table.schema, table.columns)
        if _text(field) and not (len(column) and len(column.to_pylist()[0]) > LONG_STRING_BYTES)
    ]
    assert dictionary_columns(table) == expected


def test_short_strings_get_dictionary_pages_and_read_back_as_strings(tmp_path):
    """Per-night files and compacted parts alike: `night`, `band`, `filter`… in dictionary
    pages (DuckDB groups and filters on their few values), `wcs` and the numbers plain; the
    schema still says plain strings. (Old files without dictionary pages beside new ones:
    the format-3 fixture tests; DuckDB, pyarrow.dataset and polars on the new files:
    tests/ingest/test_compact_readers.py.)"""
    import pyarrow.parquet as pq

    from nightlake.ingest.compact import compact

    per_night, lake = Lake(tmp_path / "per-night"), Lake(tmp_path / "lake")
    for each in (per_night, lake):
        convert(each, [COLLECTIONS])
    compact(lake)
    for path in per_night.image_files() + lake.image_files():
        meta = pq.ParquetFile(path).metadata
        encodings = {
            meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).encodings
            for i in range(meta.num_columns)
        }
        for name in ("band", "filter", "night"):
            assert "RLE_DICTIONARY" in encodings[name], (path, name)
        for name in ("wcs", "psfSigma", "visit"):
            assert "RLE_DICTIONARY" not in encodings[name], (path, name)
        schema = pq.read_schema(path)
        assert schema.field("band").type == pa.string() and schema.field("wcs").type == pa.string()
    both = per_night.sql(
        "SELECT night, band, filter, count(*) n FROM images GROUP BY ALL ORDER BY ALL"
    )
    assert lake.sql(
        "SELECT night, band, filter, count(*) n FROM images GROUP BY ALL ORDER BY ALL"
    ).equals(both)


@pytest.mark.parametrize("name, decoy", [("runs[2]", "runs2"), ("a*b?c", "a_b_c")])
def test_a_lake_under_glob_characters_reads_its_own_files_only(tmp_path, name, decoy):
    """DuckDB reads a file name as a glob: a lake under ``runs[2]/`` read the files of
    ``runs2/`` (or none, with a traceback). Every view reads its own files: per night,
    compacted, and the detrend mirror. A confined connection (the web's) refuses such a
    place: the escaped name it would have to allow is another directory, which anyone who
    may write beside the lake could make."""
    import duckdb

    from nightlake.detrends.detreg import make_records, write_db
    from nightlake.detrends.sync import sync
    from nightlake.ingest.compact import compact

    def shrunk(decoy_lake: Lake) -> None:  # the same files, other rows: what a glob misread
        for f in decoy_lake.image_files():
            pq.write_table(pq.read_table(f).slice(0, 1), f)

    def counts(of: Lake) -> list[int]:  # the view, and the listed form a resolve chunk reads
        listed = of.images_select_sql(subset=of.image_files())
        with duckdb.connect() as con:
            chunk = con.execute(f"SELECT count(*) FROM ({listed})").fetchone()[0]
        return [of.sql("SELECT count(*) AS n FROM images").column("n")[0].as_py(), chunk]

    files = sorted(COLLECTIONS.glob("*.collection"))
    lake, other = Lake(tmp_path / name / "lake"), Lake(tmp_path / decoy / "lake")
    convert(lake, files)
    convert(other, files)
    shrunk(other)
    rows = sum(pq.read_metadata(f).num_rows for f in lake.image_files())
    assert counts(lake) == [rows, rows]
    with pytest.raises(LakeError, match=r"cannot confine queries to a directory whose path"):
        Lake(lake.path, confined=True).sql("SELECT 1")
    compact(lake)
    compact(other)
    shrunk(other)
    assert any(lake.images_dir.glob("year=*")) and any(other.images_dir.glob("year=*"))
    assert counts(lake) == [rows, rows]
    bias = {"type": "bias", "ccd": 5, "tstart": 1, "tstop": 2, "filename": "/m/bias.fits"}
    for where, filters in ((lake, {7: "ours"}), (other, {7: "theirs"})):
        db = where.path.parent / "detrend.db"
        write_db(db, make_records([bias]), filters)
        sync(where, db)
    # the decoy's mirror generation named as ours, so that an unescaped path would match it
    ours, theirs = lake.detrends_dir.resolve(), other.detrends_dir.resolve()
    theirs.rename(theirs.with_name(ours.name))
    other.detrends_dir.unlink()
    other.detrends_dir.symlink_to(ours.name)
    found = lake.sql("SELECT filename FROM detrends").column("filename").to_pylist()
    assert found == ["/m/bias.fits"]
    names = lake.sql("SELECT name FROM detrend_filters").column("name").to_pylist()
    assert names == ["ours"]


def test_a_confined_connection_allows_its_places_as_they_are(tmp_path, monkeypatch):
    """With a spill place under glob characters (``$TMPDIR``), a confined connection works,
    and allows no escaped name: DuckDB never globs the spill directory."""
    import tempfile

    odd = tmp_path / "tmp[1]"
    odd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(odd))
    lake = Lake(tmp_path / "lake")
    convert(lake, sorted(COLLECTIONS.glob("*.collection"))[:1])
    confined = Lake(lake.path, confined=True)
    allowed = confined.sql("SELECT current_setting('allowed_directories') AS a")["a"][0].as_py()
    assert allowed and not any("[[]" in place for place in allowed), allowed
    assert any(place.startswith(str(odd)) for place in allowed)


def test_a_lake_under_a_backslash_is_one_clear_error(tmp_path, cli):
    """DuckDB's globs never match a backslash, however escaped: the lake cannot be read,
    and says so in one line instead of DuckDB's traceback."""
    lake = Lake(tmp_path / "a\\b" / "lake")
    convert(lake, sorted(COLLECTIONS.glob("*.collection"))[:1])
    with pytest.raises(LakeError, match="under a path holding a backslash; move the lake"):
        lake.sql("SELECT count(*) FROM images")
    done = cli("sql", "--lake", lake.path, "SELECT count(*) FROM images")
    assert done.exit_code == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith(
        "cannot read the lake: DuckDB cannot read files under a path holding a backslash; "
        "move the lake"
    )


def test_a_negative_lock_timeout_is_refused_not_waited_forever(tmp_path, cli):
    """filelock takes a negative timeout as "wait forever"."""
    from nightlake.errors import UsageError

    with pytest.raises(UsageError, match="--lock-timeout must be 0 or more seconds, not -1"):
        with Lake(tmp_path / "lake").locked(-1):
            pass
    done = cli("convert", COLLECTIONS, "--lake", tmp_path / "lake", "--lock-timeout", "-0.5")
    assert done.exit_code == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith("error: --lock-timeout must be 0 or more seconds, not -0.5")


def test_a_damaged_partition_is_one_line_naming_it(tmp_path, cli):
    """DuckDB reads the first file's footer when the view is made: a damaged one is the
    lake's error, naming the file, without the view's text DuckDB quotes."""
    lake = Lake(tmp_path / "lake")
    convert(lake, sorted(COLLECTIONS.glob("*.collection")))
    damaged = sorted(lake.image_files())[0]
    damaged.write_bytes(b"junk")
    done = cli("sql", "--lake", lake.path, "SELECT count(*) FROM images")
    assert done.exit_code == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith(
        f"cannot read the lake: Invalid Input Error: File '{damaged}' too small to be a "
        "Parquet file"
    )
