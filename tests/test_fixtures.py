"""The committed fixtures in data/fixtures/: regenerable from their script, shaped like DEEP data.

Expectations come from astropy reading the files and from Table II itself, not from the
generator's own bookkeeping.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import math
import re
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from astropy.table import Table, vstack
from query.astro_lakes import SHARED_DATA  # ../shared/data, or $NIGHTLAKE_SHARED_DATA

from nightlake.sql import load_macros

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
GENERATED = ("collections", "joined", "sharded", "packed", "ecsv")

DEEP_COLUMNS = (
    "dataId std_idx ext_idx std_name collection datasetType visit detector band filter "
    "exposureTime mjd_start mjd object pointing_ra pointing_dec airmass ra dec ra_tl dec_tl "
    "ra_tr dec_tr ra_br dec_br ra_bl dec_bl OBSID DTNSANAM AIRMASS DIMM2SEE GAINA GAINB psfSigma "
    "psfArea nPsfStar zeroPoint skyBg skyNoise meanVar astromOffsetMean astromOffsetStd config "
    "wcs night fieldname"
).split()
INT_COLUMNS = {"std_idx", "ext_idx", "visit", "detector", "nPsfStar"}
STRING_COLUMNS = {
    "dataId",
    "std_name",
    "collection",
    "datasetType",
    "band",
    "filter",
    "object",
    "OBSID",
    "DTNSANAM",
    "config",
    "wcs",
    "night",
    "fieldname",
}


@pytest.fixture(scope="module")
def make_fixtures():
    """``data/fixtures/make_fixtures.py`` imported by path (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_fixtures"] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def _read_committed(path: Path) -> Table:
    return Table.read(path, format="ascii.ecsv")


def read(path: Path) -> Table:
    """astropy's reading of an ECSV file (committed files are parsed once per session)."""
    if path.is_relative_to(FIXTURES):
        return _read_committed(path).copy()
    return Table.read(path, format="ascii.ecsv")


@pytest.fixture(scope="module")
def table_ii() -> dict[tuple[str, str], int]:
    t = read(FIXTURES / "deep_table_II.ecsv")
    return {(str(r["night"]), str(r["field_name"])): int(r["N"]) for r in t}


def collection_files() -> list[Path]:
    return sorted((FIXTURES / "collections").glob("*.collection"))


def assert_same_rows(actual: Table, expected: Table) -> None:
    """Cell-for-cell equality: masks equal, NaN equals NaN, same column order."""
    assert actual.colnames == expected.colnames
    assert len(actual) == len(expected)
    for name in expected.colnames:
        a, e = actual[name], expected[name]
        a_mask, e_mask = np.ma.getmaskarray(a), np.ma.getmaskarray(e)
        np.testing.assert_array_equal(a_mask, e_mask, err_msg=name)
        a_val, e_val = np.asarray(a)[~a_mask], np.asarray(e)[~e_mask]
        if e_val.dtype.kind == "f":
            np.testing.assert_array_equal(a_val, e_val, err_msg=name)  # NaN == NaN here
        else:
            assert a_val.tolist() == e_val.tolist(), name


def test_regenerating_gives_the_committed_bytes(make_fixtures, tmp_path):
    written = make_fixtures.write_fixtures(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in written)
    committed = sorted(
        p.relative_to(FIXTURES) for d in GENERATED for p in (FIXTURES / d).rglob("*") if p.is_file()
    )
    assert fresh == committed, "stale or missing fixtures: run `make fixtures`"
    for rel in fresh:
        assert_same_text_up_to_ulps((tmp_path / rel).read_text(), (FIXTURES / rel).read_text(), rel)


# Floating-point literals in the text; everything between them must match byte for byte.
_FLOAT = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?\d+[eE][-+]?\d+")


def assert_same_text_up_to_ulps(fresh: str, committed: str, name) -> None:
    """Equal texts, but a float may differ in its last bits: numpy's SIMD sin/cos/power give
    results that differ by an ulp between CPUs (AVX2 vs AVX-512), so a regenerated file is
    byte-identical only on the machine that wrote it."""
    assert _FLOAT.split(fresh) == _FLOAT.split(committed), f"{name}: text differs"
    for a, b in zip(_FLOAT.findall(fresh), _FLOAT.findall(committed)):
        assert math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-300), (name, a, b)


def test_the_ulp_comparison_still_sees_real_changes():
    assert_same_text_up_to_ulps("x 1.0000000000000002 y", "x 1.0 y", "same")
    for changed in ("x 1.0001 y", "x 1.0 z", "x 1.0 1.0 y"):
        with pytest.raises(AssertionError):
            assert_same_text_up_to_ulps(changed, "x 1.0 y", "changed")


def test_collections_have_the_deep_columns_in_order(table_ii):
    files = collection_files()
    pairs = [tuple(p.stem.split("_")) for p in files]
    assert len(files) >= 7
    assert len({n for n, _ in pairs}) >= 3 and len({t for _, t in pairs}) >= 3
    assert any(sum(n == night for n, _ in pairs) >= 2 for night, _ in pairs)
    for path, (night, target) in zip(files, pairs):
        assert path.read_text().startswith("# %ECSV 1.0\n")
        t = read(path)
        assert t.colnames == DEEP_COLUMNS, path
        assert set(t["night"]) == {night} and set(t["fieldname"]) == {target}, path
        assert len(t) == 4 * max(2, table_ii[(night, target)] // 10), path
        assert sorted(set(t["detector"])) == [1, 5, 31, 62]
        for name in DEEP_COLUMNS:
            kind = t[name].dtype.kind
            if name in INT_COLUMNS:
                assert t[name].dtype == np.int64, name
            elif name in STRING_COLUMNS:
                assert kind == "U", name
            else:
                assert t[name].dtype == np.float64, name
        assert isinstance(t.meta, dict) and "!!omap" in path.read_text().split("schema:")[0]


def test_rows_are_in_time_order_but_not_sorted_by_detector():
    shuffled = 0
    for path in collection_files():
        t = read(path)
        assert np.all(np.diff(t["mjd"]) >= 0), path
        np.testing.assert_allclose(
            (t["mjd"] - t["mjd_start"]) * 86400, t["exposureTime"] / 2, atol=1e-3
        )
        for exposure in t.group_by("visit").groups:
            assert sorted(exposure["detector"]) == [1, 5, 31, 62]
            assert len(set(exposure["mjd"])) == 1 and len(set(exposure["OBSID"])) == 1
            shuffled += list(exposure["detector"]) != [1, 5, 31, 62]
    assert shuffled > 0


def test_night_and_times_agree_with_table_ii():
    """``night`` is the local date at dusk: UT times before noon are on the next UT date."""
    for path in collection_files():
        t = read(path)
        night = t["night"][0]
        start_mjd = (
            np.datetime64(f"{night[:4]}-{night[4:6]}-{night[6:]}") - np.datetime64("1858-11-17")
        ).astype(int)
        hours = (t["mjd"] - start_mjd) * 24
        assert np.all((hours > 18) & (hours < 36)), path  # between 18h UT and noon next day
        for obsid, dtnsanam in zip(t["OBSID"], t["DTNSANAM"]):
            assert obsid.startswith("ct4m20") and dtnsanam.startswith("c4d_")
            assert obsid[6:12] + obsid[13:19] == dtnsanam[4:10] + dtnsanam[11:17]


def test_wcs_is_a_json_header_unique_per_row_and_config_one_per_file():
    joined = read(FIXTURES / "joined" / "joined.collection")
    lengths = np.array([len(w) for w in joined["wcs"]])
    assert lengths.min() > 2000 and lengths.max() < 3000
    assert len(set(joined["wcs"])) == len(joined)
    header = json.loads(joined["wcs"][0])
    assert header["CTYPE1"] == "RA---TPV" and "PV2_10" in header and "CD1_2" in header
    for path in collection_files():
        t = read(path)
        assert len(set(t["config"])) == 1, path
        assert json.loads(t["config"][0])["collections"] == [t["collection"][0]]
        assert "#" in t["collection"][0] and t["filter"][0] == "VR DECam c0007 6300.0 2600.0"
        np.testing.assert_array_equal(t["airmass"], t["AIRMASS"])


def test_summary_statistics_have_nans_and_masked_objects():
    joined = read(FIXTURES / "joined" / "joined.collection")
    assert np.isnan(joined["psfSigma"]).any() and np.isnan(joined["zeroPoint"]).any()
    assert joined["object"].mask.any() and not joined["object"].mask.all()
    assert (joined["DIMM2SEE"] == 0.0).any()
    zp = joined["zeroPoint"][~np.isnan(joined["zeroPoint"])]
    assert 30.8 < zp.min() and zp.max() < 31.7


def test_joined_and_sharded_hold_the_same_rows_as_the_per_night_files():
    per_night = [read(p) for p in collection_files()]
    joined = read(FIXTURES / "joined" / "joined.collection")
    # joined.collection holds the pairs in file-name order, which is FIXTURE_PAIRS order
    assert_same_rows(joined, vstack(per_night, metadata_conflicts="silent"))
    for t in per_night:
        night, target = t["night"][0], t["fieldname"][0]
        shard_dir = FIXTURES / "sharded" / target / night
        shards = [read(shard_dir / f"{night}_{target}_{d}.collection") for d in (1, 5, 31, 62)]
        for d, shard in zip((1, 5, 31, 62), shards):
            assert set(shard["detector"]) == {d}
        gathered = vstack(shards, metadata_conflicts="silent")
        gathered = gathered[np.argsort(gathered["std_idx"], kind="stable")]
        assert_same_rows(gathered, t)


def test_packed_file_unpacks_to_its_per_night_source():
    packed_files = sorted((FIXTURES / "packed").glob("*.collection"))
    assert packed_files
    for path in packed_files:
        packed = read(path)
        source = read(FIXTURES / "collections" / path.name)
        assert packed.meta["is_packed"] is True
        shared = packed.meta["shared_cols"]
        assert {"config", "night", "fieldname", "filter", "collection"} <= set(shared)
        assert not set(shared) & set(packed.colnames)
        for name in shared:
            value = packed.meta[name]
            column = np.full(len(packed), value)  # numpy infers int64 / float64 / str
            packed.add_column(column, name=name, index=DEEP_COLUMNS.index(name))
        assert_same_rows(packed, source)


def test_demo_query_reproduces_numpy_medians(repo):
    joined = read(FIXTURES / "joined" / "joined.collection")
    images = pa.table(
        {
            "psfSigma": np.asarray(joined["psfSigma"]),
            "zeroPoint": np.asarray(joined["zeroPoint"]),
            "visit": np.asarray(joined["visit"]),
            "night": joined["night"].tolist(),
            "target": joined["fieldname"].tolist(),
        }
    )
    con = duckdb.connect()
    load_macros(con)
    con.register("images", images)
    result = con.sql((repo / "data" / "fixtures" / "demo_nightly.sql").read_text()).fetchall()
    groups = sorted({(n, t) for n, t in zip(joined["night"], joined["fieldname"])})
    assert [(r[0], r[1]) for r in result] == groups
    for night, target, images_n, exposures, fwhm, zp in result:
        sel = (joined["night"] == night) & (joined["fieldname"] == target)
        sigma = np.asarray(joined["psfSigma"][sel])
        assert images_n == sel.sum() and exposures == len(set(joined["visit"][sel]))
        expected_fwhm = np.median(sigma[~np.isnan(sigma)]) * 2.355 * 0.2637
        assert fwhm == pytest.approx(expected_fwhm, abs=0.005 + 1e-9)
        assert zp == pytest.approx(np.nanmedian(joined["zeroPoint"][sel]), abs=0.0005 + 1e-9)


def test_demo_seeing_follows_table_ii(table_ii):
    """Median FWHM per night/field is close to the paper's mean seeing ``theta``."""
    theta = {
        (str(r["night"]), str(r["field_name"])): r["theta"]
        for r in read(FIXTURES / "deep_table_II.ecsv")
    }
    for path in collection_files():
        t = read(path)
        key = (t["night"][0], t["fieldname"][0])
        fwhm = np.nanmedian(t["psfSigma"]) * 2.355 * 0.2637
        assert fwhm == pytest.approx(theta[key], rel=0.15), key


def test_a_real_head_is_the_start_of_a_real_file_with_its_header(make_fixtures):
    """The committed head is the original's header and first rows; astropy reads it."""
    for name, rows in make_fixtures.REAL_HEADS.items():
        head = FIXTURES / "real" / name.replace(".ecsv", "_head.ecsv")
        text = head.read_bytes()
        assert make_fixtures.real_head(text + b"more\nrows\n", rows) == text
        assert len(Table.read(head, format="ascii.ecsv")) == rows


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no ../shared/data next to this checkout")
def test_real_files_are_unchanged_copies(make_fixtures):
    assert (FIXTURES / "deep_table_II.ecsv").read_bytes() == (
        SHARED_DATA / "deep_table_II.ecsv"
    ).read_bytes()
    for name in ("missing_data", "table_IV_V", "refcats_ps1", "exposures_object_raw"):
        committed = (FIXTURES / "real" / f"{name}.ecsv").read_bytes()
        assert committed == (SHARED_DATA / "deep_processing" / f"{name}.ecsv").read_bytes(), name
    for name, rows in make_fixtures.REAL_HEADS.items():
        original = (SHARED_DATA / "deep_processing" / name).read_bytes()
        head = (FIXTURES / "real" / name.replace(".ecsv", "_head.ecsv")).read_bytes()
        assert original.startswith(head) and head == make_fixtures.real_head(original, rows)


@pytest.mark.parametrize("night", ["20201020", "20220527", "20210510"])
def test_visits_are_unique_within_a_night_even_where_table_ii_ranges_interleave(
    make_fixtures, night, table_ii
):
    """At full scale every exposure of the night gets its own visit number and time slot."""
    visits, starts = [], []
    for (n, target), count in table_ii.items():
        if n == night:
            t = make_fixtures.deep_collection(
                night, target, count, [1], make_fixtures.pair_rng(night, target)
            )
            visits += t["visit"].tolist()
            starts += t["mjd_start"].tolist()
    assert len(set(visits)) == len(visits) == sum(c for (n, _), c in table_ii.items() if n == night)
    order = np.argsort(starts)
    assert np.all(np.diff(np.asarray(visits)[order]) > 0)  # numbered in time order
    assert np.all(np.diff(np.sort(starts)) * 86400 >= 119.9)  # no two exposures overlap


def test_write_survey_covers_every_table_ii_pair(make_fixtures, tmp_path, table_ii):
    (path,) = make_fixtures.write_survey(tmp_path, scale=0.01, detectors=[7], layout="joined")
    t = read(path)
    assert t.colnames == DEEP_COLUMNS
    assert len(t) == sum(max(1, round(n * 0.01)) for n in table_ii.values())
    assert set(zip(t["night"], t["fieldname"])) == set(table_ii)
    assert set(t["detector"]) == {7}


def test_write_shards_matches_astropy_writing_each_slice(make_fixtures, tmp_path):
    table = make_fixtures.deep_collection(
        "20190402", "A0b", 3, [62, 1, 5], make_fixtures.pair_rng("20190402", "A0b", salt=9)
    )
    paths = make_fixtures.write_shards(table, tmp_path, "20190402", "A0b")
    assert [p.name for p in paths] == [f"20190402_A0b_{d}.collection" for d in (1, 5, 62)]
    for d, path in zip((1, 5, 62), paths):
        buffer = io.StringIO()
        table[table["detector"] == d].write(buffer, format="ascii.ecsv")
        assert path.read_text() == buffer.getvalue()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # numpy fill
def test_all_types_file_covers_every_ecsv_datatype():
    path = FIXTURES / "ecsv" / "all_types.ecsv"
    header = [line for line in path.read_text().splitlines() if line.startswith("# - {name:")]
    datatypes = {line.split("datatype: ")[1].split(",")[0].rstrip("}") for line in header}
    assert datatypes == {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "string",
    }
    t = read(path)
    assert t["uint64"][2] == np.iinfo(np.uint64).max and t["int64"][0] == np.iinfo(np.int64).min
    assert t["text"][0] == "#not a comment"
    assert t["text"].mask.tolist() == [False, True, False, True]  # "" reads back as missing
    assert t["json"][1] is None and t["json"][2] == [1, 2, {"b": None}]
    assert t["shape"].shape == (4, 3, 2) and [len(v) for v in t["varlen"]] == [3, 1, 0, 2]
    assert t["when"].scale == "utc" and t["when"][2].isot == "2016-12-31T23:59:60.000"
    assert t["mjd_tai"].scale == "tai" and str(t["angle"].unit) == "deg"
