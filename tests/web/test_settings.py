"""LAKE/serve.toml: defaults, the documented file, each bad input, live changes, and that
convert leaves it alone."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightlake.errors import FormatError
from nightlake.web.settings import (
    DEFAULT_TOML,
    SETTINGS_FILE,
    ServeSettings,
    Threshold,
    load_settings,
)


def test_the_default_file_parses_to_the_defaults(tmp_path):
    (tmp_path / SETTINGS_FILE).write_text(DEFAULT_TOML)
    loaded = load_settings(tmp_path)
    assert loaded.source == tmp_path / SETTINGS_FILE
    defaults = ServeSettings()
    assert (loaded.query_seconds, loaded.row_cap, loaded.download_row_cap) == (
        defaults.query_seconds,
        defaults.row_cap,
        defaults.download_row_cap,
    )
    assert loaded.thresholds == defaults.thresholds


def test_the_guide_shows_the_default_file(repo):
    assert DEFAULT_TOML in (repo / "docs" / "guide.md").read_text()


def test_no_file_means_the_defaults(tmp_path):
    assert load_settings(tmp_path) == ServeSettings()


def test_keys_left_out_keep_their_defaults(tmp_path):
    (tmp_path / SETTINGS_FILE).write_text(
        "format_version = 1\n[limits]\nrow_cap = 5\n[thresholds.sky_bg]\nwarn = 600\n"
    )
    loaded = load_settings(tmp_path)
    assert loaded.row_cap == 5 and loaded.query_seconds == ServeSettings().query_seconds
    assert loaded.thresholds["sky_bg"] == Threshold(warn=600.0, bad=1500.0)


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("format_version = 1\n[limits\n", "not valid TOML"),
        ("[limits]\nrow_cap = 5\n", "no format_version"),
        ("format_version = 2\n", "format_version 2: this nightlake reads format 1"),
        ("format_version = 1\ncolour = 'red'\n", "unknown key colour"),
        ("format_version = 1\n[limits]\nrows = 5\n", "unknown key limits.rows"),
        ("format_version = 1\n[limits]\nrow_cap = 2.5\n", "limits.row_cap = 2.5"),
        ("format_version = 1\n[limits]\nrow_cap = 0\n", "limits.row_cap = 0"),
        ("format_version = 1\n[limits]\nquery_seconds = 'ten'\n", "limits.query_seconds"),
        ("format_version = 1\n[limits]\nquery_seconds = true\n", "limits.query_seconds"),
        ("format_version = 1\nlimits = 3\n", "limits must be a table"),
        ("format_version = 1\n[thresholds.seeing]\nwarn = 1\n", "unknown key thresholds.seeing"),
        ("format_version = 1\n[thresholds.sky_bg]\nwarm = 1\n", "thresholds.sky_bg.warm"),
        ("format_version = 1\n[thresholds.sky_bg]\nbad = nan\n", "thresholds.sky_bg.bad"),
    ],
)
def test_each_bad_file_is_one_error_naming_the_file_and_the_key(tmp_path, text, cause):
    (tmp_path / SETTINGS_FILE).write_text(text)
    with pytest.raises(FormatError) as raised:
        load_settings(tmp_path)
    message = str(raised.value)
    assert message.startswith(str(tmp_path / SETTINGS_FILE) + ":")
    assert cause in message
    assert "\n" not in message


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    (tmp_path / SETTINGS_FILE).write_bytes(b"format_version = 1\n# \xff\n")
    with pytest.raises(FormatError, match="not UTF-8"):
        load_settings(tmp_path)


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(warn=finite, bad=finite, value=finite)
def test_a_threshold_marks_the_worse_side(warn, bad, value):
    """warn < bad: higher is worse; warn > bad: lower is worse (brute force by cases)."""
    level = Threshold(warn=warn, bad=bad).level(value)
    worse = (lambda a, b: a >= b) if warn <= bad else (lambda a, b: a <= b)
    expected = "bad" if worse(value, bad) else "warn" if worse(value, warn) else "ok"
    assert level == expected


@pytest.mark.parametrize("value", [None, float("nan"), float("inf")])
def test_a_missing_value_has_no_level(value):
    assert Threshold(warn=1.0, bad=2.0).level(value) == "none"


def test_the_app_reads_the_file_again_when_it_changes(lake_copy):
    from starlette.testclient import TestClient

    from nightlake.web.app import create_app

    def level(client) -> str:
        row = re.search(r'<tr data-night="20220527">.*?</tr>', client.get("/").text, re.S).group(0)
        return re.search(r'data-col="fwhm" data-level="(\w+)"', row).group(1)

    with TestClient(create_app(lake_copy)) as client:
        assert level(client) == "ok"  # 0.89" against the default warn of 1.3"
        (lake_copy / SETTINGS_FILE).write_text(
            "format_version = 1\n[thresholds.fwhm_arcsec]\nwarn = 0.5\nbad = 0.8\n"
        )
        assert level(client) == "bad"
        (lake_copy / SETTINGS_FILE).write_text("format_version = 9\n")
        page = client.get("/")
        assert page.status_code == 500
        assert "format_version 9" in page.text and "Traceback" not in page.text


def test_convert_leaves_the_settings_alone(lake_copy, fixtures_dir):
    from nightlake import Lake
    from nightlake.ingest.convert import ConvertOptions, convert

    path = lake_copy / SETTINGS_FILE
    path.write_text(DEFAULT_TOML + "# mine\n")
    options = ConvertOptions(force=True)
    report = convert(Lake(lake_copy), [str(fixtures_dir / "collections")], options)
    assert not report.failed
    assert path.read_text() == DEFAULT_TOML + "# mine\n"
