"""/sql and its downloads: the read-only guard of ``nightlake sql``, bound parameters, the
row cap and the time limit; downloads equal Lake.sql of the same query."""

from __future__ import annotations

import csv
import io
import json
import os
import re

import pytest

from nightlake import Lake

QUERY = (
    "SELECT night, visit, detector, psfSigma, obs_time FROM images "
    "WHERE night = $night ORDER BY visit, detector"
)


def _error(html: str) -> str:
    return re.search(r'<p id="error" class="error">([^<]*)</p>', html).group(1)


def _result_cells(html: str) -> list[list[str]]:
    table = re.search(r'<table id="result".*?</table>', html, re.S).group(0)
    body = table.split("<tbody>")[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]


def test_a_query_with_a_bound_parameter_shows_its_rows(client, web_lake):
    expected = Lake(web_lake).sql(QUERY, {"night": "20190402"})
    page = client.get("/sql", params={"q": QUERY, "p.night": "20190402"})
    assert page.status_code == 200
    cells = _result_cells(page.text)
    assert len(cells) == expected.num_rows
    assert [c[1] for c in cells] == [str(v) for v in expected.column("visit").to_pylist()]
    assert re.search(r'<input id="param-night" name="p.night" value="20190402">', page.text)
    assert f'<p id="row-count">{expected.num_rows} rows</p>' in page.text
    for fmt in ("csv", "parquet", "json"):
        link = re.search(rf'id="download-{fmt}" href="([^"]+)"', page.text).group(1)
        assert link.startswith(f"/sql.{fmt}?")


def test_a_missing_parameter_is_a_400_that_asks_for_it(client):
    page = client.get("/sql", params={"q": QUERY})
    assert page.status_code == 400
    assert "$night" in _error(page.text)
    assert 'id="param-night"' in page.text


def test_a_parameter_the_query_no_longer_uses_is_ignored(client):
    page = client.get("/sql", params={"q": "SELECT 41 + 1 AS answer", "p.night": "20190402"})
    assert page.status_code == 200
    assert _result_cells(page.text) == [["42"]]


@pytest.mark.parametrize(
    "query",
    ["SELEC 1", "SELECT * FROM no_such_table", "SELECT 1 +", "SELECT error('boom')"],
)
def test_bad_sql_is_one_error_line_and_400(client, query):
    page = client.get("/sql", params={"q": query})
    assert page.status_code == 400
    assert _error(page.text).strip()
    assert "Traceback" not in page.text
    assert 'id="result"' not in page.text


@pytest.mark.parametrize(
    "query",
    [
        "COPY (SELECT 1) TO '/tmp/nightlake-web-refused.csv'",
        "SET threads = 1",
        "ATTACH '/tmp/nightlake-web-refused.db' AS w",
        "INSTALL httpfs",
        "EXPORT DATABASE '/tmp/nightlake-web-refused'",
        "WITH x AS (SELECT 1) SELECT * FROM x; COPY images TO '/tmp/nightlake-web-refused.parquet'",
    ],
)
def test_a_statement_that_could_write_is_refused_with_403_and_the_reason(client, query):
    for url in ("/sql", "/sql.csv"):
        page = client.get(url, params={"q": query})
        assert page.status_code == 403
        assert "statement refused (" in _error(page.text)


def test_one_visitors_tables_and_views_are_not_the_next_ones(client, web_lake):
    replaced = client.get(
        "/sql", params={"q": "CREATE OR REPLACE VIEW images AS SELECT 1 AS x; SELECT * FROM images"}
    )
    assert replaced.status_code == 200
    count = Lake(web_lake).sql("SELECT count(*) AS n FROM images").column("n")[0].as_py()
    page = client.get("/sql", params={"q": "SELECT count(*) AS n FROM images"})
    assert _result_cells(page.text) == [[str(count)]]


def test_a_table_or_macro_one_query_creates_is_gone_for_the_next(client):
    made = client.get(
        "/sql",
        params={"q": "CREATE TABLE t AS SELECT 1 AS x; CREATE MACRO m() AS 7; SELECT m() FROM t"},
    )
    assert _result_cells(made.text) == [["7"]]
    for query in ("SELECT * FROM t", "SELECT m()"):
        assert client.get("/sql", params={"q": query}).status_code == 400


@pytest.mark.parametrize(
    "query",
    ["BEGIN TRANSACTION", "SELECT 1; COMMIT", "ATTACH ':memory:' AS scratch", "DETACH scratch"],
)
def test_transaction_control_attach_and_detach_are_not_for_a_shared_server(client, query):
    page = client.get("/sql", params={"q": query})
    assert page.status_code == 400
    assert "use nightlake sql" in _error(page.text)


def test_csv_parquet_and_json_downloads_equal_lake_sql(client, web_lake):
    import pyarrow.parquet as pq

    params = {"q": QUERY, "p.night": "20190402"}
    expected = Lake(web_lake).sql(QUERY, {"night": "20190402"})

    parquet = client.get("/sql.parquet", params=params)
    assert parquet.status_code == 200
    assert "attachment" in parquet.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.schema == expected.schema
    assert repr(table.to_pylist()) == repr(expected.to_pylist())  # repr: NaN equals NaN

    rows = list(csv.DictReader(io.StringIO(client.get("/sql.csv", params=params).text)))
    assert [r["visit"] for r in rows] == [str(v) for v in expected.column("visit").to_pylist()]
    sigmas = expected.column("psfSigma").to_pylist()
    assert repr([float(r["psfSigma"]) for r in rows]) == repr(sigmas)

    data = json.loads(client.get("/sql.json", params=params).text)
    assert [d["detector"] for d in data] == expected.column("detector").to_pylist()
    assert [d["psfSigma"] for d in data] == [None if s != s else s for s in sigmas]
    assert [d["obs_time"] for d in data] == [
        t.isoformat() for t in expected.column("obs_time").to_pylist()
    ]


def test_an_unknown_download_format_is_a_404(client):
    assert client.get("/sql.xlsx", params={"q": "SELECT 1"}).status_code == 404


@pytest.fixture(scope="module")
def capped(web_lake):
    """The app with small limits: 10 rows on the page, 100 in a download, 0.2 s a query."""
    from starlette.testclient import TestClient

    from nightlake.web.app import create_app
    from nightlake.web.settings import ServeSettings

    settings = ServeSettings(query_seconds=0.2, row_cap=10, download_row_cap=100)
    with TestClient(create_app(web_lake, settings)) as test_client:
        yield test_client


def test_the_page_shows_at_most_row_cap_rows_and_says_so(capped):
    page = capped.get("/sql", params={"q": "SELECT * FROM range(50)"})
    assert page.status_code == 200
    assert len(_result_cells(page.text)) == 10
    assert 'id="row-cap"' in page.text
    exact = capped.get("/sql", params={"q": "SELECT * FROM range(10)"})
    assert len(_result_cells(exact.text)) == 10
    assert 'id="row-cap"' not in exact.text


def test_a_wide_result_shows_fewer_rows_so_the_page_stays_a_page(client):
    """Rows × columns shown stay within PAGE_CELLS; the note says why rows were left out,
    and a download of the same query is whole."""
    from nightlake.web.queries import PAGE_CELLS

    columns = 2_000
    query = (
        "SELECT " + ", ".join(f"i + {c} AS c{c}" for c in range(columns)) + " FROM range(80) t(i)"
    )
    page = client.get("/sql", params={"q": query})
    assert page.status_code == 200
    rows = _result_cells(page.text)
    assert len(rows) == PAGE_CELLS // columns == 50 and len(rows[0]) == columns
    assert rows[-1][:2] == ["49", "50"]
    note = re.search(r'<p id="row-cap"[^>]*>(.*?)</p>', page.text).group(1)
    assert "first 50 rows" in note and "100,000 cells" in note
    download = client.get("/sql.csv", params={"q": query})
    assert len(download.text.splitlines()) == 81


def test_a_download_is_whole_or_refused_never_cut(capped):
    whole = capped.get("/sql.csv", params={"q": "SELECT * FROM range(100)"})
    assert whole.status_code == 200
    assert len(whole.text.splitlines()) == 101
    refused = capped.get("/sql.csv", params={"q": "SELECT * FROM range(101)"})
    assert refused.status_code == 400
    assert "download_row_cap" in _error(refused.text)


@pytest.mark.parametrize("url", ["/sql", "/sql.csv"])
def test_a_query_past_the_time_limit_is_interrupted(capped, url):
    # hours of work at any speed: only the interruption can end it
    endless = "SELECT sum(hash(i)) FROM range(1000000000000000) t(i)"
    page = capped.get(url, params={"q": endless})
    assert page.status_code == 400
    assert "interrupted" in _error(page.text) and "query_seconds" in _error(page.text)
    after = capped.get("/sql", params={"q": "SELECT 42 AS answer"})
    assert _result_cells(after.text) == [["42"]]


def test_the_page_reads_the_lake_and_no_other_file(client, web_lake, tmp_path):
    """A visitor's SQL runs with DuckDB's external access off but for the lake: what the
    server's user may read elsewhere stays unread, the lake's files stay readable."""
    from urllib.parse import quote

    secret = tmp_path / "secret.txt"
    secret.write_text("not for visitors")
    for outside in (str(secret), f"{web_lake}/../{tmp_path.name}/secret.txt", "/etc/hostname"):
        page = client.get("/sql?q=" + quote(f"SELECT content FROM read_text('{outside}')"))
        assert page.status_code == 400 and "not for visitors" not in page.text
        assert "disabled by configuration" in _error(page.text)
    listing = client.get("/sql?q=" + quote(f"SELECT count(*) FROM glob('{tmp_path}/*')"))
    assert listing.status_code == 400
    inside = client.get(
        "/sql?q=" + quote(f"SELECT count(*) FROM read_parquet('{web_lake}/images/**/*.parquet')")
    )
    assert inside.status_code == 200
    assert _result_cells(inside.text) == [
        [str(Lake(web_lake).sql("SELECT count(*) AS n FROM images").column("n")[0])]
    ]
    # nightlake sql and Lake.sql are the user's own: they may read their files
    assert Lake(web_lake).sql(f"SELECT content FROM read_text('{secret}')").num_rows == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},
    ],
)
def test_a_query_another_site_sends_is_shown_not_run(client, headers):
    """A link or an image on another site's page cannot make the server run SQL: the page
    shows the query to be read and run from here, a download is refused."""
    url = "/sql?q=SELECT+count(*)+FROM+images"
    page = client.get(url, headers=headers)
    assert page.status_code == 200
    assert 'id="elsewhere"' in page.text and 'id="result"' not in page.text
    assert "SELECT count(*) FROM images" in page.text  # in the form, to be read
    download = client.get("/sql.csv?q=SELECT+1", headers=headers)
    assert download.status_code == 403 and "another site" in download.text
    for own in ({"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "none"}, {}):
        assert 'id="result"' in client.get(url, headers=own).text
    own_origin = {"origin": "http://testserver"}
    assert client.get("/sql.csv?q=SELECT+1", headers=own_origin).status_code == 200


def test_a_lake_whose_images_are_linked_from_elsewhere_is_still_read(lake_copy, tmp_path):
    """The confined page allows where the lake's images really are: the
    views read resolved paths, so images/ linked to another disk was refused."""
    import shutil

    from starlette.testclient import TestClient

    from nightlake.web.app import create_app

    store = tmp_path / "store"
    store.mkdir()
    shutil.move(str(lake_copy / "images"), str(store / "images"))
    (lake_copy / "images").symlink_to(store / "images")
    want = Lake(lake_copy).sql("SELECT count(*) AS n FROM images").column("n")[0].as_py()
    with TestClient(create_app(lake_copy)) as client:
        page = client.get("/sql", params={"q": "SELECT count(*) FROM images"})
        assert page.status_code == 200, page.text
        assert _result_cells(page.text) == [[str(want)]]
        assert client.get("/").status_code == 200


def test_a_linked_images_directory_is_no_way_out_of_the_lake(lake_copy, tmp_path):
    """DuckDB folds ``..`` by the text of a path and the system follows links: with images/
    linked from another disk, ``images/../x`` was checked as inside the lake and read
    beside the images. Only where the images and the mirror really are is allowed now."""
    import shutil

    from starlette.testclient import TestClient

    from nightlake.web.app import create_app

    store = tmp_path / "store" / "x"
    store.mkdir(parents=True)
    shutil.move(str(lake_copy / "images"), str(store / "images"))
    (lake_copy / "images").symlink_to(store / "images")
    (store / "secret.txt").write_text("not for visitors")
    with TestClient(create_app(lake_copy)) as client:
        for way in (lake_copy / "images" / "..", store / "images" / ".."):
            query = f"SELECT content FROM read_text('{way}/secret.txt')"
            page = client.get("/sql", params={"q": query})
            assert page.status_code == 400 and "not for visitors" not in page.text
            assert "disabled by configuration" in _error(page.text)
        assert client.get("/sql", params={"q": "SELECT count(*) FROM images"}).status_code == 200


def test_a_lake_with_a_linked_directory_inside_is_not_served(lake_copy, tmp_path, cli, busy_port):
    """A link to a directory inside the images (a night kept elsewhere) would be a way out
    (``night=…/../x``): a confined connection refuses the lake, and serve says so at start."""
    import shutil

    from nightlake.errors import LakeError

    night = next((lake_copy / "images").rglob("night=*"))
    elsewhere = tmp_path / "elsewhere" / night.name
    elsewhere.parent.mkdir()
    shutil.move(str(night), str(elsewhere))
    night.symlink_to(elsewhere)
    with pytest.raises(LakeError, match="a link to a directory inside the lake"):
        Lake(lake_copy, confined=True).sql("SELECT 1")
    assert Lake(lake_copy).sql("SELECT count(*) AS n FROM images").num_rows == 1  # the CLI's
    done = cli("serve", "--lake", lake_copy, "--port", busy_port)  # were it reached, listen fails
    assert done.exit_code == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith(
        f"{night}: a link to a directory inside the lake; a confined query could leave the "
        "lake through it (…/..): replace it with the directory, or link the lake's images/ "
        "as a whole"
    )


def test_a_lake_the_check_cannot_list_is_not_served(lake_copy):
    """A directory the link check cannot list may hide a link out: refused. (Here a path
    past the system's length limit; for another user, a directory without read access.)"""
    from nightlake.errors import LakeError

    fd = os.open(lake_copy / "images", os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 250 characters: past PATH_MAX (4096)
            os.mkdir("d" * 250, dir_fd=fd)
            inner = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
    with pytest.raises(LakeError, match="cannot list it to check for links out of the lake"):
        Lake(lake_copy, confined=True).sql("SELECT 1")


def test_serve_warns_where_others_may_write_the_lake(lake_copy, cli, busy_port):
    """A directory of the images others may write could get a link out while the server
    runs (the check holds when a connection is made): serve says so before it starts."""
    shared = next((lake_copy / "images").iterdir())
    shared.chmod(0o775)
    done = cli("serve", "--lake", lake_copy, "--port", busy_port)  # it stops after the warning
    warning, error = done.stderr.strip().splitlines()
    assert warning == (
        f"nightlake: warning: {shared} may be written by other users than you: a link or a "
        "rename there while this serves could lead the page's queries out of the lake"
    )
    assert "Address already in use" in error


@pytest.mark.parametrize("where", ["the lake", "above it"])
def test_serve_warns_where_others_may_swap_the_images(lake_copy, cli, where, busy_port):
    """Whoever may write the lake's own directory could put another ``images`` link there,
    and whoever may write a directory above it (not sticky) could rename the lake away."""
    from nightlake.query.stream import writable_by_others

    loose = lake_copy if where == "the lake" else lake_copy.parent
    loose.chmod(0o777 if where == "the lake" else 0o775)
    found = writable_by_others(Lake(lake_copy))
    assert found == [str(loose)]
    loose.chmod(0o1777)  # sticky: only the owner of an entry may rename it
    found = writable_by_others(Lake(lake_copy))
    assert found == ([str(loose)] if where == "the lake" else [])
    done = cli("serve", "--lake", lake_copy, "--port", busy_port)
    assert done.stderr.startswith(f"nightlake: warning: {loose} may be written") == (
        where == "the lake"
    )
