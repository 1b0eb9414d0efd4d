"""Real ECSV files through the lake and back: converted, exported as ECSV, read by astropy
into a table equal to astropy's own reading of the original (values, dtypes, shapes, units,
descriptions, formats, masks, Time format/scale/precision, JSON and array columns).

The files are the real DEEP_processing tables committed in data/fixtures/real/, the
every-datatype golden file, the paper's Table II, the previous release's lake, and — where the
checkout has it — every file of ../shared/data/deep_processing/ (or
``$NIGHTLAKE_SHARED_DATA``). Each file is converted once per session (a shared file that the
fixtures hold a copy of, once for both).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from astropy.time import Time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .astro_lakes import FIXTURES, LEAP_SECOND, SHARED_DATA, assert_same_table, read_astropy

#: what the lake adds to a file's columns: the partition keys and the time derived from mjd
ADDED = ("target", "night", "obs_time")
SHARED_DEEP = SHARED_DATA / "deep_processing"
# (target, night) for files whose name and columns do not say (documented: pass them)
OPTIONS = {"target": "T", "night": "20190402"}
PER_DETECTOR = ("target", "night", "detector")


def _sources() -> list:
    committed = [
        *sorted((FIXTURES / "real").glob("*.ecsv")),
        FIXTURES / "deep_table_II.ecsv",
        FIXTURES / "ecsv" / "all_types.ecsv",
    ]
    params = [pytest.param(p, id=f"fixtures/{p.parent.name}/{p.name}") for p in committed]
    if SHARED_DEEP.is_dir():
        params += [
            pytest.param(p, id=f"shared/{p.name}") for p in sorted(SHARED_DEEP.glob("*.ecsv"))
        ]
    else:
        params.append(
            pytest.param(
                None,
                id="shared",
                marks=pytest.mark.skip(
                    reason=f"no {SHARED_DEEP} beside this checkout (CI clones have none; the "
                    "committed copies in data/fixtures/real/ run instead)"
                ),
            )
        )
    return params


@pytest.fixture(scope="session")
def round_trips(tmp_path_factory):
    """``round_trip(path)`` → (astropy's reading of ``path``, of the lake's ECSV export);
    each file converted once."""
    from nightlake import Lake
    from nightlake.ingest.convert import ConvertOptions, convert
    from nightlake.query.astro import write_query

    done: dict[str, tuple[Table, Table]] = {}

    def round_trip(path: Path) -> tuple[Table, Table]:
        content = hashlib.sha256(path.read_bytes()).hexdigest()  # a shared file's copy: once
        if content not in done:
            original = read_astropy(path)
            work = tmp_path_factory.mktemp(path.stem)
            lake = Lake(work / "lake")
            report = convert(lake, [path], ConvertOptions(**OPTIONS))
            assert report.ok, report.failed
            columns = lake.table("SELECT * FROM images LIMIT 0").colnames
            added = [c for c in ADDED if c in columns and c not in original.colnames]
            query = f"SELECT * EXCLUDE ({', '.join(added)}) FROM images"
            write_query(lake, query, None, work / "back.ecsv", "ecsv")
            done[content] = original, read_astropy(work / "back.ecsv")
        return done[content]

    return round_trip


@pytest.mark.parametrize("path", _sources())
def test_a_real_ecsv_comes_back_equal(round_trips, path):
    original, back = round_trips(path)
    exceptions = LEAP_SECOND if path.name == "all_types.ecsv" else {}
    assert_same_table(original, back, path.name, exceptions)


def test_the_previous_releases_lake_exports_its_sources(tmp_path):
    """A lake written before the Time/array metadata (round 1) exports its collections back
    equal too (the case-duplicate ``AIRMASS`` is ``AIRMASS_1`` in the lake)."""
    import shutil

    from nightlake import Lake
    from nightlake.query.astro import write_query

    shutil.copytree(FIXTURES / "previous" / "lake", tmp_path / "lake")
    out = tmp_path / "back.ecsv"
    query = "SELECT * EXCLUDE (target, obs_time) FROM images"
    write_query(Lake(tmp_path / "lake"), query, None, out, "ecsv")
    back = read_astropy(out)
    back.rename_column("AIRMASS_1", "AIRMASS")
    sources = sorted((FIXTURES / "previous" / "src").glob("*.collection"))
    original = _astropy_concat([read_astropy(p) for p in sources])
    assert_same_table(original, back, "previous/lake", {})


def _survey_like_table() -> Table:
    """A table with what needs the lake's column metadata to come back: an ``int64`` night
    over two years, a TAI Time in ``mjd`` format, JSON, fixed and variable arrays, a unit."""
    from astropy.table import Column, MaskedColumn

    t = Table()
    t["night"] = np.array([20191231, 20200101, 20191231, 20200101], dtype=np.int64)
    t["detector"] = np.array([1, 1, 62, 62], dtype=np.int64)
    t["visit"] = MaskedColumn([7, 8, 9, 10], mask=[False, True, False, False], dtype=np.int32)
    mjd = [58848.1, 58849.2000001, 58848.3, 58849.4]
    t["start"] = Time(mjd, format="mjd", scale="tai", precision=6)
    t["seen"] = Time(["2020-01-01T01:02:03.25", "2020-01-02T00:00:00", "2020-01-01T05:00:00",
                      "2020-01-02T06:00:00.5"], precision=2)  # fmt: skip
    t["extra"] = Column([{"a": [1, None]}, None, "x", 3.5], dtype=object)
    t["psf"] = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    t["hits"] = Column(np.empty(4, dtype=object))
    for i, hits in enumerate([[1, 2], [3], [], [0, 1, 2, 3]]):
        t["hits"][i] = np.array(hits, dtype=np.int64)
    t["ra"] = Column([1.0, 2.0, 3.0, 4.0], unit="deg", description="right ascension", format=".3f")
    return t


@pytest.mark.parametrize(
    "levels, compacted",
    [(("target", "night"), False), (("target", "night"), True), (PER_DETECTOR, False)],
)
def test_a_sources_night_time_and_arrays_come_back_from_any_layout(tmp_path, levels, compacted):
    """Per-night and per-detector files and compacted target-years (where ``night`` is a
    column the compaction writes) give the source's ``int64`` night and detector (VARCHAR
    keys in the view), Time and arrays back."""
    from nightlake import Lake
    from nightlake.ingest.compact import compact
    from nightlake.ingest.convert import ConvertOptions, convert
    from nightlake.query.astro import write_query

    source = tmp_path / "survey.ecsv"
    _survey_like_table().write(source, format="ascii.ecsv")
    lake = Lake(tmp_path / "lake")
    assert convert(lake, [source], ConvertOptions(partition_by=levels, target="T")).ok
    if compacted:
        compact(lake)
        assert all("year=" in str(p) for p in lake.image_files())
    write_query(lake, "SELECT * EXCLUDE (target) FROM images", None, tmp_path / "b.ecsv", "ecsv")
    back = read_astropy(tmp_path / "b.ecsv")
    assert_same_table(read_astropy(source), back, "survey", {})


def test_a_lake_of_format_2_gives_the_time_format_and_scale_back(tmp_path):
    """Partitions written before ``astropy_time`` (format 2) name only format and scale."""
    import json

    import pyarrow.parquet as pq

    from nightlake import Lake
    from nightlake.ingest.convert import ConvertOptions, convert

    source = tmp_path / "survey.ecsv"
    _survey_like_table()["night", "start"].write(source, format="ascii.ecsv")
    lake = Lake(tmp_path / "lake")
    assert convert(lake, [source], ConvertOptions(target="T")).ok
    for path in lake.image_files():
        table = pq.read_table(path)
        at = table.schema.get_field_index("start")
        field = table.schema.field(at)
        md = dict(field.metadata)
        attributes = json.loads(md.pop(b"astropy_time"))
        md[b"astropy_time_format"] = attributes["format"].encode()
        md[b"astropy_time_scale"] = attributes["scale"].encode()
        pq.write_table(table.set_column(at, field.with_metadata(md), table.column(at)), path)
    start = lake.table("SELECT start FROM images ORDER BY start")["start"]
    assert (start.format, start.scale) == ("mjd", "tai")
    assert np.allclose(start.mjd, [58848.1, 58848.3, 58849.2000001, 58849.4], rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["fits", "votable"])
def test_fits_and_votable_take_json_arrays_and_times_as_they_can(tmp_path, kind):
    """Object columns (JSON, variable arrays) go as JSON text; VOTable times as UTC ISO."""
    from nightlake import Lake
    from nightlake.ingest.convert import ConvertOptions, convert
    from nightlake.query.astro import write_query

    source = tmp_path / "survey.ecsv"
    _survey_like_table().write(source, format="ascii.ecsv")
    lake = Lake(tmp_path / "lake")
    assert convert(lake, [source], ConvertOptions(target="T")).ok
    out = tmp_path / f"out.{kind}"
    query = "SELECT visit, start, extra, hits, psf, ra FROM images ORDER BY start"
    write_query(lake, query, None, out, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = Table.read(out, format=kind)
    assert list(back["extra"]) == ['{"a": [1, null]}', '"x"', "null", "3.5"]
    assert list(back["hits"]) == ["[1, 2]", "[]", "[3]", "[0, 1, 2, 3]"]
    # (astropy's VOTable reader gives a 3x2 cell back as 2x3: arraysize is column-major)
    assert back["psf"].shape[1:] in ((3, 2), (2, 3)) and back["ra"].unit == "deg"
    if kind == "votable":
        first = Time(str(back["start"][0]), format="isot", scale="utc")
        assert abs((first - Time(58848.1, format="mjd", scale="tai")).to_value("us")) < 1


def test_a_real_file_without_target_or_night_is_one_error_asking_for_them(tmp_path):
    import subprocess
    import sys

    path = FIXTURES / "real" / "table_IV_V.ecsv"
    proc = subprocess.run(
        [sys.executable, "-m", "nightlake.cli", "convert", str(path), "--lake", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"nightlake: error: {path}: cannot tell the target and night")
    assert line.endswith("pass --target --night")


def _astropy_concat(tables: list[Table]) -> Table:
    from astropy.table import vstack

    return vstack(tables, join_type="exact", metadata_conflicts="silent")


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
# 1972 (UTC without stretched seconds) to 2026 (ERFA's leap seconds are not "dubious"), on the
# lake's microsecond grid
# from 1972-01-02 UTC: a TT value written to a precision of a second or less must not round
# across 1972-01-01, before which UTC ran on stretched seconds (docs/guide.md, Round trip)
MICROSECONDS = st.integers(63_158_400_000_000, 1_767_225_600_000_000)
TIME_SCALES = st.sampled_from(["utc", "tai", "tt"])


@st.composite
def mixin_ecsv_tables(draw):
    """Random tables of what needs the lake's column metadata to come back: Time columns
    (format, scale, precision), JSON values, fixed-shape and variable-length arrays."""
    from astropy.table import Column

    n = draw(st.integers(min_value=1, max_value=4))
    table = Table()
    for i in range(draw(st.integers(1, 2))):
        stamps = np.array(draw(st.lists(MICROSECONDS, min_size=n, max_size=n)), "datetime64[us]")
        t = getattr(Time(stamps, format="datetime64", scale="utc"), draw(TIME_SCALES))
        t.format = draw(st.sampled_from(["isot", "iso", "mjd", "unix"]))
        t.precision = draw(st.integers(0, 6))
        table[f"t{i}"] = t
    table["json"] = Column(np.empty(n, dtype=object), description="any JSON")
    for row, value in enumerate(draw(st.lists(JSON_VALUES, min_size=n, max_size=n))):
        table["json"][row] = value
    shape = draw(st.sampled_from([(2,), (3, 2)]))
    table["grid"] = np.array(
        draw(st.lists(st.floats(width=32), min_size=n * int(np.prod(shape)), max_size=n * 6))[
            : n * int(np.prod(shape))
        ],
        dtype=np.float32,
    ).reshape(n, *shape)
    table["hits"] = Column(np.empty(n, dtype=object), unit="adu")
    for row in range(n):
        table["hits"][row] = np.array(
            draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3)), dtype=np.int64
        )
    return table


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixin_ecsv_tables())
def test_any_time_json_or_array_column_round_trips_through_the_lake(tmp_path_factory, table):
    """A Time on the microsecond grid comes back exactly, in its format, scale and precision;
    JSON and arrays as astropy reads them."""
    from nightlake import Lake
    from nightlake.ingest.convert import ConvertOptions, convert
    from nightlake.query.astro import write_query

    work = tmp_path_factory.mktemp("mixins")
    source = work / "t.ecsv"
    table.write(source, format="ascii.ecsv")
    lake = Lake(work / "lake")
    assert convert(lake, [source], ConvertOptions(**OPTIONS)).ok
    write_query(lake, "SELECT * EXCLUDE (target, night) FROM images", None, work / "b.ecsv", "ecsv")
    assert_same_table(read_astropy(source), read_astropy(work / "b.ecsv"), "mixins", {})
