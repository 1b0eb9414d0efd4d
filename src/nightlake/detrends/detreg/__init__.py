"""The DetReg detrend database: the binary file native tools and nightlake share.

``record`` names one record's fields and renders it, ``format`` knows the bytes (FITS header
cards, the C record layouts), ``db`` reads, locks, writes atomically and journals,
``headers`` turns master-image FITS headers into entries.

Names are loaded on first use, so that ``detsearch`` can import :mod:`.record` without numpy.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "record": (
        "ANY_FILTER",
        "OPEN_ENDED",
        "TYPE_CODES",
        "TYPE_NAMES",
        "DetRegRecord",
    ),
    "db": (
        "DetRegDB",
        "DetRegEntry",
        "Selection",
        "add_records",
        "delete_records",
        "init_db",
        "lock_path",
        "locked",
        "read_db",
        "read_journal",
        "register",
        "write_db",
    ),
    "format": ("RECORD_DTYPE", "make_records", "record_dtype"),
    "journal": ("journal_path",),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
