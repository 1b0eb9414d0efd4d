"""Regenerate docs/serve-*.png: one screenshot per page of ``nightlake serve``.

    .venv/bin/python docs/make_screenshots.py            # needs /usr/bin/chromium

Builds the web tests' lake (tests/web/lake_fixture.py) in a temp dir, serves it on a free
loopback port and shoots each page of tests/web/screens.py at 1200×800 (the top of the page,
what a reader sees first) with Debian's Chromium driven by Playwright.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from web.lake_fixture import build_web_lake  # noqa: E402  (the web tests' helpers)
from web.live_server import live_server  # noqa: E402
from web.screens import PAGES, VIEWPORT, shoot  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    # a fixed place: the page header shows the lake's path
    work = Path(tempfile.gettempdir()) / "nightlake-screenshots"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        lake = build_web_lake(work)
        with live_server(lake, work / "serve.log") as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium)
            page = browser.new_page(viewport=VIEWPORT, base_url=url)
            for name in PAGES:
                print(shoot(page, name, args.out, full_page=False))
            browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
