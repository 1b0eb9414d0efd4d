"""The compaction unit: a year cut into parts of at most PART_ROWS rows at targets; convert
writing them directly equals convert-then-compact (types that disagree, a run killed between
parts); a cached Lake follows every writer; lakes of format 3 keep working."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nightlake import Lake
from nightlake.detrends import sync as detrends_sync
from nightlake.ingest import compact as compact_module
from nightlake.ingest import convert as convert_module
from nightlake.ingest.compact import compact
from nightlake.ingest.convert import ConvertOptions, convert
from nightlake.lake import is_compacted, is_year_file
from nightlake.query.export import export
from nightlake.query.info import lake_info

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
COLLECTIONS = sorted((FIXTURES / "collections").glob("*.collection"))
FORMAT3 = FIXTURES / "previous-format3"
COUNTS = "SELECT target, night, count(*) n, sum(visit) v FROM images GROUP BY ALL ORDER BY ALL"


def relative(lake: Lake) -> list[str]:
    return [f.relative_to(lake.images_dir).as_posix() for f in lake.image_files()]


def partitions(lake: Lake) -> list[tuple]:
    """What ``nightlake info`` lists: each partition's keys and rows (in key order)."""
    return sorted((sorted(p.keys.items()), p.rows) for p in lake_info(Lake(lake.path)).partitions)


def footer(path: Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[b"nightlake"])


def test_convert_writes_the_compacted_files_the_two_steps_would(tmp_path, monkeypatch):
    """A convert that compacts hands its tables to the compaction: no per-night file is
    written, and the files are those of convert-then-compact, byte for byte."""
    for levels in (("target", "night"), ("target", "night", "detector")):
        options = ConvertOptions(partition_by=levels)
        two, direct = Lake(tmp_path / f"two{len(levels)}"), Lake(tmp_path / f"one{len(levels)}")
        convert(two, COLLECTIONS, options)
        compact(two)
        monkeypatch.setattr(compact_module, "AUTO_COMPACT_FILES", 2)
        per_night = []
        real = convert_module.write_parquet_temp
        monkeypatch.setattr(
            convert_module,
            "write_parquet_temp",
            lambda table, target, seen=per_night, real=real, **kw: (
                seen.append(target) or real(table, target, **kw)
            ),
        )
        convert(direct, COLLECTIONS, options)
        monkeypatch.undo()
        assert not per_night
        assert relative(direct) == relative(two) and relative(two)
        for a, b in zip(direct.image_files(), two.image_files()):
            assert footer(a) == footer(b) and a.read_bytes() == b.read_bytes()
        assert Lake(direct.path).sql(COUNTS).equals(Lake(two.path).sql(COUNTS))


def test_a_year_past_the_bound_is_cut_into_parts_at_targets(tmp_path, monkeypatch):
    plain, lake = Lake(tmp_path / "plain"), Lake(tmp_path / "lake")
    for each in (plain, lake):
        convert(each, COLLECTIONS[:3])  # 2019: A0a's 44 rows, A0b's 40
    compact(lake)
    assert relative(lake) == ["year=2019/2019_A0a.parquet"]
    whole = tmp_path / "whole.parquet"
    shutil.copy(lake.image_files()[0], whole)
    monkeypatch.setattr(compact_module, "PART_ROWS", 50)
    for each in (plain, lake):
        convert(each, COLLECTIONS, ConvertOptions(force=True))
    assert relative(lake) == [
        "year=2019/2019_A0a.parquet",
        "year=2019/2019_A0b.parquet",
        "year=2020/2020_B1e.parquet",
        "year=2021/2021_A1e.parquet",  # A1e and A1j: 16 rows, B1h's 36 would pass 50
        "year=2021/2021_B1h.parquet",
        "year=2022/2022_A0d.parquet",
    ]
    expected = Lake(plain.path).sql(COUNTS)
    assert Lake(lake.path).sql(COUNTS).equals(expected)
    assert partitions(lake) == partitions(plain)
    marker = lake.images_dir / "year=2019" / compact_module.CUT_MARKER
    assert not marker.exists()  # only while rows move between parts
    # a cut cut short, its new part written and the old one not yet rewritten (the marker
    # is written first): each target's rows are read from one file
    marker.touch()
    shutil.copy(whole, lake.images_dir / "year=2019" / "2019_A0a.parquet")
    assert Lake(lake.path).sql(COUNTS).equals(expected)
    assert partitions(lake) == partitions(plain)
    compact(lake)  # finishes it
    assert pq.read_metadata(lake.images_dir / "year=2019" / "2019_A0a.parquet").num_rows == 44
    assert not marker.exists()
    assert Lake(lake.path).sql(COUNTS).equals(expected)


def test_a_target_before_the_first_part_joins_it(tmp_path):
    plain, lake = Lake(tmp_path / "plain"), Lake(tmp_path / "lake")
    later = [f for f in COLLECTIONS if f.name == "20190402_A0b.collection"]
    convert(lake, later)
    compact(lake)
    assert relative(lake) == ["year=2019/2019_A0b.parquet"]
    for each in (plain, lake):
        convert(each, COLLECTIONS[:3])
    assert relative(lake) == ["year=2019/2019_A0a.parquet"]
    assert Lake(lake.path).sql(COUNTS).equals(Lake(plain.path).sql(COUNTS))


def format3(tmp_path) -> Lake:
    shutil.copytree(FORMAT3 / "lake", tmp_path / "lake")
    return Lake(tmp_path / "lake")


def test_a_format3_lake_reads_as_it_is(tmp_path):
    lake, plain = format3(tmp_path), Lake(tmp_path / "plain")
    assert all(is_compacted(f, lake.images_dir) for f in lake.image_files())
    assert not any(is_year_file(f, lake.images_dir) for f in lake.image_files())
    convert(plain, sorted((FORMAT3 / "src").glob("*.collection")))
    assert lake.sql(COUNTS).equals(plain.sql(COUNTS))
    assert partitions(lake) == partitions(plain)
    out = tmp_path / "export.parquet"
    export(lake, "SELECT * FROM images ORDER BY target, night, detector, visit", out)
    assert pq.read_table(out).num_rows == lake.sql(COUNTS)["n"].to_numpy().sum()


def test_a_format3_lake_converts_and_compacts_into_year_files(tmp_path):
    lake, plain = format3(tmp_path), Lake(tmp_path / "plain")
    src = sorted((FORMAT3 / "src").glob("*.collection"))
    untouched = {f: f.stat().st_ino for f in lake.image_files() if "year=2019" not in str(f)}
    added = [f for f in COLLECTIONS if f.name == "20190402_A0b.collection"]
    convert(lake, added)
    convert(plain, src + added)
    assert "year=2019/2019_A0a.parquet" in relative(lake)  # its touched year, in parts
    assert all(f.stat().st_ino == ino for f, ino in untouched.items())
    assert Lake(lake.path).sql(COUNTS).equals(plain.sql(COUNTS))
    # parts and format 3's target-years side by side: the columns in the per-night places
    describe = "SELECT column_name, column_type FROM (DESCRIBE images)"
    assert Lake(lake.path).sql(describe).equals(plain.sql(describe))
    compact(lake)
    assert all(is_year_file(f, lake.images_dir) for f in lake.image_files())
    assert lake.read_manifest()["format_version"] == compact_module.LAKE_FORMAT_VERSION == 4
    assert Lake(lake.path).sql(COUNTS).equals(plain.sql(COUNTS))


def test_a_format3_lake_resolves_detrends(tmp_path):
    lake = format3(tmp_path)
    shutil.copy(FIXTURES / "previous" / "detrends.db", tmp_path / "detrends.db")
    detrends_sync.sync(lake, tmp_path / "detrends.db")
    query = "SELECT count(*) n FROM resolve_detrends('flat')"
    before = lake.sql(query)
    compact(lake)
    assert before["n"][0].as_py() == lake.sql(COUNTS)["n"].to_numpy().sum()
    assert Lake(lake.path).sql(query).equals(before)


def test_a_cached_lake_follows_every_writer(tmp_path, monkeypatch):
    """One ``Lake`` kept across writers (as ``nightlake serve`` keeps it) answers as a fresh
    one after each: a compaction that removes per-night files its views named, a convert
    that cuts a year into parts, an upgrade of format 3's files."""
    plain, lake = Lake(tmp_path / "plain"), Lake(tmp_path / "lake")
    cached = Lake(lake.path)

    def same() -> None:
        assert cached.sql(COUNTS).equals(Lake(lake.path).sql(COUNTS))
        assert cached.sql(COUNTS).equals(plain.sql(COUNTS))

    for each in (plain, lake):
        convert(each, COLLECTIONS[:3])
    compact(lake)
    # a per-night file beside its part (a Dask convert's, or one killed before compacting)
    kept = lake.images_dir / "target=A0b" / "night=20190402" / "20190402_A0b.parquet"
    kept.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(plain.image_files()[-1]), kept)
    same()  # its views name the per-night file
    compact(lake)  # removes it
    assert not kept.exists()
    same()
    monkeypatch.setattr(compact_module, "PART_ROWS", 50)
    for each in (plain, lake):
        convert(each, COLLECTIONS, ConvertOptions(force=True))  # 2019 and 2021 cut in two
    assert len(lake.image_files()) == 6
    same()
    upgraded = Lake(shutil.copytree(FORMAT3 / "lake", tmp_path / "format3"))
    cached = Lake(upgraded.path)
    expected = cached.sql(COUNTS)
    compact(upgraded)
    assert cached.sql(COUNTS).equals(expected)


def test_rows_whose_types_disagree_stay_per_night_on_both_paths(tmp_path, monkeypatch):
    """A night whose column type cannot join its year's stays a per-night file, whether the
    convert writes it and a compaction leaves it, or hands its table to the compaction."""
    odd = tmp_path / "src" / "20190402_A0b.collection"
    odd.parent.mkdir()
    text = (FIXTURES / "collections" / odd.name).read_text()
    odd.write_text(
        text.replace("{name: airmass, datatype: float64", "{name: airmass, datatype: string")
    )
    two, direct = Lake(tmp_path / "two"), Lake(tmp_path / "direct")
    for each in (two, direct):
        convert(each, COLLECTIONS[:2])  # A0a, 2019
        compact(each)
    monkeypatch.setattr(compact_module, "AUTO_COMPACT_FILES", 1)  # the direct path
    report = convert(direct, [odd])
    monkeypatch.undo()
    monkeypatch.setattr(compact_module, "will_compact", lambda lake, new: False)
    convert(two, [odd])
    compact(two)
    assert report.rows_written == 40 and not report.failed
    assert (
        relative(direct)
        == relative(two)
        == [
            "target=A0b/night=20190402/20190402_A0b.parquet",
            "year=2019/2019_A0a.parquet",
        ]
    )
    for a, b in zip(direct.image_files(), two.image_files()):
        assert a.read_bytes() == b.read_bytes()
    assert Lake(direct.path).sql(COUNTS).equals(Lake(two.path).sql(COUNTS))
    assert Lake(direct.path).sql(COUNTS)["n"].to_pylist() == [36, 8, 40]


def test_a_convert_killed_between_parts_is_redone_by_the_next(tmp_path, monkeypatch):
    """A year cut into parts is written the last part first: killed before its first part,
    the changed source's new fingerprint is in the later part and the old one in the first;
    the next convert reads the source again (the last record must not stand for it all)."""
    source = tmp_path / "joined.collection"
    lines = (FIXTURES / "joined" / "joined.collection").read_text().splitlines(keepends=True)
    lines = [line for line in lines if "/20220527/" not in line]  # 2021 is the last year
    source.write_text("".join(lines))
    monkeypatch.setattr(compact_module, "AUTO_COMPACT_FILES", 1)
    lake, fresh = Lake(tmp_path / "lake"), Lake(tmp_path / "fresh")
    convert(lake, [source])
    assert relative(lake)[-1] == "year=2021/2021_A1e.parquet"  # a part a year
    monkeypatch.setattr(compact_module, "PART_ROWS", 40)  # the next convert cuts 2021
    changed = next(i for i, line in enumerate(lines) if "/20210507/A1e/" in line)
    source.write_text("".join(lines[:changed] + lines[changed + 1 :]))  # one A1e row less
    real = compact_module._write_compacted

    def killed(lake, out, *args, **kwargs):
        if out.name == "2021_A1e.parquet":
            raise KeyboardInterrupt
        return real(lake, out, *args, **kwargs)

    monkeypatch.setattr(compact_module, "_write_compacted", killed)
    with pytest.raises(KeyboardInterrupt):
        convert(lake, [source])
    monkeypatch.setattr(compact_module, "_write_compacted", real)
    report = convert(lake, [source])
    convert(fresh, [source])
    assert report.written and Lake(lake.path).sql(COUNTS).equals(Lake(fresh.path).sql(COUNTS))


def test_compact_merges_parts_that_removals_left_short(tmp_path, monkeypatch):
    source = tmp_path / "joined.collection"
    lines = (FIXTURES / "joined" / "joined.collection").read_text().splitlines(keepends=True)
    source.write_text("".join(lines))
    monkeypatch.setattr(compact_module, "PART_ROWS", 50)
    monkeypatch.setattr(compact_module, "AUTO_COMPACT_FILES", 1)
    lake, fresh = Lake(tmp_path / "lake"), Lake(tmp_path / "fresh")
    convert(lake, [source])
    year = [p for p in relative(lake) if p.startswith("year=2019/")]
    assert year == ["year=2019/2019_A0a.parquet", "year=2019/2019_A0b.parquet"]  # 44 + 40 rows
    source.write_text("".join(line for line in lines if "/20190401/A0a/" not in line))
    convert(lake, [source])  # A0a keeps its 8 rows of 20190402: 48 rows in two parts
    assert [p for p in relative(lake) if p.startswith("year=2019/")] == year
    compact(lake)
    assert [p for p in relative(lake) if p.startswith("year=2019/")] == [year[0]]
    convert(fresh, [source])
    assert Lake(lake.path).sql(COUNTS).equals(Lake(fresh.path).sql(COUNTS))
    assert partitions(lake) == partitions(fresh)
    assert compact(lake) == []  # nothing left to merge


def test_compact_cuts_again_parts_cut_under_a_larger_bound(tmp_path, monkeypatch):
    # PART_ROWS went from 16,384 to 8,192: a lake compacted before holds parts of several
    # targets past the new bound, which `nightlake compact` cuts as the new bound would
    monkeypatch.setattr(compact_module, "AUTO_COMPACT_FILES", 1)
    source = FIXTURES / "joined" / "joined.collection"
    lake, fresh = Lake(tmp_path / "lake"), Lake(tmp_path / "fresh")
    monkeypatch.setattr(compact_module, "PART_ROWS", 100)
    convert(lake, [source])
    assert [p for p in relative(lake) if p.startswith("year=2019/")] == [
        "year=2019/2019_A0a.parquet"  # 44 + 40 rows, two targets
    ]
    monkeypatch.setattr(compact_module, "PART_ROWS", 40)  # A0a's 44 rows: a part alone
    convert(fresh, [source])
    assert compact(lake)  # cut again
    assert relative(lake) == relative(fresh)
    assert "year=2019/2019_A0b.parquet" in relative(lake)
    assert Lake(lake.path).sql(COUNTS).equals(Lake(fresh.path).sql(COUNTS))
    assert partitions(lake) == partitions(fresh)
    assert compact(lake) == []  # a part of one target past the bound stays as it is


def test_a_cached_lake_reads_every_row_once_while_a_year_is_cut(tmp_path, monkeypatch):
    # a connection kept open (nightlake serve) queried after each file of a cut lands or
    # goes: it must never read a new part beside the old one still holding its rows
    monkeypatch.setattr(compact_module, "AUTO_COMPACT_FILES", 1)
    monkeypatch.setattr(compact_module, "PART_ROWS", 100)
    lake = Lake(tmp_path / "lake")
    convert(lake, [FIXTURES / "joined" / "joined.collection"])
    cached = Lake(lake.path)
    expected = cached.sql(COUNTS)
    seen = []
    for name in ("_write_compacted", "_remove_file"):
        real = getattr(compact_module, name)

        def spy(*args, real=real, name=name):
            seen.append((name, cached.sql(COUNTS).equals(expected)))  # the view of now
            out = real(*args)
            seen.append((name, cached.sql(COUNTS).equals(expected)))  # then the file lands
            return out

        monkeypatch.setattr(compact_module, name, spy)
    monkeypatch.setattr(compact_module, "PART_ROWS", 50)
    assert compact(lake)
    assert [name for name, _ in seen].count("_write_compacted") > 6 and all(ok for _, ok in seen)
    assert Lake(lake.path).sql(COUNTS).equals(expected)
