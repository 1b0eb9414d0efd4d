"""The footer cache beside a lake (compact.Footers): a convert's plan from it equals the plan
from the files' own footers, it and the readers of the lake's records read no footer of a
file it knows, and it trusts nothing that is not a stamp-for-stamp copy."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nightlake import Lake
from nightlake.ingest import compact as compact_module
from nightlake.ingest.compact import FOOTERS, FOOTERS_FORMAT, UNCACHED, compact, partition_records
from nightlake.ingest.convert import ConvertOptions, _LakeIndex, convert
from nightlake.query.info import lake_info

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"
COLLECTIONS = sorted((FIXTURES / "collections").glob("*.collection"))


def plan_without_cache(lake: Lake) -> dict:
    """_LakeIndex.load of ``lake`` from its footers (a copy without the cache)."""
    copy = lake.path.parent / f"{lake.path.name}-nocache"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(lake.path, copy)
    shutil.rmtree(copy / FOOTERS, ignore_errors=True)  # a directory in one test
    (copy / FOOTERS).unlink(missing_ok=True)
    index = dataclasses.asdict(_LakeIndex.load(Lake(copy)))
    shutil.rmtree(copy)
    return relative_to(index, copy)


def plan(lake: Lake) -> dict:
    return relative_to(dataclasses.asdict(_LakeIndex.load(lake)), lake.path)


def relative_to(index: dict, root: Path) -> dict:
    """The plan's partition paths under ``root`` made relative, so two lakes compare."""

    def rel(p):
        return p.relative_to(root) if isinstance(p, Path) and p.is_relative_to(root) else p

    return {
        name: {rel(k): v for k, v in value.items()} if isinstance(value, dict) else value
        for name, value in index.items()
    }


class FooterReads:
    """Counts the footers read (pyarrow.parquet.read_schema, as the cache reads them)."""

    def __init__(self, monkeypatch) -> None:
        self.files: list[Path] = []
        real = pq.read_schema

        def read_schema(path, *args, **kwargs):
            self.files.append(Path(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(pq, "read_schema", read_schema)


@pytest.mark.parametrize("compacted", [False, True])
def test_a_plan_from_the_cache_is_the_plan_from_the_footers(tmp_path, monkeypatch, compacted):
    if compacted:
        monkeypatch.setattr(compact_module, "AUTO_COMPACT_FILES", 2)
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:3])
    assert (lake.path / FOOTERS).exists()
    assert plan(lake) == plan_without_cache(lake)
    convert(lake, COLLECTIONS)  # more nights, into the files the cache knows
    assert plan(lake) == plan_without_cache(lake) and plan(lake)["partitions"]
    convert(lake, COLLECTIONS[1:])  # one night fewer
    assert plan(lake) == plan_without_cache(lake)


def test_a_plan_reads_only_the_footers_of_files_it_does_not_know(tmp_path, monkeypatch):
    monkeypatch.setattr(compact_module, "AUTO_COMPACT_FILES", 2)
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:-1])
    reads = FooterReads(monkeypatch)
    _LakeIndex.load(lake)
    assert reads.files == []
    convert(lake, COLLECTIONS)  # the last night: its part rewritten, and only that read
    rewritten = [f for f in lake.image_files() if f.name.startswith(COLLECTIONS[-1].stem[:4])]
    assert set(reads.files) <= set(lake.image_files()) and len(set(reads.files)) == 1
    assert set(reads.files) <= set(rewritten)
    reads.files.clear()
    _LakeIndex.load(lake)
    assert reads.files == []


def test_an_astropy_tables_provenance_reads_no_footer_the_cache_knows(tmp_path, monkeypatch):
    from nightlake.query.astro import lake_fingerprint

    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:3])
    expected = lake_fingerprint(lake)
    reads = FooterReads(monkeypatch)
    assert lake_fingerprint(Lake(lake.path)) == expected and reads.files == []
    (lake.path / FOOTERS).unlink()
    assert lake_fingerprint(Lake(lake.path)) == expected
    assert len(reads.files) == len(lake.image_files())
    assert not (lake.path / FOOTERS).exists()  # a reader never writes it


def test_a_file_rewritten_behind_the_cache_is_read_again(tmp_path, monkeypatch):
    """Another writer (an older nightlake) replaces a file by one of the same size and sets
    its mtime back: the new inode tells it apart, and its footer is read again."""
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:2])
    file = lake.image_files()[0]
    st = file.stat()
    tmp = file.with_name(".rewrite")
    tmp.write_bytes(file.read_bytes())
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    tmp.replace(file)
    after = file.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert after.st_ino != st.st_ino
    reads = FooterReads(monkeypatch)
    _LakeIndex.load(lake)
    assert reads.files == [file]


def test_a_cache_that_cannot_be_written_fails_nothing(tmp_path):
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:1])
    (lake.path / FOOTERS).unlink()
    (lake.path / FOOTERS).mkdir()  # where the cache would go: as unwritable as a full disk
    report = convert(lake, COLLECTIONS[:2])
    assert report.ok and len(report.written) == 1
    assert plan(lake) == plan_without_cache(lake)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1, 2]",
        '{"format": 99, "files": {}}',
        f'{{"format": {FOOTERS_FORMAT}, "files": []}}',
        f'{{"format": {FOOTERS_FORMAT}}}',
        "stamps",  # every entry: the right stamp, wrong shapes
    ],
)
def test_a_cache_that_is_not_one_counts_as_empty(tmp_path, text):
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:2])
    expected = plan_without_cache(lake)
    if text == "stamps":
        files = json.loads((lake.path / FOOTERS).read_text())["files"]
        broken = [{"signature": 1}, {"meta": []}, {"signature": [[1]], "meta": {}}]
        text = json.dumps(
            {
                "format": FOOTERS_FORMAT,
                "files": {
                    k: {"stamp": v["stamp"], **broken[i % len(broken)]}
                    for i, (k, v) in enumerate(files.items())
                },
            }
        )
    (lake.path / FOOTERS).write_text(text)
    assert plan(lake) == expected
    convert(lake, COLLECTIONS[:2])  # nothing to do, and the cache written again
    assert json.loads((lake.path / FOOTERS).read_text())["format"] == FOOTERS_FORMAT
    assert plan(lake) == expected


def test_reading_a_lake_writes_no_cache(tmp_path):
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:2])
    (lake.path / FOOTERS).unlink()
    Lake(lake.path).sql("SELECT count(*) FROM images")
    lake_info(Lake(lake.path))
    assert not (lake.path / FOOTERS).exists()


def test_a_compaction_leaves_the_cache_up_to_its_files(tmp_path, monkeypatch):
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:3])
    assert compact(lake)
    reads = FooterReads(monkeypatch)
    assert plan(lake) == plan_without_cache(lake)
    assert len(reads.files) == len(lake.image_files())  # the copy's, none of the lake's
    convert(lake, COLLECTIONS[:3], ConvertOptions(force=True))
    assert plan(lake) == plan_without_cache(lake)


def records(lake: Lake) -> list:
    return [(p.relative_to(lake.path), sig, meta) for p, sig, meta, _ in partition_records(lake)]


@pytest.mark.parametrize("compacted", [False, True])
def test_the_cache_keeps_no_header_text_and_records_read_the_same_without_it(tmp_path, compacted):
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:3])
    if compacted:
        assert compact(lake)
    text = (lake.path / FOOTERS).read_text()
    assert "%ECSV" not in text and '"table_meta"' not in text
    cached = records(lake)
    (lake.path / FOOTERS).unlink()
    assert records(lake) == cached  # every footer read, the same records
    for _, _, meta in cached:
        assert meta["sources"] and not set(UNCACHED) & set(meta)
    # what the records leave out is in the files' own footers
    footer = pq.read_schema(lake.image_files()[0]).metadata[b"nightlake"].decode()
    assert "%ECSV" in footer


def test_the_previous_form_of_the_cache_counts_as_empty(tmp_path):
    """Format 1 kept each record whole; a cache of it is read as no cache."""
    lake = Lake(tmp_path / "lake")
    convert(lake, COLLECTIONS[:2])
    expected = plan(lake)
    data = json.loads((lake.path / FOOTERS).read_text())
    for entry in data["files"].values():  # right stamps, records that would mislead a plan
        entry["meta"]["sources"] = []
    (lake.path / FOOTERS).write_text(json.dumps({**data, "format": 1}))
    assert plan(lake) == expected
