"""Column names: the one rule that makes repeated names unique.

DuckDB compares names case-insensitively, so ``AIRMASS`` and ``airmass`` clash. The rule is
DuckDB's own as it reads a table with a repeated header (``read_csv`` of ``a,a_1,a`` gives
``a, a_1, a_1_1``): the first spelling keeps its name; a later one gets ``_<n>``, its count
so far, and a suffixed name that is itself taken is suffixed again. ``convert`` names lake
columns by it and the JSON/astropy outputs name result keys by it, so a column is called
the same in the lake, in DuckDB and in every output. (DuckDB's binder, for ``SELECT *`` over
a subquery, suffixes differently — ``a_2`` — but the lake's names are written once, on
disk, by this rule, and must not change under an existing lake.)
"""

from __future__ import annotations

from collections.abc import Iterable


def unique_names(names: Iterable[str]) -> list[str]:
    """``names`` with each case-insensitive repeat renamed (``[a, a_1, a]`` → ``a_1_1``)."""
    taken: dict[str, int] = {}

    def unique(name: str) -> str:
        low = name.lower()
        if low not in taken:
            taken[low] = 0
            return name
        taken[low] += 1
        return unique(f"{name}_{taken[low]}")

    return [unique(name) for name in names]
