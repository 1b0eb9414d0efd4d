"""``nightlake sql``, ``Lake.sql`` and ``nightlake export`` are read-only: no statement writes
a file or changes a setting, whatever its spelling (case, quoting, comments, nesting in
EXPLAIN / PREPARE / a CTE, or hidden later in a script).

Each refused statement runs with HOME and the working directory in ``tmp_path``; a listing
of the lake, the working directory and HOME must be the same after as before.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightlake import Lake
from nightlake.errors import QueryError
from nightlake.query import stream
from nightlake.query.stream import (
    check_read_only,
    open_connection,
    private_temp,
    spill_directory,
)

PART = "{lake}/images/target=A0a/night=20190402/20190402_A0a.parquet"

REFUSED = [
    # PREPARE / EXECUTE, whatever they wrap
    f"PREPARE p AS COPY (SELECT 1 AS junk) TO '{PART}' (FORMAT parquet); EXECUTE p",
    "prepare P as copy (select 1) to 'x.csv'",
    "SELECT 1; PREPARE p AS SELECT 42; EXECUTE p",
    '/* c */ PREPARE "p" AS SELECT 1',
    "EXECUTE p",
    # EXPLAIN [ANALYZE] of something that is not a read
    "EXPLAIN ANALYZE COPY (SELECT 43) TO 'x.csv'",
    "explain analyze copy (select 43) to 'x.csv'",
    "EXPLAIN /* x */ ANALYZE -- y\n COPY (SELECT 43) TO 'x.csv'",
    "EXPLAIN ANALYZE INSTALL spatial",
    "EXPLAIN ANALYZE LOAD '{cwd}/x.duckdb_extension'",
    "EXPLAIN ANALYZE WITH a AS (COPY (SELECT 1) TO 'x.csv') SELECT 1",
    # settings, however quoted or spelled
    "SET \"temp_directory\"='{cwd}/spill'",
    'SET "lock_configuration"=false',
    "set Temp_Directory to 'spill'",
    "PRAGMA enable_profiling='json'; SET \"profiling_output\"='prof.json'; SELECT 1",
    "PRAGMA enable_profiling",
    "RESET temp_directory",
    "SET GLOBAL extension_directory = 'ext'",
    "SELECT 1; SELECT 2; SET threads = 1",
    "PRAGMA threads = 1",
    # CALL of functions that act
    "CALL \"enable_logging\"(storage_path='logs')",
    "call enable_logging(storage_path := 'logs')",
    "CHECKPOINT",
    # ATTACH that is not read-only by its options
    "ATTACH 'e1.db' AS e (READ_ONLY false)",
    "ATTACH 'e2.db' AS read_only; CREATE TABLE read_only.t AS SELECT 1",
    "attach 'e3.db' as \"READ_ONLY\"",
    "ATTACH DATABASE 'e4.db' AS e (READ_ONLY 0)",
    "ATTACH 'e5.db' AS e /* (READ_ONLY) */",
    "ATTACH 'e6.db' (ACCESS_MODE 'read_write')",
    "ATTACH IF NOT EXISTS 'e7.db' AS e (TYPE duckdb)",
    "SELECT 1; ATTACH 'e8.db' AS e -- (READ_ONLY)",
    # ATTACH whose path is an expression: a literal ':memory:' in it need not be the path
    "ATTACH if(false, ':memory:', 'e9.db') AS v; CREATE TABLE v.t AS SELECT 1",
    "ATTACH if(false, ':memory:', '{lake}/images/planted.duckdb') AS v (READ_ONLY)",
    "ATTACH 'e10' || '.db' AS v",
    "ATTACH IF NOT EXISTS ('e11.db') AS v",
    # options other than READ_ONLY: DuckDB takes READ_WRITE too, and the last one wins
    "ATTACH 'e12.db' AS p (READWRITE, READ_ONLY)",
    "ATTACH 'e13.db' AS w (READONLY false, READ_ONLY)",
    "ATTACH 'e14.db' AS w (READ_WRITE)",
    # table functions that act, called in a query, a view or a macro
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql("
    "'WITH x AS (COPY (SELECT 42 AS n) TO ''{lake}/nightlake.json'' (FORMAT json)) FROM x'))",
    "CREATE TEMP VIEW v AS SELECT * FROM json_execute_serialized_sql(json_serialize_sql("
    "'WITH x AS (COPY (SELECT 1) TO ''v.csv'') FROM x')); SELECT * FROM v",
    "CREATE TEMP MACRO m() AS TABLE SELECT * FROM json_execute_serialized_sql("
    "json_serialize_sql('WITH x AS (COPY (SELECT 1) TO ''m.csv'') FROM x')); FROM m()",
    "SELECT * FROM force_checkpoint()",
    # SQL given as a value is bound again when it runs: the plan checked need not be the
    # plan run (a sequence, random() or error() picks), so no call of query() passes, and
    # json_execute_serialized_sql is refused by name wherever it is called
    "CREATE TEMP SEQUENCE s; SELECT * FROM query(CASE WHEN nextval('s') = 1 THEN "
    "'SELECT 1 AS n' ELSE 'SELECT * FROM json_execute_serialized_sql(json_serialize_sql("
    "''WITH x AS (COPY (SELECT 42 AS n) TO {lake}/images/planted.csv (FORMAT csv)) "
    "FROM x''))' END)",
    "CREATE TEMP SEQUENCE s; SELECT * FROM json_execute_serialized_sql(CASE WHEN "
    "nextval('s') = 1 THEN error('only the check sees this') ELSE json_serialize_sql("
    "'WITH x AS (COPY (SELECT 1) TO ''{cwd}/late.csv'') FROM x') END)",
    "CREATE TEMP SEQUENCE s; CREATE TEMP VIEW e AS SELECT * FROM "
    "system.main.json_execute_serialized_sql(json_serialize_sql("
    "'WITH x AS (COPY (SELECT 1) TO ''{lake}/nightlake.json'' (FORMAT json)) FROM x')); "
    "SELECT count(*) FROM image_quality(source := CASE WHEN nextval('s') = 1 "
    "THEN 'images' ELSE 'e' END)",
    "SELECT * FROM \"QUERY\" /* c */ ('SELECT 1')",
    "SELECT * FROM truncate_duckdb_logs()",
    # secrets
    "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')",
    "create or replace persistent secret s (type http)",
    "CREATE SECRET s (TYPE s3)",
    'CREATE TEMPORARY SECRET "s" (TYPE http)',
    "DROP PERSISTENT SECRET s",
    # extensions
    "INSTALL spatial",
    "FORCE INSTALL spatial FROM core_nightly",
    "LOAD '{cwd}/x.duckdb_extension'",
    'install "httpfs"',
    "UPDATE EXTENSIONS",
    # COPY and EXPORT, also inside a query and later in a script
    f"COPY (SELECT 1) TO '{PART}'",
    "copy images to 'out.parquet'",
    "WITH a AS (COPY (SELECT 1) TO 'cte.csv') SELECT 1",
    "SELECT * FROM (WITH a AS MATERIALIZED (COPY (SELECT 1) TO 'sub.csv') SELECT 1)",
    "CREATE TEMP TABLE t AS WITH a AS (COPY (SELECT 1) TO 'ctas.csv') SELECT 1",
    "SELECT 1;\nCOPY (SELECT 2) TO 'second.csv';",
    "SELECT 1; SELECT 2; COPY (SELECT 3) TO 'third.csv'",
    "EXPORT DATABASE 'dump'",
    "COPY FROM DATABASE memory TO other",
    "VACUUM",
]

ALLOWED = [
    ("SELECT count(*) AS n FROM images", "9"),
    ("with t as (select night from images) select count(*) AS n from t", "9"),
    ("FROM images SELECT count(*) AS n", "9"),
    ("SELECT count(*) AS n FROM (DESCRIBE images) WHERE column_name = 'night'", "1"),
    ("SELECT count(*) > 0 AS n FROM (SUMMARIZE images)", "true"),
    ("SELECT count(*) AS n FROM (SHOW TABLES) WHERE name = 'images'", "1"),
    ("EXPLAIN SELECT * FROM images", None),
    ("explain /* how */ analyze SELECT count(*) FROM images", None),
    ("SELECT count(*) AS n FROM pragma_table_info('images') WHERE name = 'night'", "1"),
    ("SELECT count(*) AS n FROM images JOIN '{cwd}/targets.csv' USING (target)", "8"),
    ("ATTACH '{cwd}/user.duckdb' AS u (READ_ONLY); SELECT n FROM u.t", "5"),
    ("ATTACH '{cwd}/user.duckdb' AS u (\"read_only\" TRUE); SELECT n FROM u.t", "5"),
    ("ATTACH ':memory:' AS s; CREATE TABLE s.t AS SELECT 7 AS n; SELECT n FROM s.t", "7"),
    ("ATTACH '{cwd}/user.duckdb' AS u (READONLY); SELECT n FROM u.t", "5"),
    ('ATTACH \'{cwd}/user.duckdb\' AS "My Db" (READ_ONLY); SELECT n FROM "My Db".t', "5"),
    ("EXPLAIN WITH n AS (SELECT night FROM images) SELECT count(*) FROM n", None),
    ("EXPLAIN ANALYZE WITH n AS (SELECT night FROM images) SELECT count(*) FROM n", None),
    ("CREATE TEMP TABLE u2 (a INT); EXPLAIN UPDATE u2 SET a = 1", None),
    ("CREATE TEMP TABLE t AS SELECT 41 AS x; SELECT x + 1 AS n FROM t", "42"),
    ("CREATE TEMP MACRO twice(x) AS 2 * x; SELECT twice(21) AS n", "42"),
    ("SELECT 1 AS n -- a note", "1"),
    ("SELECT current_setting('lock_configuration') AS n", "true"),
    # a name in a string, a comment or a column is not a call
    ("SELECT 'query(1)' AS n -- json_execute_serialized_sql(x)", "query(1)"),
    ("SELECT query AS n FROM (SELECT 3 AS query)", "3"),
    ("SELECT count(*) AS n FROM query_table('images')", "9"),
]


def listing(*roots: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file and directory under ``roots``."""
    seen = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            st_ = path.lstat()
            seen[str(path)] = (st_.st_size if path.is_file() else 0, st_.st_mtime_ns)
    return seen


@pytest.fixture
def place(tmp_path, hand_lake, monkeypatch):
    """A working directory and a HOME of their own; yields (lake, cwd, home)."""
    cwd, home = tmp_path / "work", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    (cwd / "targets.csv").write_text("target,priority\nA0a,1\n")
    user = duckdb.connect(str(cwd / "user.duckdb"))
    user.execute("CREATE TABLE t AS SELECT 5 AS n")
    user.close()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    return hand_lake, cwd, home


def _text(statement: str, lake: Path, cwd: Path) -> str:
    return statement.replace("{lake}", str(lake)).replace("{cwd}", str(cwd))


@pytest.mark.parametrize("statement", REFUSED)
def test_refused_in_one_line_and_nothing_written(cli, place, statement):
    lake, cwd, home = place
    before = listing(lake, cwd, home)
    result = cli("sql", "--lake", lake, _text(statement, lake, cwd))
    assert result.exit_code == 2, result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "statement refused" in result.stderr and "read-only" in result.stderr
    assert listing(lake, cwd, home) == before


@pytest.mark.parametrize(
    "statement",
    [
        REFUSED[0],  # PREPARE … COPY onto a lake partition; EXECUTE
        "EXPLAIN ANALYZE COPY (SELECT 43) TO 'x.csv'",
        "SET \"temp_directory\"='{cwd}/spill'",
        "CALL \"enable_logging\"(storage_path='logs')",
        "ATTACH 'e2.db' AS read_only; CREATE TABLE read_only.t AS SELECT 1",
        "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')",
        "EXPLAIN ANALYZE INSTALL spatial",
    ],
)
def test_refused_by_the_console_script(place, tmp_path, statement):
    lake, cwd, home = place
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    before = listing(lake, cwd, home)
    script = Path(sys.executable).with_name("nightlake")
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp)}
    done = subprocess.run(
        [str(script), "sql", "--lake", str(lake), _text(statement, lake, cwd)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "statement refused" in done.stderr and "Traceback" not in done.stderr
    assert listing(lake, cwd, home) == before
    # (its mtime moves: Python probes that it is writable) only the empty private place a
    # connection spills under (stream.private_temp) may be there
    left = list(tmp.iterdir())
    assert left in ([], [tmp / f"nightlake-{os.getuid()}"]), left
    assert not left or (
        not any(left[0].iterdir()) and stat.S_IMODE(left[0].stat().st_mode) == 0o700
    )


@pytest.mark.parametrize("statement, expected", ALLOWED)
def test_reads_still_work(cli, place, statement, expected):
    lake, cwd, home = place
    before = listing(lake, cwd, home)
    result = cli("sql", "--lake", lake, "--format", "csv", _text(statement, lake, cwd))
    assert result.exit_code == 0, result.stderr
    assert expected is None or result.stdout.splitlines()[-1] == expected
    assert listing(lake, cwd, home) == before


@pytest.mark.parametrize(
    "statement",
    [
        "WITH a AS (COPY (SELECT 1) TO 'cte.csv') SELECT 1",
        "select 1 union all (with a as (copy (select 2) to 'u.csv') select 2)",
        "EXPLAIN ANALYZE COPY (SELECT 43) TO 'x.csv'",
        "PREPARE p AS SELECT 1",
    ],
)
def test_export_has_the_same_guard(cli, place, statement):
    lake, cwd, home = place
    before = listing(lake, cwd, home)
    result = cli("export", "--lake", lake, statement, "--to", cwd / "out.csv")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "statement refused" in result.stderr
    assert listing(lake, cwd, home) == before


def test_export_takes_what_sql_takes(cli, place):
    lake, cwd, _ = place
    query = "select 1 as a -- note"
    assert cli("sql", "--lake", lake, "--format", "csv", query).stdout.splitlines() == ["a", "1"]
    result = cli("export", "--lake", lake, query, "--to", cwd / "out.csv")
    assert result.exit_code == 0, result.stderr
    assert (cwd / "out.csv").read_text().splitlines() == ["a", "1"]


@pytest.mark.parametrize(
    "statement",
    [
        "PREPARE p AS COPY (SELECT 1) TO 'x.csv'",
        "WITH a AS (COPY (SELECT 1) TO 'x.csv') SELECT 1",
        "SET \"temp_directory\" = 'spill'",
        "ATTACH 'e.db' AS read_only",
    ],
)
def test_lake_sql_has_the_same_guard(place, statement):
    lake, cwd, home = place
    before = listing(lake, cwd, home)
    with pytest.raises(QueryError, match="statement refused"):
        Lake(lake).sql(statement)
    assert listing(lake, cwd, home) == before


def _settings(con) -> dict[str, str]:
    """The settings of ``con`` that keep files and extensions in their place."""
    names = (
        "temp_directory",
        "autoinstall_known_extensions",
        "autoload_known_extensions",
        "allow_persistent_secrets",
    )
    query = "SELECT name, value FROM duckdb_settings() WHERE list_contains($names, name)"
    return dict(con.execute(query, {"names": list(names)}).fetchall())


def test_the_connection_is_locked(place):
    lake, cwd, _ = place
    con = open_connection(Lake(lake))
    try:
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET temp_directory = 'spill'")
        setting = _settings(con)
    finally:
        con.close()
    assert setting["autoinstall_known_extensions"] == "false"
    assert setting["autoload_known_extensions"] == "false"
    assert setting["allow_persistent_secrets"] == "false"
    assert not Path(setting["temp_directory"]).resolve().is_relative_to(cwd.resolve())
    table = Lake(lake).sql("SELECT current_setting('lock_configuration') AS locked")
    assert table.column("locked").to_pylist() == [True]


def test_a_statement_whose_check_cannot_plan_it_does_not_run(cli, place):
    """A bind that fails for the plan check may succeed a moment later (error() picked by a
    sequence): the statement is not run, and the error is DuckDB's, on one line."""
    lake, cwd, _ = place
    statement = (
        "CREATE TEMP SEQUENCE s; SELECT * FROM read_csv(CASE WHEN nextval('s') = 1 THEN "
        f"error('only the check sees this') ELSE '{cwd}/targets.csv' END)"
    )
    result = cli("sql", "--lake", lake, "--format", "csv", statement)
    assert result.exit_code == 2 and not result.stdout  # a query error, as when it runs
    assert "only the check sees this" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_attach_runs_as_nightlake_writes_it_not_as_typed(cli, place):
    """The ATTACH that runs is built from the path and the alias alone: ``READ_ONLY 1e-400``
    passes the options check and is false to DuckDB, which would create or open the file
    writable (and checkpoint its WAL). It opens read-only, creating nothing."""
    lake, cwd, home = place
    before = listing(lake, cwd, home)
    user = (cwd / "user.duckdb").read_bytes()
    missing = cli(
        "sql", "--lake", lake, f"ATTACH '{lake}/images/planted.duckdb' AS p (READ_ONLY 1e-400)"
    )
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    read = cli(
        "sql",
        "--lake",
        lake,
        "--format",
        "csv",
        f"ATTACH '{cwd}/user.duckdb' AS u (READ_ONLY 1e-400); SELECT n FROM u.t",
    )
    assert read.exit_code == 0 and read.stdout.splitlines()[-1] == "5", read.stderr
    assert listing(lake, cwd, home) == before and (cwd / "user.duckdb").read_bytes() == user


def test_an_attach_the_engine_reports_writable_is_detached_and_refused(tmp_path):
    """The check after an ATTACH reads DuckDB's own catalog, whatever the text said."""
    from nightlake.errors import ReadOnlyError
    from nightlake.query.stream import check_attached

    con = duckdb.connect()
    # a user's macro may take the short name of the catalog function the check reads
    con.execute(
        "CREATE MACRO duckdb_databases() AS TABLE SELECT 'x' AS database_name, 'x' AS path, "
        "true AS internal, true AS readonly"
    )
    con.execute(f"ATTACH '{tmp_path / 'w.duckdb'}' AS w")
    con.execute("ATTACH ':memory:' AS scratch")
    with pytest.raises(ReadOnlyError, match="attached writable"):
        check_attached(con)
    names = {
        row[0]
        for row in con.execute(
            "SELECT database_name FROM system.main.duckdb_databases()"
        ).fetchall()
    }
    assert "w" not in names and "scratch" in names
    check_attached(con)  # in memory only: nothing to say
    # a file attached read-only whose views or macros call query(): refused, detached
    for body in (
        "CREATE VIEW v AS SELECT * FROM query('SELECT 1')",
        "CREATE MACRO tm() AS TABLE SELECT * FROM query('SELECT 2')",
    ):
        path = tmp_path / f"stored{len(body)}.duckdb"
        maker = duckdb.connect(str(path))
        maker.execute(body)
        maker.close()
        con.execute(f"ATTACH '{path}' AS f (READ_ONLY)")
        with pytest.raises(ReadOnlyError, match=r"query\(\) runs SQL"):
            check_attached(con)
        assert "f" not in {
            row[0]
            for row in con.execute(
                "SELECT database_name FROM system.main.duckdb_databases()"
            ).fetchall()
        }


def test_every_table_function_of_this_duckdb_is_known_to_read_or_to_act():
    """A DuckDB that brings a table function fails here until it is put in one set: the plan
    check refuses any function it does not know to only read."""
    from nightlake.query.stream import ACTING_TABLE_FUNCTIONS, READING_TABLE_FUNCTIONS

    con = duckdb.connect()
    found = {
        row[0]
        for row in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'table'"
        ).fetchall()
    }
    assert not READING_TABLE_FUNCTIONS & ACTING_TABLE_FUNCTIONS
    assert found - READING_TABLE_FUNCTIONS - ACTING_TABLE_FUNCTIONS == set()


def test_nightlakes_own_connections_spill_apart_and_fetch_no_extension(place):
    """audit, info, resolve and the like query on ``Lake.connect()`` without the lock: they
    still spill outside the user's working directory and fetch or load no extension."""
    lake, cwd, _ = place
    con = Lake(lake).connect()
    try:
        setting = _settings(con)
    finally:
        con.close()
    assert setting["autoinstall_known_extensions"] == "false"
    assert setting["autoload_known_extensions"] == "false"
    assert not Path(setting["temp_directory"]).resolve().is_relative_to(cwd.resolve())
    assert Path(setting["temp_directory"]).parent == Path(private_temp())


def test_a_query_spills_where_only_its_user_may_look(tmp_path, monkeypatch):
    """A real spill (a sort past a small memory limit) lands in the connection's own
    directory, inside ``nightlake-<uid>`` of mode 0700 (DuckDB makes the directory it spills
    to readable by all), and goes when the connection closes."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spill = Path(spill_directory())
    assert spill.parent == tmp_path / f"nightlake-{os.getuid()}"
    st_parent = spill.parent.lstat()
    assert stat.S_IMODE(st_parent.st_mode) == 0o700 and st_parent.st_uid == os.getuid()
    con = duckdb.connect(
        config={
            "temp_directory": str(spill),
            "memory_limit": "64MB",
            "threads": 1,
            "preserve_insertion_order": False,
        }
    )
    try:
        con.execute(
            "SELECT count(*), max(m) FROM "
            "(SELECT md5(i::VARCHAR) AS m FROM range(1500000) t(i) ORDER BY m)"
        ).fetchall()
        assert any(spill.iterdir())  # it did spill, and there
    finally:
        con.close()
    assert not spill.exists()
    assert Path(spill_directory()).parent == spill.parent  # one directory for every spill


@pytest.mark.parametrize("taken", ["mode 0777", "a symlink", "a file", "another user's"])
def test_a_spill_place_others_could_enter_is_not_used(tmp_path, monkeypatch, taken):
    """``nightlake-<uid>`` made first by someone else, or loosened, is passed over for a
    fresh private directory, one per process."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(stream, "_FALLBACK_TEMP", [])
    shared = tmp_path / f"nightlake-{os.getuid()}"
    if taken == "mode 0777":
        shared.mkdir()
        shared.chmod(0o777)
    elif taken == "a symlink":
        (tmp_path / "theirs").mkdir(mode=0o700)
        shared.symlink_to(tmp_path / "theirs")
    elif taken == "a file":
        shared.write_text("")
        shared.chmod(0o600)  # a mode that would pass: only its kind refuses it
    else:
        shared.mkdir(mode=0o700)
        try:
            os.chown(shared, os.getuid() + 1, -1)
        except PermissionError:
            pytest.skip("giving a directory to another user needs root")
    place = Path(spill_directory()).parent
    assert place.parent == tmp_path and place != shared
    assert stat.S_IMODE(place.stat().st_mode) == 0o700
    assert Path(spill_directory()).parent == place


BAD = [
    "COPY (SELECT 1) TO 'x.csv'",
    "PREPARE p AS SELECT 1",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'",
    "SET temp_directory = 'x'",
    "CALL enable_logging(storage_path = 'x')",
    "ATTACH 'e.db' AS read_only",
    "CREATE PERSISTENT SECRET s (TYPE s3)",
    "INSTALL spatial",
    "WITH a AS (COPY (SELECT 1) TO 'x.csv') SELECT 1",
]


@st.composite
def respelled(draw):
    """A refused statement with its keywords re-cased and comments between its tokens."""
    text = draw(st.sampled_from(BAD))
    spans = duckdb.tokenize(text)
    pieces = []
    for i, (start, kind) in enumerate(spans):
        end = spans[i + 1][0] if i + 1 < len(spans) else len(text)
        token = text[start:end].strip()
        if kind == duckdb.token_type.keyword:
            token = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in token)
        gap = draw(st.sampled_from([" ", "  ", "\n", " /* c */ ", " -- c\n"]))
        pieces.append(token + gap)
    prefix = draw(st.sampled_from(["", "SELECT 1; ", "SELECT 1;\nSELECT 2; ", "/* x */ "]))
    return prefix + "".join(pieces)


@settings(max_examples=60, deadline=None)
@given(respelled())
def test_respelled_statements_stay_refused(statement):
    with pytest.raises(QueryError, match="statement refused"):
        check_read_only(statement)


@pytest.mark.parametrize(
    "statement, reason",
    [
        ("CHECKPOINT", "(CHECKPOINT writes the database)"),
        ("force /* now */ checkpoint", "(CHECKPOINT writes the database)"),
        ("SELECT 1; CHECKPOINT memory", "(CHECKPOINT writes the database)"),
        ("ANALYZE", "(ANALYZE changes the database's statistics)"),
        ("VACUUM", "(VACUUM changes the database)"),
        ("USE memory", "(USE changes the default database"),
        ("UPDATE EXTENSIONS", "(UPDATE EXTENSIONS installs extensions"),
        ("FORCE INSTALL spatial", "(installing or loading extensions is not allowed)"),
        ("RESET threads", "(settings are locked)"),
        ("CALL enable_logging()", "(CALL runs functions for their effects"),
    ],
)
def test_a_refusal_names_the_statement_as_typed(statement, reason):
    """DuckDB parses CHECKPOINT as a CALL and ANALYZE as a VACUUM; the refusal (by type)
    says what the statement the user typed does."""
    with pytest.raises(QueryError, match="statement refused") as caught:
        check_read_only(statement)
    assert reason in str(caught.value)


def test_a_long_lived_lake_spills_where_only_its_user_may_look(place, tmp_path, monkeypatch):
    """The web server keeps one Lake for weeks: a temp cleaner removing its spill place gets
    it made again before the next query, and a place someone else made since gets the
    connection rebuilt over a private one."""
    lake, _, _ = place
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(stream, "_FALLBACK_TEMP", [])
    (tmp_path / "tmp").mkdir()
    shared = tmp_path / "tmp" / f"nightlake-{os.getuid()}"
    served = Lake(lake)

    def spill_place() -> Path:
        con = served.cursor()
        try:
            return Path(con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
        finally:
            con.close()

    assert spill_place().parent == shared
    shared.rmdir()  # a cleaner (nothing had spilled yet)
    assert spill_place().parent == shared and shared.is_dir()
    shared.rmdir()
    shared.mkdir(mode=0o777)  # another user's, as far as the check can tell
    shared.chmod(0o777)
    moved = spill_place().parent
    assert moved != shared and moved.parent == tmp_path / "tmp"
    assert stat.S_IMODE(moved.stat().st_mode) == 0o700
