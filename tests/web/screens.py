"""Screenshots of the pages of ``nightlake serve``: the browser tests write them under their tmp
dir, docs/make_screenshots.py into docs/ (the pictures of the guide and the README)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

#: what a screenshot shows: the width most laptops give a browser window
VIEWPORT = {"width": 1200, "height": 800}
#: a night with two targets, four detectors and several visits
NIGHT = "20190402"
SQL_EXAMPLE = (
    "SELECT night, target, count(*) AS images, round(median(fwhm_arcsec(psfSigma)), 3) AS fwhm\n"
    "FROM images WHERE night >= $since GROUP BY ALL ORDER BY ALL"
)
#: name → URL of each page (docs/serve-NAME.png)
PAGES = {
    "nights": "/",
    "night": f"/night/{NIGHT}",
    "detrends": "/detrends",
    "sql": "/sql?" + urlencode({"q": SQL_EXAMPLE, "p.since": "20190101"}),
}


def wait_for_charts(page) -> None:
    """Wait until Vega has drawn (or failed to draw) every chart of the page."""
    page.wait_for_function(
        "[...document.querySelectorAll('figure.chart')].every(f => f.dataset.rendered)"
    )


def shoot(page, name: str, out_dir: Path, *, full_page: bool = True) -> Path:
    """Open page ``name`` of :data:`PAGES`, wait for its charts, write out_dir/serve-NAME.png."""
    page.goto(PAGES[name])
    wait_for_charts(page)
    path = out_dir / f"serve-{name}.png"
    page.screenshot(path=path, full_page=full_page)
    return path
