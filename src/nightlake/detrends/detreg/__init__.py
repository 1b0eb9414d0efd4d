"""The DetReg detrend database: the binary file native tools and nightlake share.

``format`` knows the bytes (FITS header cards, the C record layouts), ``db`` reads, locks,
writes atomically and journals, ``headers`` turns master-image FITS headers into entries.
"""

from __future__ import annotations

from nightlake.detrends.detreg.db import (
    DetRegDB,
    DetRegEntry,
    Selection,
    add_records,
    delete_records,
    init_db,
    lock_path,
    locked,
    read_db,
    read_journal,
    register,
    write_db,
)
from nightlake.detrends.detreg.format import (
    ANY_FILTER,
    OPEN_ENDED,
    RECORD_DTYPE,
    TYPE_CODES,
    TYPE_NAMES,
    make_records,
    record_dtype,
)
from nightlake.detrends.detreg.journal import journal_path

__all__ = [
    "ANY_FILTER",
    "OPEN_ENDED",
    "RECORD_DTYPE",
    "TYPE_CODES",
    "TYPE_NAMES",
    "DetRegDB",
    "DetRegEntry",
    "Selection",
    "add_records",
    "delete_records",
    "init_db",
    "journal_path",
    "lock_path",
    "locked",
    "make_records",
    "read_db",
    "read_journal",
    "record_dtype",
    "register",
    "write_db",
]
