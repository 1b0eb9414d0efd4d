"""Benchmark: ``nightlake serve`` — the stack's start-up, a page's latency, charts (by hand).

Three measurements, each in turns with its floor (A, B, A, B, …), median and best:

1. start-up: a fresh interpreter importing the app (starlette, jinja2, our modules) and
   uvicorn, against one importing the standard library's ``http.server`` (the floor of any
   Python web server) and against ``import nightlake.query.lake`` (what every query pays);
2. a page over HTTP from a running ``nightlake serve`` (loopback, keep-alive off), against
   the floor of the same page: its queries by ``Lake.sql`` in-process, no HTTP, no HTML;
3. the night page's four charts as Vega-Lite specs (what the app sends) against drawing the
   same points server-side with matplotlib into PNGs (the alternative the issue names).

    python bench/serve.py                  # the fixture lake (data/fixtures/collections)
    python bench/serve.py --repeat 9
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NIGHT = "20190402"


def _imports(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def _report(label: str, times: list[float], floor: list[float] | None = None) -> None:
    med, best = statistics.median(times), min(times)
    line = f"  {label:<44} median {med * 1000:8.1f} ms   best {best * 1000:8.1f} ms"
    if floor:
        line += f"   ×{med / statistics.median(floor):6.1f} (median/median)"
    print(line)


def bench_startup(repeat: int) -> None:
    print("1. start-up, fresh interpreter (import only)")
    codes = {
        "stdlib http.server (floor)": "import http.server",
        "nightlake.query.lake (every query)": "import nightlake.query.lake",
        "nightlake.web.app + uvicorn": "import nightlake.web.app, uvicorn",
    }
    times: dict[str, list[float]] = {k: [] for k in codes}
    for _ in range(repeat):
        for label, code in codes.items():
            times[label].append(_imports(code))
    floor = times["stdlib http.server (floor)"]
    for label, got in times.items():
        _report(label, got, None if got is floor else floor)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url) as response:
        response.read()
    return time.perf_counter() - start


def _page_queries(lake, night: str) -> None:
    """What /night/<night> asks of the lake, without HTTP or HTML (the page's floor)."""
    from nightlake.web import queries

    nights = queries.nights(lake)
    queries.night_of(nights, night, lake)
    queries.neighbours(nights, night)
    queries.visits(lake, night)
    queries.focal_plane(lake, night)
    known = queries.image_columns(lake)
    queries.image_rows(lake, night, queries.ImageQuery(), known, 1000)


def bench_pages(lake_dir: Path, repeat: int) -> None:
    from nightlake import Lake
    from nightlake.web import queries

    print("2. a page over HTTP (uvicorn, loopback) against its queries in-process")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nightlake.cli",
            "serve",
            "--lake",
            str(lake_dir),
            "--port",
            str(port),
        ],
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                _get(base + "/static/charts.js")
                break
            except OSError:
                time.sleep(0.1)
        lake = Lake(lake_dir)
        csv = "/sql.csv?q=SELECT+*+FROM+images+WHERE+night+%3D+%2720190402%27"
        cases = {
            "GET /": (lambda: _get(base + "/"), lambda: queries.nights(lake)),
            f"GET /night/{NIGHT}": (
                lambda: _get(f"{base}/night/{NIGHT}"),
                lambda: _page_queries(lake, NIGHT),
            ),
            "GET /sql.csv (one night's images)": (
                lambda: _get(base + csv),
                lambda: lake.sql("SELECT * FROM images WHERE night = '20190402'"),
            ),
        }
        for label, (page, floor) in cases.items():
            page(), floor()  # warm: the server's connection, the footers
            pages, floors = [], []
            for _ in range(repeat):
                pages.append(page())
                start = time.perf_counter()
                floor()
                floors.append(time.perf_counter() - start)
            _report(label + " — its queries (floor)", floors)
            _report(label + " — over HTTP", pages, floors)
    finally:
        server.terminate()
        server.wait()


def _pngs(visit_rows, plane_rows) -> int:
    """The night page's charts drawn by matplotlib (Agg) as PNG bytes; returns their size."""
    import io

    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    size = 0
    for field in ("fwhm_median_arcsec", "zero_point_median", "sky_bg_median"):
        fig = Figure(figsize=(6.4, 1.8), dpi=100)
        ax = fig.subplots()
        ax.plot([r["obs_time"] for r in visit_rows], [r[field] for r in visit_rows], "o")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        size += buffer.tell()
    fig = Figure(figsize=(4.2, 4.2), dpi=100)
    ax = fig.subplots()
    for r in plane_rows:
        ax.add_patch(
            Rectangle(
                (r["x_min_deg"], r["y_min_deg"]),
                r["x_max_deg"] - r["x_min_deg"],
                r["y_max_deg"] - r["y_min_deg"],
            )
        )
    ax.autoscale_view()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return size + buffer.tell()


def _specs(visit_rows, plane_rows) -> int:
    from nightlake.web import charts

    made = [
        charts.visits_chart(f"night-{f}", f, NIGHT, visit_rows, f, f)
        for f in ("fwhm_median_arcsec", "zero_point_median", "sky_bg_median")
    ]
    made.append(charts.focal_plane_chart(NIGHT, plane_rows, "fwhm_median_arcsec", "FWHM"))
    return sum(len(json.dumps(c.spec)) for c in made)


def bench_charts(lake_dir: Path, repeat: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from nightlake import Lake
    from nightlake.web import queries

    print("3. the night page's four charts: Vega-Lite specs against matplotlib PNGs")
    lake = Lake(lake_dir)
    visit_rows, plane_rows = queries.visits(lake, NIGHT), queries.focal_plane(lake, NIGHT)
    png_bytes, spec_bytes = _pngs(visit_rows, plane_rows), _specs(visit_rows, plane_rows)
    pngs, specs = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        _pngs(visit_rows, plane_rows)
        pngs.append(time.perf_counter() - start)
        start = time.perf_counter()
        _specs(visit_rows, plane_rows)
        specs.append(time.perf_counter() - start)
    _report(f"Vega-Lite specs ({spec_bytes} bytes of JSON)", specs)
    _report(f"matplotlib PNGs ({png_bytes} bytes)", pngs, specs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    from nightlake import Lake
    from nightlake.ingest.convert import convert

    with tempfile.TemporaryDirectory() as tmp:
        lake = Path(tmp) / "lake"
        convert(Lake(lake), [str(REPO / "data" / "fixtures" / "collections")])
        bench_startup(args.repeat)
        bench_pages(lake, args.repeat)
        bench_charts(lake, args.repeat)


if __name__ == "__main__":
    main()
