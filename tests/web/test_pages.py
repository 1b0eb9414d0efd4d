"""Every page over the fixture lake: status, the numbers it shows, the charts' mark counts,
compared with Lake.sql of plain queries (not the macros the pages use)."""

from __future__ import annotations

import re

import pytest

from nightlake.lake import Lake


def test_nights_page_lists_every_night_with_its_counts(client, web_lake):
    expected = (
        Lake(web_lake)
        .sql(
            "SELECT night, count(*) AS images, count(DISTINCT visit) AS visits "
            "FROM images GROUP BY night ORDER BY night"
        )
        .to_pylist()
    )
    page = client.get("/")
    assert page.status_code == 200
    rows = re.findall(r'<tr data-night="(\d+)">', page.text)
    assert rows == [r["night"] for r in expected]
    for r in expected:
        assert f'data-col="images" data-level="none" data-value="{r["images"]}"' in _row(
            page.text, r["night"]
        )
        assert f'data-col="visits" data-level="none" data-value="{r["visits"]}"' in _row(
            page.text, r["night"]
        )


def _row(html: str, night: str) -> str:
    return re.search(rf'<tr data-night="{night}">.*?</tr>', html, re.S).group(0)


@pytest.mark.parametrize("url", ["/night/19990101", "/no/such/page"])
def test_unknown_night_or_url_is_a_404_page(client, url):
    page = client.get(url)
    assert page.status_code == 404
    assert '<p id="error"' in page.text


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_only_get_is_allowed(client, method):
    assert getattr(client, method)("/").status_code == 405
