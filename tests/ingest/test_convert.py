"""ECSV collections → lake: every input kind, layout, provenance, incrementality, conflicts."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.table import Table
from astropy.time import Time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import astropy_cells, same_cells, utc_datetimes
from strategies import ecsv_tables

from nightlake import Lake
from nightlake.ingest.convert import (
    ConvertOptions,
    convert,
    deduplicate_names,
    same_content,
)
from nightlake.lake import read_partition_metadata

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
COLLECTIONS = FIXTURES / "collections"
SORT = ["detector", "visit", "mjd"]


def _per_night_files():
    return sorted(COLLECTIONS.glob("*.collection"))


@pytest.fixture(scope="module")
def lake_per_night(tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("lake") / "lake")
    report = convert(lake, [COLLECTIONS])
    assert report.ok, report.failed
    return lake


def _partition(lake: Lake, target: str, night: str) -> pa.Table:
    return pq.read_table(
        lake.images_dir / f"target={target}" / f"night={night}" / f"{night}_{target}.parquet"
    )


def _expected_rows(path: Path, target: str | None = None, night: str | None = None) -> dict:
    """astropy's reading of ``path`` (optionally one target/night of it), sorted like the lake."""
    cells = astropy_cells(path)
    n = len(next(iter(cells.values())))
    keep = [
        i
        for i in range(n)
        if (target is None or cells["fieldname"][i] == target)
        and (night is None or cells["night"][i] == night)
    ]
    order = sorted(keep, key=lambda i: tuple(cells[c][i] for c in SORT))
    return {name: [values[i] for i in order] for name, values in cells.items()}


def _assert_partition_equals(table: pa.Table, expected: dict) -> None:
    got = table.to_pydict()
    for name, values in expected.items():
        lake_name = "AIRMASS_1" if name == "AIRMASS" else name
        assert len(got[lake_name]) == len(values), name
        bad = [i for i, (g, e) in enumerate(zip(got[lake_name], values)) if not same_cells(g, e)]
        assert not bad, f"column {name} differs at rows {bad[:5]}"


def test_every_per_night_file_equals_astropy(lake_per_night):
    files = _per_night_files()
    assert len(files) >= 6
    for path in files:
        night, target = path.stem.split("_")
        table = _partition(lake_per_night, target, night)
        _assert_partition_equals(table, _expected_rows(path))
        # 46 source columns (AIRMASS renamed) + obs_time
        assert table.num_columns == 47
        assert "AIRMASS_1" in table.column_names and "airmass" in table.column_names


def test_joined_collection_is_split_by_target_and_night(tmp_path):
    lake = Lake(tmp_path / "lake")
    joined = FIXTURES / "joined" / "joined.collection"
    report = convert(lake, [joined])
    assert report.ok and len(report.written) == len(_per_night_files())
    for path in _per_night_files():
        night, target = path.stem.split("_")
        _assert_partition_equals(
            _partition(lake, target, night), _expected_rows(joined, target, night)
        )


def test_sharded_tree_is_gathered_back_per_target_night(tmp_path, lake_per_night):
    lake = Lake(tmp_path / "lake")
    report = convert(lake, [FIXTURES / "sharded"])
    assert report.ok and len(report.written) == len(_per_night_files())
    for path in _per_night_files():
        night, target = path.stem.split("_")
        ours = _partition(lake, target, night).drop_columns(["obs_time"])
        reference = _partition(lake_per_night, target, night).drop_columns(["obs_time"])
        assert ours.schema.names == reference.schema.names
        assert same_content(ours, reference)


def test_packed_table_is_unpacked_into_columns(tmp_path):
    packed = next((FIXTURES / "packed").glob("*.collection"))
    source = COLLECTIONS / packed.name
    lake = Lake(tmp_path / "lake")
    assert convert(lake, [packed]).ok
    night, target = packed.stem.split("_")
    got = _partition(lake, target, night)
    meta = Table.read(packed, format="ascii.ecsv").meta
    assert meta["is_packed"] and meta["shared_cols"]
    assert set(meta["shared_cols"]) <= set(got.column_names)
    _assert_partition_equals(got, _expected_rows(source))


def test_the_same_rows_from_three_kinds_of_source_agree(tmp_path):
    lake = Lake(tmp_path / "lake")
    report = convert(lake, [COLLECTIONS, FIXTURES / "joined", FIXTURES / "sharded"])
    assert report.ok, report.failed
    assert len(report.written) == len(_per_night_files())
    for partition in report.written:  # per-night file, joined.collection and the shards
        sources = [Path(s["path"]) for s in read_partition_metadata(partition)["sources"]]
        assert len(sources) >= 3 and any(p.name == "joined.collection" for p in sources)
    assert not list(lake.images_dir.rglob("*.tmp"))


def test_layout_sorting_compression_and_varchar_partitions(lake_per_night):
    files = lake_per_night.image_files()
    assert len(files) == len(_per_night_files())
    for f in files:
        rel = f.relative_to(lake_per_night.images_dir).parts
        assert rel[0].startswith("target=") and rel[1].startswith("night=") and len(rel) == 3
        md = pq.ParquetFile(f).metadata
        assert md.row_group(0).column(0).compression == "ZSTD"
        t = pq.read_table(f, columns=SORT)
        keys = list(zip(*(t.column(c).to_pylist() for c in SORT)))
        assert keys == sorted(keys)
    described = lake_per_night.sql("SELECT column_name, column_type FROM (DESCRIBE images)")
    types = dict(
        zip(
            described.column("column_name").to_pylist(), described.column("column_type").to_pylist()
        )
    )
    assert types["night"] == "VARCHAR" and types["target"] == "VARCHAR"
    assert types["obs_time"] == "TIMESTAMP" and types["visit"] == "BIGINT"


def test_obs_time_is_utc_from_tai_mjd_with_leap_seconds(lake_per_night):
    # every row of every partition: obs_time is derived for all sources in one call
    t = lake_per_night.sql("SELECT mjd, obs_time FROM images")
    assert t.num_rows > 100
    mjd = np.array(t.column("mjd").to_pylist())
    expected = np.array(utc_datetimes(Time(mjd, format="mjd", scale="tai")), dtype="datetime64[us]")
    got = np.array(t.column("obs_time").to_pylist(), dtype="datetime64[us]")
    assert (got == expected).all()
    # independent of astropy: TAI − UTC was 37 s throughout 2017–2026
    naive = np.datetime64("1858-11-17") + (mjd * 86400e6).astype("timedelta64[us]")
    assert (np.abs((naive - got).astype(int) - 37_000_000) <= 1).all()


def test_obs_time_needs_a_numeric_mjd_and_follows_each_row(tmp_path):
    """mjd as float, as integer days, as text (a valid ECSV table, converted without obs_time),
    in one run: the shared ERFA call must hand each source its own stamps."""
    base = Table.read(COLLECTIONS / "20190401_A0a.collection", format="ascii.ecsv")[:5]
    days = base.copy()
    days.replace_column("mjd", np.floor(days["mjd"]).astype(np.int64))
    days.replace_column("fieldname", ["DAYS"] * len(days))
    text = base.copy()
    text.replace_column("mjd", [str(v) for v in text["mjd"]])
    text.replace_column("fieldname", ["TEXT"] * len(text))
    for name, table in (("a.ecsv", base), ("b.ecsv", days), ("c.ecsv", text)):
        table.write(tmp_path / name, format="ascii.ecsv")
    lake = Lake(tmp_path / "lake")
    assert convert(lake, sorted(tmp_path.glob("*.ecsv"))).ok
    for target, mjd in (("A0a", base["mjd"]), ("DAYS", days["mjd"])):
        got = lake.sql(
            "SELECT mjd, obs_time FROM images WHERE target = $t ORDER BY mjd", params={"t": target}
        )
        expected = utc_datetimes(Time(np.sort(np.asarray(mjd, float)), format="mjd", scale="tai"))
        assert got.column("obs_time").to_pylist() == list(expected)
    text_part = lake.images_dir / "target=TEXT" / "night=20190401" / "20190401_TEXT.parquet"
    assert "obs_time" not in pq.read_schema(text_part).names
    assert pq.read_schema(text_part).field("mjd").type == pa.string()


def test_utc_time_scale_is_recorded_and_used(tmp_path):
    lake = Lake(tmp_path / "lake")
    path = _per_night_files()[0]
    report = convert(lake, [path], ConvertOptions(time_scale="utc"))
    meta = read_partition_metadata(report.written[0])
    assert meta["time_scale"] == "utc"
    t = lake.sql("SELECT mjd, obs_time FROM images LIMIT 1").to_pylist()[0]
    expected = Time(t["mjd"], format="mjd", scale="utc").datetime
    assert abs((t["obs_time"] - expected).total_seconds()) < 1e-3


def test_provenance_metadata(lake_per_night):
    path = _per_night_files()[0]
    night, target = path.stem.split("_")
    f = lake_per_night.images_dir / f"target={target}/night={night}/{night}_{target}.parquet"
    meta = read_partition_metadata(f)
    (src,) = meta["sources"]
    assert src["path"] == str(path.resolve())
    assert src["size"] == path.stat().st_size
    assert src["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["nightlake_version"] and meta["time_scale"] == "tai"
    assert meta["target"] == target and meta["night"] == night
    assert meta["renames"] == {"AIRMASS_1": "AIRMASS"}
    assert meta["ecsv_header"][0].startswith("# %ECSV 1.0")
    schema = pq.read_schema(f)
    assert schema.field("AIRMASS_1").metadata[b"original_name"] == b"AIRMASS"
    assert schema.field("pointing_ra").metadata[b"unit"] == b"deg"
    table_meta = Table.read(path, format="ascii.ecsv").meta
    assert meta["table_meta"] == json.loads(json.dumps(dict(table_meta), default=str))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(["a", "A", "a_1", "A_1", "a_2", "b", "B", "a_1_1"]), min_size=1, max_size=7
    )
)
def test_case_insensitive_duplicates_get_duckdbs_own_names(tmp_path_factory, names):
    table = pa.table([[i] for i in range(len(names))], names=names)
    renamed, renames = deduplicate_names(table)
    # the independent expectation: the names DuckDB itself gives these Parquet columns
    path = tmp_path_factory.mktemp("dup") / "dup.parquet"
    pq.write_table(table, path)
    expected = (
        duckdb.connect().sql("SELECT * FROM read_parquet($p)", params={"p": str(path)}).columns
    )
    assert renamed.column_names == expected
    for new, old in renames.items():
        assert renamed.schema.field(new).metadata[b"original_name"] == old.encode()
    assert all(renamed.column(i).to_pylist() == [i] for i in range(len(names)))


def test_renames_keep_each_tables_own_field_metadata():
    """deduplicate_names remembers the schema it last renamed: a table whose schema differs
    only in field metadata (another source's descriptions) is renamed with its own."""

    def table(description: str) -> pa.Table:
        fields = [pa.field(n, pa.int64(), metadata={"description": description}) for n in "aA"]
        return pa.table([[1], [2]], schema=pa.schema(fields))

    for description in ["one", "two", "two", "one"]:
        renamed, renames = deduplicate_names(table(description))
        assert renames == {"A_1": "A"}
        assert dict(renamed.schema.field("A_1").metadata) == {
            b"description": description.encode(),
            b"original_name": b"A",
        }
        assert dict(renamed.schema.field("a").metadata) == {b"description": description.encode()}


def test_a_source_column_spelled_like_obs_time_keeps_its_name(tmp_path):
    """The derived obs_time follows the rename rule like any later duplicate spelling."""
    table = Table.read(COLLECTIONS / "20190401_A0a.collection", format="ascii.ecsv")[:4]
    table["OBS_TIME"] = ["their own"] * len(table)
    path = tmp_path / "20190401_A0a.collection"
    table.write(path, format="ascii.ecsv")
    lake = Lake(tmp_path / "lake")
    report = convert(lake, [path])
    assert report.ok and report.renames["obs_time_1"] == "obs_time"
    got = lake.sql('SELECT "OBS_TIME" AS theirs, obs_time_1 AS ours FROM images').to_pylist()
    assert [r["theirs"] for r in got] == ["their own"] * 4
    assert all(r["ours"] is not None and r["ours"].year == 2019 for r in got)


# -- incremental and idempotent ------------------------------------------------------------
def _copy_collections(tmp_path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(COLLECTIONS, src)
    return src


def _mtimes(lake):
    return {p: p.stat().st_mtime_ns for p in lake.image_files()}


def test_second_convert_writes_nothing(tmp_path):
    src = _copy_collections(tmp_path)
    lake = Lake(tmp_path / "lake")
    first = convert(lake, [src])
    before = _mtimes(lake)
    second = convert(lake, [src])
    assert second.written == [] and second.sources_read == 0
    assert second.unchanged == len(first.written)
    assert _mtimes(lake) == before


def test_a_changed_source_rewrites_just_its_partition(tmp_path):
    src = _copy_collections(tmp_path)
    lake = Lake(tmp_path / "lake")
    convert(lake, [src])
    before = _mtimes(lake)
    victim = sorted(src.glob("*.collection"))[0]
    lines = victim.read_text().splitlines(keepends=True)
    victim.write_text("".join(lines[:-1]))  # drop the last row
    report = convert(lake, [src])
    assert len(report.written) == 1
    after = _mtimes(lake)
    changed = [p for p in after if after[p] != before[p]]
    assert changed == report.written
    night, target = victim.stem.split("_")
    assert lake.sql(
        "SELECT count(*) n FROM images WHERE night = $n AND target = $t", {"n": night, "t": target}
    ).column("n")[0].as_py() == len(Table.read(victim, format="ascii.ecsv"))


def test_touched_but_unchanged_source_is_skipped_by_hash(tmp_path):
    src = _copy_collections(tmp_path)
    lake = Lake(tmp_path / "lake")
    convert(lake, [src])
    victim = sorted(src.glob("*.collection"))[0]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    assert convert(lake, [src]).written == []


def test_force_rewrites_everything(tmp_path):
    src = _copy_collections(tmp_path)
    lake = Lake(tmp_path / "lake")
    first = convert(lake, [src])
    assert len(convert(lake, [src], ConvertOptions(force=True)).written) == len(first.written)


def test_partition_by_detector_writes_a_third_level(tmp_path):
    lake = Lake(tmp_path / "lake")
    report = convert(
        lake, [COLLECTIONS], ConvertOptions(partition_by=("target", "night", "detector"))
    )
    assert report.ok
    rel = report.written[0].relative_to(lake.images_dir).parts
    assert rel[2].startswith("detector=") and len(rel) == 4
    n_files = lake.sql("SELECT count(DISTINCT (target, night, detector)) n FROM images")
    assert n_files.column("n")[0].as_py() == len(report.written)
    total = sum(len(Table.read(p, format="ascii.ecsv")) for p in _per_night_files())
    assert lake.sql("SELECT count(*) n FROM images").column("n")[0].as_py() == total
    # switching layouts needs --force
    with pytest.raises(Exception, match="converted with --partition-by target,night,detector"):
        convert(lake, [COLLECTIONS])


def test_two_sources_that_disagree_fail_naming_both(tmp_path):
    src = _copy_collections(tmp_path)
    joined = tmp_path / "joined.collection"
    shutil.copy(FIXTURES / "joined" / "joined.collection", joined)
    victim = sorted(src.glob("*.collection"))[0]
    lines = victim.read_text().splitlines(keepends=True)
    victim.write_text("".join(lines[:-1]))
    lake = Lake(tmp_path / "lake")
    report = convert(lake, [victim, joined])
    assert len(report.failed) == 1
    message = str(report.failed[0][1])
    assert str(victim) in message and str(joined) in message
    night, target = victim.stem.split("_")
    assert not (lake.images_dir / f"target={target}" / f"night={night}").exists()
    assert len(report.written) == len(_per_night_files()) - 1  # every other partition


# -- any ECSV, through the whole pipeline ---------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ecsv_tables())
def test_any_astropy_table_survives_the_lake_round_trip(tmp_path_factory, table):
    work = tmp_path_factory.mktemp("roundtrip")
    path = work / "t.ecsv"
    table.write(path, format="ascii.ecsv")
    lake = Lake(work / "lake")
    report = convert(lake, [path], ConvertOptions(target="T", night="20190402"))
    assert report.ok, report.failed
    expected = astropy_cells(path)
    if not len(next(iter(expected.values()))):
        assert report.written == []  # no rows: nothing to partition
        return
    (part,) = report.written
    stored = pq.read_table(part)  # what any Parquet reader sees
    got = stored.to_pydict()
    # the lake sorts rows only by detector/visit/mjd, which these tables lack: order is kept
    for name, values in expected.items():
        lake_name = next(
            n
            for n in stored.column_names
            if n == name
            or (stored.schema.field(n).metadata or {}).get(b"original_name") == name.encode()
        )
        column = got[lake_name]
        if "json" in str(stored.schema.field(lake_name).type):
            column = [None if v is None else json.loads(v) for v in column]
        assert all(same_cells(g, e) for g, e in zip(column, values)), name


def test_globs_are_expanded(tmp_path):
    lake = Lake(tmp_path / "lake")
    report = convert(lake, [str(COLLECTIONS / "2019*_A0*.collection")])
    assert report.ok
    expected = sorted(p.stem for p in COLLECTIONS.glob("2019*_A0*.collection"))
    assert sorted(p.stem for p in report.written) == expected
    bad = convert(lake, [str(tmp_path / "nothing*.collection")])
    assert "glob matches no files" in str(bad.failed[0][1])


def test_progress_is_reported_per_file_and_partition(tmp_path):
    calls = []
    convert(Lake(tmp_path / "lake"), [COLLECTIONS], progress=lambda *a: calls.append(a))
    n = len(_per_night_files())
    reads = [c for c in calls if c[0] == "read"]
    writes = [c for c in calls if c[0] == "write"]
    assert [c[1] for c in reads] == list(range(1, n + 1)) and all(c[2] == n for c in reads)
    assert [c[1] for c in writes] == list(range(1, n + 1))


def _lake_with_every_source_changed(tmp_path) -> tuple[Lake, Path, dict[Path, bytes]]:
    """A converted lake, its partitions' bytes, and its sources each one row shorter since."""
    src = _copy_collections(tmp_path)
    lake = Lake(tmp_path / "lake")
    convert(lake, [src])
    before = {p: p.read_bytes() for p in lake.image_files()}
    for f in src.glob("*.collection"):
        f.write_text("".join(f.read_text().splitlines(keepends=True)[:-1]))
    return lake, src, before


def test_a_failed_write_leaves_the_old_partition(tmp_path, monkeypatch):
    lake, src, before = _lake_with_every_source_changed(tmp_path)

    def half_then_crash(table, where, **kwargs):
        where.write(b"PAR1 half a file")  # into the temp file's stream, flushed on close
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", half_then_crash)
    with pytest.raises(OSError):
        convert(lake, [src])
    assert {p: p.read_bytes() for p in lake.image_files()} == before
    assert not list(lake.images_dir.rglob("*.tmp"))


def test_a_failed_commit_leaves_each_partition_old_or_new(tmp_path, monkeypatch):
    """Partitions are committed on threads of their own: when one rename fails, convert fails,
    no temp file stays, and every partition is the old file or a whole new one."""
    import nightlake.files

    lake, src, before = _lake_with_every_source_changed(tmp_path)
    victim = sorted(before)[len(before) // 2]
    real_replace = os.replace

    def replace(tmp, target):
        if Path(target) == victim:
            raise OSError(5, "Input/output error")
        real_replace(tmp, target)

    monkeypatch.setattr(nightlake.files.os, "replace", replace)
    with pytest.raises(OSError, match="Input/output error"):
        convert(lake, [src])
    assert victim.read_bytes() == before[victim]
    for path, old in before.items():
        now = path.read_bytes()
        assert (
            now == old
            or pq.read_table(path).num_rows == pq.read_table(pa.BufferReader(old)).num_rows - 1
        )
    assert not list(lake.images_dir.rglob("*.tmp"))


def test_rows_gone_from_a_changed_source_leave_the_lake(tmp_path):
    joined = tmp_path / "joined.collection"
    shutil.copy(FIXTURES / "joined" / "joined.collection", joined)
    lake = Lake(tmp_path / "lake")
    first = convert(lake, [joined])
    table = Table.read(joined, format="ascii.ecsv")
    night, target = table["night"][0], table["fieldname"][0]
    keep = (table["night"] != night) | (table["fieldname"] != target)
    table[keep].write(joined, format="ascii.ecsv", overwrite=True)
    second = convert(lake, [joined])
    gone = lake.images_dir / f"target={target}" / f"night={night}" / f"{night}_{target}.parquet"
    assert second.removed == [gone] and not gone.exists()
    assert len(lake.image_files()) == len(first.written) - 1
    third = convert(lake, [joined])  # and the lake has converged
    assert third.written == [] and third.removed == []


def test_the_view_reads_partitions_with_different_column_orders(tmp_path):
    lake = Lake(tmp_path / "lake")
    convert(lake, [COLLECTIONS])
    assert lake.read_manifest()["uniform_schema"] is True  # the view may skip union_by_name
    assert "union_by_name" not in lake.view_sql()
    packed = next((FIXTURES / "packed").glob("*.collection"))
    target = packed.stem.split("_")[1]
    copy = tmp_path / "20190402_A0z.collection"  # same rows, other column order, new target
    copy.write_text(packed.read_text().replace(f"{{fieldname: {target}}}", "{fieldname: A0z}"))
    assert convert(lake, [copy]).ok
    assert lake.read_manifest()["uniform_schema"] is False
    assert "union_by_name = true" in lake.view_sql()
    got = lake.sql(
        "SELECT target, sum(visit) AS v, sum(detector) AS d FROM images "
        "WHERE night = '20190402' GROUP BY target ORDER BY target"
    ).to_pylist()
    by_target = {r["target"]: (r["v"], r["d"]) for r in got}
    assert by_target[target] == by_target["A0z"]


def test_a_new_source_for_an_existing_partition_is_checked_against_it(tmp_path):
    lake = Lake(tmp_path / "lake")
    convert(lake, [COLLECTIONS])
    packed = next((FIXTURES / "packed").glob("*.collection"))  # the same rows, packed
    report = convert(lake, [packed])
    assert report.ok and len(report.written) == 1
    sources = {s["path"] for s in read_partition_metadata(report.written[0])["sources"]}
    assert sources == {str(packed.resolve()), str((COLLECTIONS / packed.name).resolve())}
    different = tmp_path / packed.name
    text = packed.read_text()
    assert " 120.0 " in text  # one exposure time changed: one cell differs
    different.write_text(text.replace(" 120.0 ", " 121.0 ", 1))
    bad = convert(lake, [different])
    assert len(bad.failed) == 1 and str(different) in str(bad.failed[0][1])


@pytest.mark.parametrize(
    "value", ["../up", "a/b", "a\\b", "k=v", ".hidden", "A0\x1fa", "line\nbreak"]
)
def test_a_target_that_cannot_name_a_directory_fails_its_file_only(tmp_path, value):
    table = Table.read(FIXTURES / "joined" / "joined.collection", format="ascii.ecsv")
    bad = tmp_path / "20190402_bad.collection"
    first = table[table["fieldname"] == table["fieldname"][0]][:3]
    first["fieldname"] = [value] * len(first)
    first.write(bad, format="ascii.ecsv")
    good = _per_night_files()[0]
    lake = Lake(tmp_path / "lake")
    report = convert(lake, [bad, good])
    assert [path for path, _ in report.failed] == [str(bad)]
    assert "target value cannot name a directory" in str(report.failed[0][1])
    assert [p.name for p in report.written] == [good.stem + ".parquet"]
    assert len(lake.image_files()) == 1


def test_a_file_of_many_partitions_splits_in_lake_order(tmp_path):
    """The split's three paths (one partition per file; many, each one run of rows; many,
    rows apart) against a brute-force sort."""
    table = Table.read(FIXTURES / "joined" / "joined.collection", format="ascii.ecsv")
    rng = np.random.default_rng(5)
    shuffled = table[rng.permutation(len(table))]
    grouped = shuffled[
        np.argsort(
            np.char.add(shuffled["fieldname"].astype(str), shuffled["night"].astype(str)),
            kind="stable",
        )
    ]
    for name, rows in (
        ("20190402_A0a.collection", shuffled[shuffled["fieldname"] == "A0a"]),
        ("joined.collection", shuffled),
        ("grouped.collection", grouped),
    ):
        path = tmp_path / name
        rows.write(path, format="ascii.ecsv", overwrite=True)
        lake = Lake(tmp_path / f"lake-{name}")
        assert convert(lake, [path]).ok
        for part in lake.image_files():
            got = pq.read_table(part, columns=[*SORT, "visit", "wcs"]).to_pydict()
            keys = list(zip(*(got[c] for c in SORT)))
            assert keys == sorted(keys) and len(keys) > 1
        expected = sorted(
            (r["fieldname"], r["night"], r["detector"], r["visit"], r["mjd"], r["wcs"])
            for r in rows
        )
        got = lake.sql(
            "SELECT target, night, detector, visit, mjd, wcs FROM images ORDER BY ALL"
        ).to_pylist()
        assert [tuple(r.values()) for r in got] == expected
