"""Running user SQL on a lake connection: bound parameters, the read-only rule, error lines.

``nightlake sql`` (and :meth:`nightlake.Lake.sql`) run whatever SQL a user types, so three
things are settled here once:

* parameters: ``-p night=20190402`` becomes ``$night``, bound by DuckDB, never formatted
  into the text; values bind as SQL string literals, which DuckDB casts where the context
  needs a number (``detector = $det``); cast explicitly in arithmetic (``$n::INT + 1``);
* read-only: a query may read anything and build temporary tables, but no statement may
  write files or change settings. DuckDB decides, not the words of the query: the parsed
  statement types against an allowlist (:func:`check_read_only`), the plan of each statement
  right before it runs (:func:`check_plan`: a COPY may hide in a CTE, a view or a macro, and
  only table functions known to read may be called), an ATTACH that nightlake builds and
  whose result it reads in DuckDB's own catalog (:func:`attach_statement`,
  :func:`check_attached`), and a connection that cannot install or load extensions, keeps no
  secrets on disk and has its configuration locked (:func:`lock_down`) — so a query cannot
  modify the lake. One check reads DuckDB's tokens instead (:func:`_call_reason`): SQL given
  as a value is bound again when it runs, so a plan checked before is not proof of the plan
  run, and DuckDB has no setting that turns a function off;
* errors: DuckDB's multi-line message becomes one line that keeps the position
  (``line 2, column 8``) of the offending token.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.errors import QueryError, ReadOnlyError, UsageError
from nightlake.sql import sql_identifier, sql_string

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

#: Rows per Arrow record batch when streaming results (bounded memory for wide rows: the
#: ``wcs`` column alone is ~2.4 kB a row).
BATCH_ROWS = 10_000

_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Statement types that only read, or change nothing but the in-memory connection (temporary
#: tables, read-only attaches); their inner parts are vetted further below. Everything else
#: (COPY, EXPORT, INSTALL/LOAD, SET/RESET, PRAGMA, CALL, PREPARE/EXECUTE, ALTER, VACUUM, …)
#: is refused by type, so a new kind of statement is refused until it is looked at.
_ALLOWED_TYPES = frozenset(
    {
        "SELECT",
        "EXPLAIN",
        "CREATE",
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE_INTO",
        "DROP",
        "TRANSACTION",
        "ATTACH",
        "DETACH",
    }
)
#: Why a statement type is refused (the rest: "<TYPE> statements are not allowed").
_TYPE_REASONS = {
    "COPY": "COPY writes files",
    "COPY_DATABASE": "COPY DATABASE writes files",
    "EXPORT": "EXPORT DATABASE writes files",
    "LOAD": "installing or loading extensions is not allowed",
    "SET": "settings are locked",
    "PRAGMA": "PRAGMA changes settings; use SELECT * FROM pragma_…(…) to read",
    "CALL": "CALL runs functions for their effects; use SELECT * FROM f(…) to read",
    "PREPARE": "PREPARE is not allowed; bind values with -p NAME=VALUE",
    "EXECUTE": "EXECUTE is not allowed; bind values with -p NAME=VALUE",
}
#: The words of a refusal where the type DuckDB parses a statement as names it wrongly
#: (CHECKPOINT is a CALL, ANALYZE a VACUUM, USE and RESET a SET), by the statement's first
#: keyword: the message only; the type refuses it.
_KEYWORD_REASONS = {
    "CHECKPOINT": "CHECKPOINT writes the database",  # FORCE CHECKPOINT too
    "ANALYZE": "ANALYZE changes the database's statistics",
    "VACUUM": "VACUUM changes the database",
    "USE": "USE changes the default database; name the table in full (db.table)",
    "UPDATE": "UPDATE EXTENSIONS installs extensions, which is not allowed",
}
#: Objects a query may CREATE or DROP (in the in-memory database or a ``:memory:`` attach).
_OBJECTS = frozenset({"TABLE", "VIEW", "MACRO", "FUNCTION", "SEQUENCE", "TYPE", "SCHEMA", "INDEX"})
_CREATE_PREFIX = frozenset({"OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE"})
#: Query nodes of a SELECT that read (a CTE may hold a COPY or an INSERT: refused).
_READ_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
#: How far past EXPLAIN its options may reach before the explained statement starts.
_EXPLAIN_OPTION_TOKENS = 32
_TRUE = frozenset({"", "true", "1", "on"})

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


def _statement_type(statement) -> str:
    try:
        return statement.type.name
    except ValueError:  # a type this duckdb module has no name for (UPDATE EXTENSIONS)
        return "UNKNOWN"


def _words(text: str) -> list[tuple[int, str, str]]:
    """``text`` as DuckDB's tokenizer splits it: (offset, kind, word), comments left out.

    Keywords and identifiers are upper-cased, with quotes removed from quoted identifiers;
    string constants keep their quotes.
    """
    import duckdb

    spans = duckdb.tokenize(text)
    words = []
    for i, (start, kind) in enumerate(spans):
        if kind == duckdb.token_type.comment:
            continue
        end = spans[i + 1][0] if i + 1 < len(spans) else len(text)
        raw = text[start:end].strip()
        if kind == duckdb.token_type.string_const:
            words.append((start, "string", raw))
            continue
        # one token may run up to the next (e.g. "x," ): keep the leading word only
        match = re.match(r'[A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")*"|\S', raw)
        word = match.group(0) if match else raw
        if word.startswith('"'):
            word = word[1:-1].replace('""', '"')
        words.append((start, kind.name, word.upper()))
    return words


def _object_reason(words: list[str]) -> str | None:
    """CREATE/DROP: only catalog objects of the in-memory database, never secrets."""
    verb = words[0] if words else ""
    rest = words[1:]
    while verb == "CREATE" and rest and rest[0] in _CREATE_PREFIX:
        rest = rest[1:]
    kind = rest[0] if rest else ""
    if verb in ("CREATE", "DROP") and kind in _OBJECTS:
        return None
    if "SECRET" in words[:6]:
        return "secrets are not allowed"
    return f"{verb} {kind}".strip() + " is not allowed"


def _attach_reason(text: str) -> str | None:
    """ATTACH only read-only (by its parsed options) or of a new in-memory database, its path
    one string literal (DuckDB takes an expression there, which could pick any path). What
    runs is not the user's text but :func:`attach_statement` of it, and
    :func:`check_attached` checks the result in the engine's own catalog."""
    parts = _attach_parts(text)
    return parts if isinstance(parts, str) else None


def attach_statement(text: str) -> str:
    """The ATTACH that runs for the user's ATTACH ``text`` (checked by :func:`_attach_reason`):
    built from its path literal and alias alone, ``(READ_ONLY)`` for a file. The user's option
    text never runs: DuckDB reads option values this check could read otherwise (``READ_ONLY
    1e-400`` is false to DuckDB)."""
    parts = _attach_parts(text)
    if isinstance(parts, str):
        raise ReadOnlyError(_refused(parts, text))
    if_not_exists, path, alias, memory = parts
    return (
        f"ATTACH {'IF NOT EXISTS ' if if_not_exists else ''}{path}"
        f"{f' AS {alias}' if alias else ''}{'' if memory else ' (READ_ONLY)'}"
    )


_ALIAS = re.compile(r'[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+"')


def _attach_parts(text: str) -> tuple[bool, str, str | None, bool] | str:
    """(IF NOT EXISTS, the path literal as written, the alias as written or None, whether it
    is ``':memory:'``) of an ATTACH, or why it is refused."""
    import duckdb

    spans = duckdb.tokenize(text)
    tokens = [  # (kind, raw text, word as _words reads it), comments left out
        (kind, text[at : _next_start(spans, at, text)].strip(), word)
        for at, kind, word in _words(text)
    ]
    while tokens and tokens[-1][2] == ";":
        tokens.pop()
    at = 1
    if at < len(tokens) and tokens[at][2] == "DATABASE":
        at += 1
    if_not_exists = [t[2] for t in tokens[at : at + 3]] == ["IF", "NOT", "EXISTS"]
    at += 3 * if_not_exists
    path = tokens[at] if at < len(tokens) else None
    rest = [t[2] for t in tokens[at + 1 :]]
    if path is None or path[0] != "string":
        return "ATTACH's path must be one string literal"
    alias = None
    if rest[:1] == ["AS"]:
        alias = tokens[at + 2][1] if len(rest) > 1 else ""
        if not _ALIAS.fullmatch(alias):
            return "ATTACH's alias must be a name"
        rest = rest[2:]
    memory = path[2] == "':memory:'"
    if rest and rest[0] != "(":
        return "ATTACH's path must be one string literal"
    if memory:
        return if_not_exists, path[1], alias, True
    # Only READ_ONLY (or READONLY), true, and nothing else: DuckDB takes READ_WRITE too, and
    # the last of them wins, so an option this check does not know is refused.
    if not rest or rest[-1] != ")":
        return "ATTACH without (READ_ONLY) may create or modify a database file"
    options: list[list[str]] = [[]]
    depth = 0
    for word in rest[1:-1]:
        depth += (word == "(") - (word == ")")
        if word == "," and depth == 0:
            options.append([])
        else:
            options[-1].append(word.strip("'").lower())
    for option in options:
        name, value = (option[0] if option else ""), " ".join(option[1:])
        if name not in ("read_only", "readonly") or value not in _TRUE:
            return "ATTACH of a file takes (READ_ONLY) and no other option"
    return if_not_exists, path[1], alias, False


def _next_start(spans: list, at: int, text: str) -> int:
    """Where the token after the one at ``at`` begins (the end of ``text`` for the last)."""
    later = [start for start, _ in spans if start > at]
    return later[0] if later else len(text)


def check_attached(con) -> None:
    """After an ATTACH: every database the connection has attached is in memory or read-only,
    by DuckDB's own catalog (``duckdb_databases()``, called by its full name: a user's macro
    may take the short one), and no view or macro stored in an attached file calls what a
    statement may not (:func:`_call_reason`); else the file is detached and refused."""
    attached = con.execute(
        "SELECT database_name, path, readonly FROM system.main.duckdb_databases() "
        "WHERE NOT internal AND path IS NOT NULL"
    ).fetchall()
    for name, path, read_only in attached:
        reason = None if read_only else "it was attached writable"
        if reason is None:
            bodies = con.execute(
                "SELECT sql FROM system.main.duckdb_views() WHERE database_name = $db "
                "UNION ALL SELECT macro_definition FROM system.main.duckdb_functions() "
                "WHERE database_name = $db AND macro_definition IS NOT NULL",
                {"db": name},
            ).fetchall()
            reason = next((r for (body,) in bodies if (r := _call_reason(body))), None)
        if reason is not None:
            con.execute(f"DETACH {sql_identifier(name)}")
            raise ReadOnlyError(_refused(f"{path}: {reason}", f"ATTACH '{path}'"))


def _explained(text: str) -> tuple[int, Any] | None:
    """The statement EXPLAIN [ANALYZE] (…) ``text`` wraps, and where in ``text`` it starts:
    the longest suffix of its first tokens that DuckDB parses as one statement (a suffix
    starting inside the options carries their unmatched ``)``; one starting at ANALYZE is an
    ANALYZE statement). None when no suffix parses."""
    import duckdb

    for start, _, _ in _words(text)[1 : 1 + _EXPLAIN_OPTION_TOKENS]:
        try:
            inner = duckdb.extract_statements(text[start:])
        except duckdb.Error:
            continue
        except ValueError:  # a statement type this duckdb module has no name for
            raise ReadOnlyError(_refused("a statement of an unknown type", text)) from None
        if len(inner) == 1:
            return start, inner[0]
    return None


_PARSER = None  # an empty connection that only parses, when the caller has none
_PARSER_LOCK = threading.Lock()
#: the built-in, fully qualified: a macro of the same name (a query may CREATE one) shadows
#: an unqualified call
_SERIALIZE = "SELECT system.main.json_serialize_sql($q)"


def _select_reason(text: str, con=None) -> str | None:
    """A SELECT's query nodes, as DuckDB parses them, all read (a CTE may hold COPY …)."""
    import json

    import duckdb

    global _PARSER
    if con is not None:
        row = con.execute(_SERIALIZE, {"q": text}).fetchone()
    else:
        with _PARSER_LOCK:  # a connection is not for two threads at once; connecting is slow
            if _PARSER is None:
                _PARSER = duckdb.connect(":memory:")
            row = _PARSER.execute(_SERIALIZE, {"q": text}).fetchone()
    tree = json.loads(row[0])
    if tree.get("error"):  # e.g. PIVOT cannot be serialized: the plan check covers it
        return None
    nodes: set[str] = set()
    todo: list = [tree]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            kind = item.get("type")
            if isinstance(kind, str) and kind.endswith("_NODE"):
                nodes.add(kind)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    writes = sorted(nodes - _READ_NODES)
    if writes:
        return f"a {writes[0].removesuffix('_QUERY_NODE')} inside a query is not allowed"
    return None


#: Table functions that run SQL given as a value: DuckDB binds their argument anew each time
#: a statement is bound, so the plan checked (:func:`check_plan`) need not be the plan that
#: runs (``query(CASE WHEN nextval('s') = 1 THEN … ELSE … END)``); the second runs a
#: serialized statement, a COPY … TO among them. No call of them, nor of a function that
#: acts, may appear in a statement (a view's or macro's body included).
_DYNAMIC_SQL = frozenset({"query", "json_execute_serialized_sql"})


def _call_reason(text: str) -> str | None:
    """A call, anywhere in ``text`` as DuckDB's tokenizer splits it (comments and string
    constants are not calls), of a function that runs SQL given as a value or that acts."""
    words = _words(text)
    for (_, kind, word), (_, _, after) in zip(words, words[1:]):
        name = word.lower()
        if kind != "string" and after == "(":
            if name in _DYNAMIC_SQL:
                return f"{name}() runs SQL that the checks cannot see"
            if name in ACTING_TABLE_FUNCTIONS:
                return f"{name}() acts; it is not a read"
    return None


def _refusal(kind: str, text: str) -> str:
    """Why a statement of a refused type is refused, in the words its user typed."""
    words = _words(text)
    first = words[0][2] if words and words[0][1] == "keyword" else ""
    if first == "FORCE" and len(words) > 1:  # FORCE CHECKPOINT, FORCE INSTALL
        first = words[1][2]
    return (
        _KEYWORD_REASONS.get(first)
        or _TYPE_REASONS.get(kind)
        or f"{first or kind} statements are not allowed"
    )


def _reason(statement, depth: int = 0, con=None) -> str | None:
    """Why ``statement`` (parsed by DuckDB) is refused, or None when it may run (``con``: a
    connection to parse on, else one of this module's)."""
    kind = _statement_type(statement)
    text = statement.query
    if kind not in _ALLOWED_TYPES:
        return _refusal(kind, text)
    reason = _call_reason(text)
    if reason:
        return reason
    if kind == "SELECT":
        return _select_reason(text, con)
    if kind == "EXPLAIN":
        found = _explained(text)
        if found is None or depth > 2:
            return "EXPLAIN of something that is not a query"
        return _reason(found[1], depth + 1, con)
    if kind in ("CREATE", "DROP"):
        return _object_reason([w for _, _, w in _words(text)])
    if kind == "ATTACH":
        return _attach_reason(text)
    return None


def _refused(reason: str, text: str) -> str:
    snippet = " ".join(text.split())[:60]
    return f"statement refused ({reason}): {snippet!r}; {READ_ONLY_HINT}"


def parse_statements(query: str, con=None) -> list:
    """DuckDB's statements of ``query`` (parsed on ``con`` when given, which saves opening
    DuckDB's default connection); a syntax error becomes :class:`QueryError`."""
    import duckdb

    try:
        with query_errors(query):
            return (duckdb if con is None else con).extract_statements(query)
    except ValueError:  # a statement type this duckdb module has no name for (UPDATE EXTENSIONS)
        raise ReadOnlyError(_refused("a statement of an unknown type", query)) from None


def check_read_only(query: str, statements: list | None = None, con=None) -> None:
    """Raise :class:`QueryError` when a statement of ``query`` is not a read.

    The statement types come from DuckDB's parser, and each allowed type is vetted further
    (the query nodes of a SELECT, what EXPLAIN wraps, the options of ATTACH, the object of
    CREATE). ``statements``: ``query`` already split by DuckDB (saves parsing it again);
    ``con``: a connection to parse on.
    :func:`check_plan` is the second check, on the plan, right before a statement runs.
    """
    for statement in parse_statements(query) if statements is None else statements:
        reason = _reason(statement, con=con)
        if reason:
            raise ReadOnlyError(_refused(reason, statement.query))


#: Physical operators that write files.
_WRITING_OPERATORS = ("COPY_TO_FILE", "EXPORT")
#: Table functions a plan may call: each reads (files, catalogs, settings) and nothing else.
#: A plan shows a table function as an operator with ``extra_info.Function``; any function
#: not named here is refused, so one a new DuckDB brings is refused until it is looked at
#: (a test lists DuckDB's table functions and holds each to one of these two sets).
READING_TABLE_FUNCTIONS = frozenset(
    """arrow_scan arrow_scan_dumb duckdb_approx_database_count duckdb_available_metrics
    duckdb_columns duckdb_connection_count duckdb_constraints duckdb_coordinate_systems
    duckdb_databases duckdb_dependencies duckdb_dialects duckdb_eviction_queues
    duckdb_extension_repositories duckdb_extensions duckdb_external_file_cache
    duckdb_external_resource_types duckdb_external_resources duckdb_functions
    duckdb_grammar_extensions duckdb_indexes duckdb_keywords duckdb_live_query_metrics
    duckdb_log_contexts duckdb_logs duckdb_memory duckdb_optimizers duckdb_prepared_statements
    duckdb_schemas duckdb_secret_type_parameters duckdb_secret_types duckdb_secrets
    duckdb_sequences duckdb_settings duckdb_table_sample duckdb_tables duckdb_temporary_files
    duckdb_triggers duckdb_types duckdb_variables duckdb_views generate_series glob
    icu_calendar_names json_each json_tree pandas_scan parquet_bloom_probe
    parquet_file_metadata parquet_full_metadata parquet_kv_metadata parquet_metadata
    parquet_page_index parquet_scan parquet_schema pg_timezone_names pragma_collations
    pragma_database_size pragma_metadata_info pragma_platform pragma_show pragma_storage_info
    pragma_table_info pragma_user_agent pragma_version python_arrow_scan query_table
    range read_blob read_csv read_csv_auto read_duckdb read_json read_json_auto
    read_json_objects read_json_objects_auto read_ndjson read_ndjson_auto read_ndjson_objects
    read_parquet read_single_csv_file read_single_json_file read_single_parquet_file read_text
    repeat repeat_row seq_scan sniff_csv summary test_all_types test_vector_types unnest
    which_secret""".split()
)
#: Table functions that act, or run SQL given as a value (:data:`_DYNAMIC_SQL`): no call of
#: them may appear in a statement, nor in any plan (``CALL`` of them is refused by type).
ACTING_TABLE_FUNCTIONS = frozenset(
    """add_grammar_extension checkpoint create_external_resource deregister_external_resource
    destroy_external_resource disable_logging disable_profiling enable_logging
    enable_profiling force_checkpoint json_execute_serialized_sql python_map_function query
    register_external_resource register_external_resource_type remove_grammar_extension
    truncate_duckdb_logs""".split()
)
_PLANNED = frozenset({"SELECT", "CREATE", "INSERT", "UPDATE", "DELETE", "MERGE_INTO"})


def _planned(statement, at: int = 0) -> list[tuple[Any, int]]:
    """The statements of ``statement`` that run with a plan (EXPLAIN ANALYZE runs its own),
    each with where it starts in the text of the statement given first (``at`` in it)."""
    kind = _statement_type(statement)
    if kind in _PLANNED:
        return [(statement, at)]
    if kind == "EXPLAIN":
        found = _explained(statement.query)
        return [] if found is None else _planned(found[1], at + found[0])
    return []


def check_plan(con, statement, params: Mapping[str, Any] | None = None) -> None:
    """Refuse ``statement`` when DuckDB's plan for it holds an operator that writes files or
    calls a table function not known to only read (:data:`READING_TABLE_FUNCTIONS`).

    Run right before the statement (it may use a table an earlier one created): a view or a
    macro may hide a COPY, or a call that runs one, that only the plan shows. A statement
    DuckDB cannot plan does not run: DuckDB's error is raised, its lines those of the
    statement (a bind that fails here may succeed a moment later, ``error()`` in a table
    function's argument, so a failed check never lets it through). Run it inside
    :func:`query_errors`.
    """
    import json

    import duckdb

    params = params or {}
    lead = len(statement.query) - len(statement.query.lstrip())  # before the text errors name
    for planned, at in _planned(statement):
        used = {k: params[k] for k in planned.named_parameters if k in params} or None
        # on a line of its own: DuckDB's LINE n of an error is line n - 1 of ``text``, which
        # starts ``below`` lines into the statement (EXPLAIN's own lines before it)
        text = planned.query.strip().rstrip(";").rstrip()
        starts = at + len(planned.query) - len(planned.query.lstrip())
        below = statement.query.count("\n", lead, starts)
        try:
            rows = con.execute("EXPLAIN (FORMAT json)\n" + text, used).fetchall()
        except duckdb.Error as exc:
            shift = below - 1
            lines = _LINE_NUMBER.sub(
                lambda m, shift=shift: f"LINE {int(m.group(1)) + shift}:", str(exc)
            )
            raise type(exc)(lines) from exc
        todo: list = [json.loads(row[-1]) for row in rows]
        while todo:
            item = todo.pop()
            if isinstance(item, dict):
                name = str(item.get("name", ""))
                if any(op in name.upper() for op in _WRITING_OPERATORS):
                    raise ReadOnlyError(
                        _refused(f"its plan writes files ({name})", statement.query)
                    )
                extra = item.get("extra_info")
                function = extra.get("Function") if isinstance(extra, dict) else None
                if isinstance(function, str) and function.lower() not in READING_TABLE_FUNCTIONS:
                    raise ReadOnlyError(
                        _refused(
                            f"its plan calls {function.lower()}(), which is not known to only read",
                            statement.query,
                        )
                    )
                todo.extend(item.values())
            elif isinstance(item, list):
                todo.extend(item)


#: Extensions, secrets and DuckDB's own files go nowhere: a directory below a device file
#: cannot be created, not even by root.
_NOWHERE = os.path.join(os.devnull, "nightlake-read-only")


def spill_directory() -> str:
    """A directory of this connection's own for DuckDB to spill to (DuckDB creates it when it
    needs it and removes it when the connection closes), inside :func:`private_temp`: spilled
    rows are the user's data, and a directory DuckDB creates is readable by every user."""
    import uuid

    return os.path.join(private_temp(), f"spill-{uuid.uuid4().hex}")


_FALLBACK_TEMP: list[str] = []  # made once per process when the shared one cannot be trusted
_FALLBACK_LOCK = threading.Lock()


def private_temp() -> str:
    """``nightlake-<uid>`` in the temp directory: made with mode 0700, and used only if it is
    this user's own directory (not a link) that no one else may enter. A name someone else
    took first, or a mode loosened since, gives a fresh ``mkdtemp`` for this process."""
    import stat
    import tempfile

    shared = os.path.join(tempfile.gettempdir(), f"nightlake-{os.getuid()}")
    try:
        os.mkdir(shared, 0o700)
    except FileExistsError:
        pass
    except OSError:  # a read-only or full temp directory: the fallback says why
        shared = ""
    if shared:
        st = os.lstat(shared)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
            return shared
    with _FALLBACK_LOCK:
        if not _FALLBACK_TEMP or not os.path.isdir(_FALLBACK_TEMP[0]):  # (a cleaner took it)
            made = tempfile.mkdtemp(prefix="nightlake-")
            atexit.register(_remove_if_empty, made)  # DuckDB empties it as connections close
            _FALLBACK_TEMP[:] = [made]
        return _FALLBACK_TEMP[0]


def _remove_if_empty(directory: str) -> None:
    try:
        os.rmdir(directory)
    except OSError:  # a connection still open holds its spill there, or it is gone
        pass


def check_confinable(places: Iterable[os.PathLike[str] | str]) -> list[str]:
    """The real paths of ``places``, or LakeError where a confined connection could not keep
    its queries to them.

    DuckDB checks a path against ``allowed_directories`` by its text, ``..`` folded as text,
    and the system then follows links. So:

    * a link to a directory inside a place is a way out (``night=1/../x`` is checked as
      inside and read beside the link's target), and so is a directory this check cannot
      list, which may hold one;
    * a place whose real path holds ``[``, ``*`` or ``?`` cannot be allowed. The views read
      it through a glob that escapes them (:func:`nightlake.sql.sql_glob`), so the escaped
      name would have to be allowed, and that name is another directory beside the lake,
      which anyone who may write there could make (a glob that matches nothing reads that
      literal path).

    The check holds when the connection is made. Whoever may write the lake's images or
    mirror can make such a link later (:func:`writable_by_others` names where others may).
    """
    import glob

    from nightlake.errors import LakeError

    def unlisted(exc: OSError) -> None:
        raise LakeError(
            f"{exc.filename}: cannot list it to check for links out of the lake "
            f"({exc.strerror}); a confined query could leave the lake through one"
        )

    reals = []
    for place in places:
        real = os.path.realpath(place)
        if glob.escape(real) != real:
            raise LakeError(
                f"{place}: cannot confine queries to a directory whose path holds "
                f"'[', '*' or '?' ({real}); serve the lake from a path without them"
            )
        if os.path.isdir(real):
            for root, dirs, _ in os.walk(real, onerror=unlisted):  # links listed, not followed
                for name in dirs:
                    if os.path.islink(os.path.join(root, name)):
                        raise LakeError(
                            f"{os.path.join(root, name)}: a link to a directory inside the "
                            "lake; a confined query could leave the lake through it (…/..): "
                            "replace it with the directory, or link the lake's images/ as "
                            "a whole"
                        )
        reals.append(real)
    return reals


def writable_by_others(lake) -> list[str]:
    """Where users other than this one (and root) could lead a confined connection's queries
    out of ``lake``'s :func:`confined_places` while it runs (:func:`check_confinable` holds
    when it is made):

    * a directory in or under a place they may write (group or other write permission, or
      another owner): a link made there;
    * the lake's own directory, where the ``images`` and ``detrends`` links are;
    * a directory above a place or the lake that they may write and that is not sticky:
      the place renamed and another put in its stead.
    """
    import stat

    def others_may_write(st: os.stat_result) -> bool:
        return st.st_uid not in (os.getuid(), 0) or bool(st.st_mode & 0o022)

    reals = [os.path.realpath(p) for p in confined_places(lake)]
    found = [root for real in reals for root, _, _ in os.walk(real)]
    found.append(os.path.realpath(lake.path))
    found = [d for d in found if others_may_write(os.stat(d))]
    above = {str(d) for top in (*reals, lake.path) for d in Path(top).resolve().parents}
    for directory in sorted(above, key=len, reverse=True):
        st = os.stat(directory)
        if others_may_write(st) and not st.st_mode & stat.S_ISVTX:
            found.append(directory)
    return list(dict.fromkeys(found))


def lock_down(con, confine: Sequence[os.PathLike[str] | str] | None = None) -> None:
    """Make ``con`` read-only for files, then lock its configuration (no SET works after).

    Extensions are neither installed nor loaded behind a query's back, secrets are never
    persisted, and DuckDB spills to a directory of its own that it creates only when
    it needs it and removes when the connection closes (for ``:memory:`` it would otherwise
    spill into ``./.tmp`` of whatever directory the user is in). ``confine``: the only
    directories a query may read (DuckDB's ``enable_external_access`` off, with these as
    ``allowed_directories``).
    """
    spill = spill_directory()
    confined: list[tuple[str, Any]] = []
    if confine is not None:
        places = {os.path.join(p, "") for p in check_confinable(confine)}
        places.add(os.path.join(spill, ""))  # (never globbed: its name may be anything)
        listed = "[" + ", ".join(sql_string(p) for p in sorted(places)) + "]"
        confined = [("allowed_directories", listed), ("enable_external_access", False)]
    for name, value in (
        ("enable_progress_bar", True),
        ("enable_progress_bar_print", False),  # it would print into results on stdout
        ("autoinstall_known_extensions", False),
        ("autoload_known_extensions", False),
        ("allow_community_extensions", False),
        ("allow_persistent_secrets", False),
        ("extension_directory", _NOWHERE),
        ("secret_directory", _NOWHERE),
        ("temp_directory", spill),
        *confined,
        ("lock_configuration", True),  # last
    ):
        if isinstance(value, bool):
            literal = str(value).lower()
        elif name == "allowed_directories":
            literal = value  # a list, each item quoted
        else:
            literal = sql_string(str(value))
        con.execute(f"SET {name} = {literal}")


def parameter_names(query: str) -> list[str] | None:
    """The ``$name`` parameters of ``query`` in the order they first appear (as DuckDB's
    parser finds them), or None when the query does not parse."""
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except (duckdb.Error, ValueError):
        return None
    names = {name for statement in statements for name in statement.named_parameters}
    return sorted(names, key=lambda name: (query.find("$" + name), name))


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
            f"parameter {unused[0]!r} is not used by the query (no ${unused[0]} in it)"
        )


_LINE_RE = re.compile(r"^LINE (\d+): (.*)$")


def error_message(exc: BaseException | str, query: str | None = None) -> str:
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
_LINE_NUMBER = re.compile(r"(?m)^LINE (\d+):")
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
    con: duckdb.DuckDBPyConnection,
    query: str,
    params: Mapping[str, Any] | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
) -> pa.RecordBatchReader:
    """Run ``query`` read-only and stream its result as Arrow record batches.

    A script's statements run in order, each with the parameters it names, and the last
    one's rows are streamed; a last statement without rows gives an empty stream. DuckDB
    errors, also those raised while the batches are read, become :class:`QueryError` with
    the position in ``query``.
    """
    import pyarrow as pa

    result = stream_relation(con, query, params)
    if result.relation is None:
        return pa.RecordBatchReader.from_batches(pa.schema([]), [])
    with result.errors():
        reader = result.relation.to_arrow_reader(batch_rows)
    return pa.RecordBatchReader.from_batches(reader.schema, _checked(reader, result))


@contextmanager
def query_errors(
    query: str,
    text: str | None = None,
    start: int = 0,
    *,
    con=None,
    wrapped: bool = False,
    also: tuple[type[BaseException], ...] = (),
) -> Iterator[None]:
    """DuckDB's errors (and ``also``) raised inside, as one :class:`QueryError` line with the
    position in ``query`` of the offending token of statement ``text`` (at ``start`` of
    ``query``; the whole query by default).

    ``con``: binder errors that come without a position get one by preparing ``text`` again
    on it; ``wrapped``: DuckDB ran ``text`` inside a statement of its own (a CSV is written
    by a COPY), so its ``LINE n:`` is found back in ``text``.
    """
    import duckdb

    text = query if text is None else text
    try:
        yield
    except (duckdb.Error, *also) as exc:
        message = error_message(_own_lines(str(exc), text) if wrapped else exc, text)
        if con is not None:
            message = _probe_position(con, message, text)
        raise QueryError(_shift(message, query, text, start)) from exc


class Relation:
    """The last statement of a checked query as a DuckDB relation, not yet run, for writers
    that let DuckDB produce the output itself (CSV); ``relation`` is None when that statement
    has no rows. :meth:`errors` turns DuckDB's errors into :class:`QueryError` lines."""

    def __init__(self, relation, text: str = "", query: str = "", start: int = -1):
        self.relation, self.text, self.query, self.start = relation, text, query, start

    def errors(self):
        """:func:`query_errors` of this statement, which DuckDB may run wrapped (a CSV is
        written by a COPY of it)."""
        return query_errors(self.query, self.text, self.start, wrapped=True)


def _own_lines(message: str, text: str) -> str:
    """DuckDB's ``LINE n:`` of a statement it wrapped (a relation written to CSV runs inside
    a COPY of its own) as the line of ``text`` that shows the same source."""
    lines = text.splitlines()

    def rebase(match: re.Match) -> str:
        window = match.group(2).removeprefix("...").removesuffix("...")
        found = [i for i, line in enumerate(lines, start=1) if window and window in line]
        return f"LINE {found[0]}: {match.group(2)}" if found else match.group(0)

    return re.sub(r"(?m)^LINE (\d+): (.*)$", rebase, message)


def stream_relation(
    con: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, Any] | None = None
) -> Relation:
    """:func:`stream`'s checks and statements, the last one's rows left to DuckDB to run."""
    last = _run_to_last(con, query, params)
    if last is None:
        return Relation(None)
    text, start, bound = last
    with query_errors(query, text, start, con=con):
        return Relation(con.sql(text, params=bound), text, query, start)


class Rows:
    """A result as Python rows, batch by batch: what the text outputs (table, json, jsonl)
    need, without Arrow, so ``nightlake sql`` prints them without importing pyarrow."""

    def __init__(self, names: list[str], types: list[str], batches: Iterator[list[tuple]]):
        self.names, self.types, self.batches = names, types, batches

    def __iter__(self) -> Iterator[list[tuple]]:
        return self.batches


def stream_rows(
    con: duckdb.DuckDBPyConnection,
    query: str,
    params: Mapping[str, Any] | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
) -> Rows:
    """:func:`stream`, with the same checks and errors, as :class:`Rows` (DuckDB's types
    by name: ``BIGINT``, ``DECIMAL(9,2)``, …)."""
    last = _run_to_last(con, query, params)
    if last is None:
        return Rows([], [], iter(()))
    text, start, bound = last
    with query_errors(query, text, start, con=con):
        cursor = con.execute(text, bound)
    description = cursor.description or []

    def batches() -> Iterator[list[tuple]]:
        with query_errors(query, text, start):
            while rows := cursor.fetchmany(batch_rows):
                yield rows

    return Rows(
        [d[0] for d in description],
        [str(d[1]) for d in description],
        batches() if description else iter(()),
    )


def _run_to_last(con, query: str, params: Mapping[str, Any] | None):
    """Check ``query`` and run every statement but the last; return the last one as
    (text, its start in ``query``, its bound parameters), or None for an empty script."""
    params = dict(params or {})
    parsed = parse_statements(query, con)  # once, for the checks and the statements
    check_read_only(query, parsed, con)
    check_params(query, params, parsed)
    statements = _statements(query, parsed)
    if not statements:
        return None
    for i, ((text, start, names), statement) in enumerate(zip(statements, parsed)):
        with query_errors(query, text, start):
            check_plan(con, statement, params)
        bound = {k: params[k] for k in names} or None
        attach = _statement_type(statement) == "ATTACH"
        if i == len(statements) - 1 and not attach:
            return text, start, bound
        with query_errors(query, text, start):
            con.execute(attach_statement(text) if attach else text, bound)
        if attach:  # run here even when last: its result is checked before anything else
            check_attached(con)
    return None


def _checked(reader: pa.RecordBatchReader, result: Relation) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    # DuckDB's errors during the stream surface through Arrow's C stream as OSError
    with query_errors(result.query, result.text, result.start, also=(pa.ArrowException, OSError)):
        yield from reader


def confined_places(lake) -> list[os.PathLike[str]]:
    """The directories a confined connection of ``lake`` may read: its images and its current
    detrend mirror, each where it really is (the views read resolved paths). Not the lake's
    own directory: with ``images/`` linked from another disk, ``images/../x`` is checked as
    the lake's and read beside the images (:func:`check_confinable`)."""
    return [lake.images_dir, lake.detrends_dir]


def open_connection(lake) -> duckdb.DuckDBPyConnection:
    """``lake.connect()`` for running user SQL, made read-only by :func:`lock_down`.

    DuckDB's own progress bar does not print (it would go into the results on standard
    output); ``query_progress()`` still reports progress.
    """
    con = lake.connect()
    try:
        lock_down(con, confine=confined_places(lake) if getattr(lake, "confined", False) else None)
    except BaseException:
        con.close()
        raise
    return con


def init_script(lake) -> str:
    """SQL defining ``lake``'s views and every macro, for DuckDB clients without nightlake.

    Run it with ``duckdb -init init.sql`` or ``con.execute(text)``; paths are absolute.
    """
    from nightlake import __version__
    from nightlake.errors import LakeError
    from nightlake.query.astro import obscore_view_sql  # a view over images, defined by a macro
    from nightlake.sql import macro_sql

    if not lake.path.is_dir():
        raise LakeError(f"{lake.path}: no lake here")
    views = lake.view_sql()
    return "\n".join(
        [
            f"-- nightlake {__version__}: views and macros of the lake {lake.path.resolve()}",
            "-- Use: duckdb -init init.sql  or  duckdb.connect().execute(open('init.sql').read())",
            views if views else "-- (the lake has no partitions yet: no views)",
            macro_sql(),
            obscore_view_sql(lake),
        ]
    )
