"""Running user SQL on a lake connection: bound parameters, the read-only rule, error lines.

``nightlake sql`` (and :meth:`nightlake.Lake.sql`) run whatever SQL a user types, so three
things are settled here once:

* parameters: ``-p night=20190402`` becomes ``$night``, bound by DuckDB, never formatted
  into the text; values bind as SQL string literals, which DuckDB casts where the context
  needs a number (``detector = $det``); cast explicitly in arithmetic (``$n::INT + 1``);
* read-only: a query may read anything and build temporary tables, but no statement may
  write files (``COPY … TO``, ``EXPORT DATABASE``, a writable ``ATTACH``, extensions, or the
  settings that point DuckDB's own files somewhere) — so it cannot modify the lake;
* errors: DuckDB's multi-line message becomes one line that keeps the position
  (``line 2, column 8``) of the offending token.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from nightlake.errors import QueryError, UsageError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

#: Rows per Arrow record batch when streaming results (bounded memory for wide rows: the
#: ``wcs`` column alone is ~2.4 kB a row).
BATCH_ROWS = 10_000

_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Settings that make DuckDB write files of its own, or lift the file-access rules.
_FILE_SETTINGS = frozenset(
    {
        "temp_directory",
        "profiling_output",
        "profile_output",
        "secret_directory",
        "extension_directory",
        "home_directory",
        "log_query_path",
        "enable_external_access",
        "allowed_directories",
        "allowed_paths",
        "lock_configuration",
        "allow_unsigned_extensions",
        "allow_community_extensions",
        "custom_extension_repository",
        "autoinstall_extension_repository",
    }
)
#: Functions that write files when called.
_FILE_FUNCTIONS = frozenset({"enable_logging"})

READ_ONLY_HINT = "nightlake sql is read-only; write results with -o FILE or `nightlake export`"


def parse_params(items: Iterable[str]) -> dict[str, str]:
    """``["night=20190402", "det=5"]`` → ``{"night": "20190402", "det": "5"}`` (for ``$night``)."""
    params: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().lstrip("$")
        if not sep or not _PARAM_NAME.match(name):
            raise UsageError(
                f"bad parameter {item!r}: expected NAME=VALUE with NAME a SQL identifier "
                "(e.g. -p night=20190402 for $night)"
            )
        if name in params:
            raise UsageError(f"parameter {name!r} given twice")
        params[name] = value
    return params


def _tokens(text: str) -> list[str]:
    """The words, strings and operators of ``text`` as DuckDB's tokenizer splits them."""
    import duckdb

    spans = duckdb.tokenize(text)
    words = []
    for i, (start, kind) in enumerate(spans):
        end = spans[i + 1][0] if i + 1 < len(spans) else len(text)
        word = text[start:end].strip()
        if kind == duckdb.token_type.comment:
            continue
        if kind == duckdb.token_type.string_const:
            words.append(word)  # keep the quotes: a string is never a keyword
        else:
            # one token may run up to the next (e.g. "x," ): keep the leading word only
            match = re.match(r'[A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")*"|\S', word)
            words.append(match.group(0) if match else word)
    return words


def _write_reason(words: list[str]) -> str | None:
    """Why a statement (as tokens) may write files, or None when it only reads."""
    upper = [w.upper() for w in words]
    if not upper:
        return None
    head = upper[0]
    if head == "COPY" and "TO" in upper:
        return "COPY … TO writes files"
    if head == "EXPORT":
        return "EXPORT DATABASE writes files"
    if head in ("INSTALL", "LOAD") or (head == "FORCE" and "INSTALL" in upper):
        return "installing or loading extensions is not allowed"
    if head == "ATTACH" and "READ_ONLY" not in upper and "':MEMORY:'" not in upper:
        return "ATTACH may create or modify a database file (add (READ_ONLY))"
    if head in ("SET", "RESET", "PRAGMA"):
        names = {w.lower() for w in words[1:4]}
        hit = names & _FILE_SETTINGS
        if hit:
            return f"changing {sorted(hit)[0]} is not allowed"
    used = {w.lower() for w in words} & _FILE_FUNCTIONS
    if used:
        return f"{sorted(used)[0]} writes files"
    return None


def parse_statements(query: str) -> list:
    """DuckDB's statements of ``query``; a syntax error becomes :class:`QueryError`."""
    import duckdb

    try:
        return duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(error_message(exc, query)) from exc


def check_read_only(query: str, statements: list | None = None) -> None:
    """Raise :class:`QueryError` when a statement of ``query`` could write files.

    ``statements``: ``query`` already split by DuckDB (saves parsing it again).
    """
    for statement in parse_statements(query) if statements is None else statements:
        reason = _write_reason(_tokens(statement.query))
        if reason:
            snippet = " ".join(statement.query.split())[:60]
            raise QueryError(f"statement refused ({reason}): {snippet!r}; {READ_ONLY_HINT}")


def check_params(query: str, params: Mapping[str, Any], statements: list | None = None) -> None:
    """Every ``$name`` of the query has a value, and every value has a ``$name``."""
    used: set[str] = set()
    for statement in parse_statements(query) if statements is None else statements:
        used |= set(statement.named_parameters)
    missing = sorted(used - set(params))
    if missing:
        raise UsageError(
            f"the query uses ${missing[0]} but no value was given (add -p {missing[0]}=VALUE)"
        )
    unused = sorted(set(params) - used)
    if unused:
        raise UsageError(
            f"parameter {unused[0]!r} is not used by the query (no ${unused[0]} in it)")


_LINE_RE = re.compile(r"^LINE (\d+): (.*)$")


def error_message(exc: BaseException, query: str | None = None) -> str:
    """DuckDB's message on one line, with ``(line L, column C)`` when it points at a token.

    DuckDB shows the position as a quoted source line with a caret line under it, cutting
    long lines to a window marked by ``...``; the column is found back in ``query``.
    """
    lines = str(exc).splitlines()
    head: list[str] = []
    position = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _LINE_RE.match(line)
        if match and i + 1 < len(lines) and "^" in lines[i + 1]:
            line_no = int(match.group(1))
            shown = match.group(2)
            caret = lines[i + 1].index("^") - (len(line) - len(shown))
            column = caret + 1
            if query is not None:
                source_lines = query.splitlines() or [""]
                if 1 <= line_no <= len(source_lines):
                    cut = 3 if shown.startswith("...") else 0
                    window = shown[cut:].removesuffix("...")
                    at = source_lines[line_no - 1].find(window)
                    if at >= 0:
                        column = at + caret - cut + 1
            position = f" (line {line_no}, column {column})"
            i += 2
            continue
        if line.strip():
            head.append(line.strip())
        i += 1
    return "; ".join(head) + position


_PROBE = "PREPARE nightlake_probe AS "
_POSITION = re.compile(r" \(line (\d+), column (\d+)\)$")


def _shift(message: str, query: str, text: str, start: int) -> str:
    """A position in statement ``text`` (at ``start`` of ``query``) as a position in ``query``."""
    match = _POSITION.search(message)
    if not match or start < 0:
        return message
    line_no, column = int(match.group(1)), int(match.group(2))
    before = query[:start]
    if line_no == 1:
        column += start - (before.rfind("\n") + 1)
    line_no += before.count("\n")
    return message[: match.start()] + f" (line {line_no}, column {column})"


def _probe_position(con, message: str, text: str) -> str:
    """Add a position to ``message`` by preparing ``text`` again (binding only, nothing runs).

    Binder errors raised through ``con.sql`` come without DuckDB's ``LINE n:`` context;
    ``PREPARE`` gives it back. Used only when the probe fails with the very same message.
    """
    import duckdb

    if _POSITION.search(message):
        return message
    try:
        con.execute(_PROBE + text)
        con.execute("DEALLOCATE nightlake_probe")
        return message
    except duckdb.Error as probe:
        located = error_message(probe, _PROBE + text)
    match = _POSITION.search(located)
    if not match or not located.startswith(message.split("; ")[0]):
        return message
    line_no, column = int(match.group(1)), int(match.group(2))
    if line_no == 1:
        column -= len(_PROBE)
    return f"{message} (line {line_no}, column {column})"


def _statements(query: str, parsed: list) -> list[tuple[str, int, set[str]]]:
    """The ``parsed`` statements of ``query``: (text, offset in ``query``, its ``$parameters``)."""
    found, at = [], 0
    for statement in parsed:
        text = statement.query.strip().rstrip(";").rstrip()
        start = query.find(text, at)
        if start >= 0:
            at = start + len(text)
        found.append((text, start, set(statement.named_parameters)))
    return found


def stream(
    con: "duckdb.DuckDBPyConnection",
    query: str,
    params: Mapping[str, Any] | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
) -> "pa.RecordBatchReader":
    """Run ``query`` read-only and stream its result as Arrow record batches.

    A script's statements run in order, each with the parameters it names, and the last
    one's rows are streamed; a last statement without rows gives an empty stream. DuckDB
    errors, also those raised while the batches are read, become :class:`QueryError` with
    the position in ``query``.
    """
    import duckdb
    import pyarrow as pa

    params = dict(params or {})
    parsed = parse_statements(query)  # once, for the checks and the statements
    check_read_only(query, parsed)
    check_params(query, params, parsed)
    statements = _statements(query, parsed)
    if not statements:
        return pa.RecordBatchReader.from_batches(pa.schema([]), [])
    for text, start, names in statements[:-1]:
        try:
            con.execute(text, {k: params[k] for k in names} or None)
        except duckdb.Error as exc:
            raise QueryError(_shift(error_message(exc, text), query, text, start)) from exc
    text, start, names = statements[-1]
    try:
        relation = con.sql(text, params={k: params[k] for k in names} or None)
        if relation is None:
            return pa.RecordBatchReader.from_batches(pa.schema([]), [])
        reader = relation.to_arrow_reader(batch_rows)
    except duckdb.Error as exc:
        message = _probe_position(con, error_message(exc, text), text)
        raise QueryError(_shift(message, query, text, start)) from exc
    return pa.RecordBatchReader.from_batches(reader.schema, _checked(reader, text, query, start))


def _checked(reader: "pa.RecordBatchReader", text: str, query: str,
             start: int) -> Iterator["pa.RecordBatch"]:
    import duckdb
    import pyarrow as pa

    try:
        yield from reader
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        # DuckDB's errors during the stream surface through Arrow's C stream as OSError
        raise QueryError(_shift(error_message(exc, text), query, text, start)) from exc


def open_connection(lake) -> "duckdb.DuckDBPyConnection":
    """``lake.connect()`` for running user SQL: DuckDB's own progress bar off (it would print
    into the results on standard output); ``query_progress()`` still reports progress."""
    con = lake.connect()
    con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")
    return con


def init_script(lake) -> str:
    """SQL defining ``lake``'s views and every macro, for DuckDB clients without nightlake.

    Run it with ``duckdb -init init.sql`` or ``con.execute(text)``; paths are absolute.
    """
    from nightlake import __version__
    from nightlake.astro import obscore_view_sql  # a view over images, defined by a macro
    from nightlake.errors import LakeError
    from nightlake.sql import macro_sql

    if not lake.path.is_dir():
        raise LakeError(f"{lake.path}: no lake here")
    views = lake.view_sql()
    return "\n".join([
        f"-- nightlake {__version__}: views and macros of the lake {lake.path.resolve()}",
        "-- Use: duckdb -init init.sql   or   duckdb.connect().execute(open('init.sql').read())",
        views if views else "-- (the lake has no partitions yet: no views)",
        macro_sql(),
        obscore_view_sql(lake),
    ])
