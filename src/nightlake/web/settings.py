"""The settings of ``nightlake serve``: ``LAKE/serve.toml``, written by hand, read by the app.

::

    LAKE/
      serve.toml          optional; every key optional; nightlake never writes it
                          (convert and sync leave it alone), the app re-reads it when it changes

The file with every key at its default is :data:`DEFAULT_TOML` (shown in docs/guide.md).
A threshold whose ``warn`` is below ``bad`` marks values at or above ``warn`` (lower is
better); one whose ``warn`` is above ``bad`` marks values at or below it (higher is better).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from nightlake.errors import FormatError
from nightlake.files import file_stamp

SETTINGS_FILE = "serve.toml"
#: ``format_version`` of serve.toml; a file of a newer version is refused with a hint.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Threshold:
    """When a value is worth a look (``warn``) and when it is bad (``bad``)."""

    warn: float
    bad: float

    def level(self, value: float | None) -> str:
        """``ok``, ``warn``, ``bad``, or ``none`` for a missing value."""
        if value is None or not math.isfinite(value):
            return "none"
        sign = 1.0 if self.warn <= self.bad else -1.0  # higher is worse, or lower is worse
        if sign * value >= sign * self.bad:
            return "bad"
        if sign * value >= sign * self.warn:
            return "warn"
        return "ok"


def _default_thresholds() -> dict[str, Threshold]:
    return {
        "fwhm_arcsec": Threshold(warn=1.3, bad=1.8),
        "zero_point": Threshold(warn=31.3, bad=31.0),
        "sky_bg": Threshold(warn=800.0, bad=1500.0),
    }


@dataclass(frozen=True)
class ServeSettings:
    """What ``serve.toml`` sets (the defaults when it is absent)."""

    query_seconds: float = 10.0
    row_cap: int = 1000
    download_row_cap: int = 1_000_000
    thresholds: dict[str, Threshold] = field(default_factory=_default_thresholds)
    #: where these came from (None: the defaults, no file)
    source: Path | None = None


#: serve.toml with every key at its default (docs/guide.md shows it; a test holds them equal).
DEFAULT_TOML = """\
format_version = 1

[limits]
query_seconds = 10.0        # a /sql query is interrupted after this many seconds
row_cap = 1000              # rows shown on the /sql page (download the rest)
download_row_cap = 1000000  # a .csv/.parquet/.json download with more rows is refused

[thresholds.fwhm_arcsec]    # median seeing FWHM of a night (arcsec); lower is better
warn = 1.3
bad = 1.8

[thresholds.zero_point]     # median zero point (mag); higher is better: warn > bad
warn = 31.3
bad = 31.0

[thresholds.sky_bg]         # median sky background (skyBg, counts); lower is better
warn = 800.0
bad = 1500.0
"""

_LIMITS = {f.name: f.type for f in fields(ServeSettings) if f.name not in ("thresholds", "source")}


def settings_path(lake_path: str | os.PathLike[str]) -> Path:
    return Path(lake_path) / SETTINGS_FILE


def load_settings(lake_path: str | os.PathLike[str]) -> ServeSettings:
    """The settings of the lake at ``lake_path``: its serve.toml, or the defaults."""
    import tomllib

    path = settings_path(lake_path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return ServeSettings()
    except UnicodeDecodeError:
        raise FormatError(path, "not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FormatError(path, f"not valid TOML ({exc})") from None
    return parse_settings(data, path)


def parse_settings(data: dict[str, Any], path: Path) -> ServeSettings:
    """Check the parsed TOML of ``path`` key by key; every mistake names the key."""
    version = data.get("format_version")
    if version is None:
        raise FormatError(
            path, f"no format_version; add the line: format_version = {FORMAT_VERSION}"
        )
    if version != FORMAT_VERSION:
        raise FormatError(
            path,
            f"format_version {version!r}: this nightlake reads format {FORMAT_VERSION} "
            "(upgrade nightlake, or rewrite the file from docs/guide.md)",
        )
    _no_unknown(data, {"format_version", "limits", "thresholds"}, "", path)
    settings = ServeSettings(source=path)
    limits = _table(data, "limits", path)
    _no_unknown(limits, set(_LIMITS), "limits.", path)
    values = {name: _number(limits[name], f"limits.{name}", path) for name in limits}
    for name in ("row_cap", "download_row_cap"):
        if name in values:
            if values[name] != int(values[name]) or values[name] < 1:
                raise FormatError(
                    path, f"limits.{name} = {limits[name]!r}: expected a whole number ≥ 1"
                )
            values[name] = int(values[name])
    settings = replace(settings, **values)
    thresholds = dict(settings.thresholds)
    given = _table(data, "thresholds", path)
    _no_unknown(given, set(thresholds), "thresholds.", path)
    for name in given:
        table = _table(given, name, path, prefix="thresholds.")
        _no_unknown(table, {"warn", "bad"}, f"thresholds.{name}.", path)
        old = thresholds[name]
        thresholds[name] = Threshold(
            warn=_number(
                table.get("warn", old.warn), f"thresholds.{name}.warn", path, positive=False
            ),
            bad=_number(table.get("bad", old.bad), f"thresholds.{name}.bad", path, positive=False),
        )
    return replace(settings, thresholds=thresholds)


def _table(data: dict[str, Any], key: str, path: Path, prefix: str = "") -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise FormatError(path, f"{prefix}{key} must be a table ([{prefix}{key}])")
    return value


def _no_unknown(data: dict[str, Any], known: set[str], prefix: str, path: Path) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise FormatError(
            path, f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})"
        )


def _number(value: Any, key: str, path: Path, *, positive: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        expected = "a number > 0" if positive else "a finite number"
        raise FormatError(path, f"{key} = {value!r}: expected {expected}")
    return float(value)


class SettingsFile:
    """The lake's settings, read again whenever serve.toml changes (size, mtime, inode)."""

    def __init__(self, lake_path: str | os.PathLike[str]) -> None:
        import threading

        self.path = settings_path(lake_path)
        self._lake_path = lake_path
        self._cached: tuple[Any, ServeSettings] | None = None
        self._lock = threading.Lock()

    def current(self) -> ServeSettings:
        stamp = file_stamp(self.path)
        with self._lock:
            if self._cached is None or self._cached[0] != stamp:
                self._cached = (stamp, load_settings(self._lake_path))
            return self._cached[1]
