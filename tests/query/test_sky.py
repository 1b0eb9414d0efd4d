"""images_at / images_in_cone against a brute-force astropy reference.

The reference works in each footprint's own frame (``SkyCoord.skyoffset_frame``): there the
gnomonic projection maps great circles to straight lines, so containment is a planar
point-in-polygon test and the distance to an edge is the least separation to points sampled
along the projected segment. The SQL works on unit vectors; the two share no formula.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

CORNERS = ("tl", "tr", "br", "bl")


def footprint(ra0, dec0, half_w, half_h, angle):
    """Corner (ra, dec) in degrees of a rotated rectangle on the tangent plane at (ra0, dec0)."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c, s = np.cos(angle), np.sin(angle)
    plane = [(-half_w, half_h), (half_w, half_h), (half_w, -half_h), (-half_w, -half_h)]
    x = np.array([np.tan(np.radians(px * c - py * s)) for px, py in plane])
    y = np.array([np.tan(np.radians(px * s + py * c)) for px, py in plane])
    lon, lat = np.arctan(x), np.arctan2(y, np.sqrt(1 + x * x))
    frame = SkyCoord(ra0 * u.deg, dec0 * u.deg).skyoffset_frame()
    sky = SkyCoord(lon * u.rad, lat * u.rad, frame=frame).icrs
    return [(float(r), float(d)) for r, d in zip(sky.ra.deg, sky.dec.deg)]


def _frame(corners):
    """The offset frame centred on the footprint (its corners' mean direction)."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    cs = SkyCoord([c[0] for c in corners] * u.deg, [c[1] for c in corners] * u.deg)
    mean = np.sum(cs.cartesian.xyz.value, axis=1)
    centre = SkyCoord(x=mean[0], y=mean[1], z=mean[2], representation_type="cartesian")
    return cs, SkyCoord(centre.spherical.lon, centre.spherical.lat).skyoffset_frame()


def _project(coord, frame):
    """Gnomonic x, y in ``frame``, and whether the point is on the front hemisphere."""
    off = coord.transform_to(frame)
    lon, lat = off.lon.rad, off.lat.rad
    return np.tan(lon), np.tan(lat) / np.cos(lon), np.cos(lat) * np.cos(lon) > 0


def reference_inside(corners, ras, decs):
    """Per point: 1 inside, 0 outside, -1 too close to an edge to call."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    cs, frame = _frame(corners)
    cx, cy, _ = _project(cs, frame)
    px, py, front = _project(SkyCoord(np.asarray(ras) * u.deg, np.asarray(decs) * u.deg), frame)
    sides, close = [], np.zeros(len(px), bool)
    for i in range(4):
        ax, ay, bx, by = cx[i], cy[i], cx[(i + 1) % 4], cy[(i + 1) % 4]
        cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
        close |= np.abs(cross) / np.hypot(bx - ax, by - ay) < 1e-9
        sides.append(cross > 0)
    sides = np.array(sides)
    inside = front & (sides.all(axis=0) | ~sides.any(axis=0))
    return np.where(close & front, -1, inside.astype(int))


def reference_distance(corners, ras, decs, samples: int = 400):
    """Per point, degrees to the footprint: 0 inside, else to the nearest sampled edge point."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    cs, frame = _frame(corners)
    cx, cy, _ = _project(cs, frame)
    t = np.linspace(0, 1, samples)
    ex = np.concatenate([cx[i] + t * (cx[(i + 1) % 4] - cx[i]) for i in range(4)])
    ey = np.concatenate([cy[i] + t * (cy[(i + 1) % 4] - cy[i]) for i in range(4)])
    lon, lat = np.arctan(ex), np.arctan2(ey, np.sqrt(1 + ex * ex))
    edge = SkyCoord(lon * u.rad, lat * u.rad, frame=frame).icrs
    points = SkyCoord(np.asarray(ras) * u.deg, np.asarray(decs) * u.deg)
    nearest = points[:, None].separation(edge[None, :]).deg.min(axis=1)
    return np.where(reference_inside(corners, ras, decs) == 1, 0.0, nearest)


def write_footprints(path, footprints):
    columns = {"image": pa.array(range(len(footprints)), pa.int64())}
    for i, name in enumerate(CORNERS):
        columns[f"ra_{name}"] = pa.array([f[i][0] for f in footprints], pa.float64())
        columns[f"dec_{name}"] = pa.array([f[i][1] for f in footprints], pa.float64())
    pq.write_table(pa.table(columns), path, row_group_size=16)
    return path


@pytest.fixture
def con():
    import duckdb

    from nightlake.sql import load_macros

    connection = duckdb.connect()
    load_macros(connection)
    yield connection
    connection.close()


def _cluster_centres(rng, n):
    """Anywhere on the sky, straddling RA = 0/360, and near (or at) the poles."""
    kinds = rng.integers(0, 3, n)
    ra = np.where(kinds == 1, rng.uniform(-0.4, 0.4, n) % 360, rng.uniform(0, 360, n))
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    polar = rng.choice([-1, 1], n) * rng.uniform(88.5, 90.0, n)
    return ra, np.where(kinds == 2, polar, dec)


def _random_cases(seed, clusters=24, per=10):
    rng = np.random.default_rng(seed)
    ras, decs = _cluster_centres(rng, clusters)
    for ra0, dec0 in zip(ras, decs):
        dec0 = min(dec0, 89.9)
        feet = [
            footprint(
                (ra0 + rng.normal(0, 0.2) / max(np.cos(np.radians(dec0)), 0.05)) % 360,
                float(np.clip(dec0 + rng.normal(0, 0.2), -89.9, 89.9)),
                rng.uniform(0.02, 0.34),
                rng.uniform(0.02, 0.34),
                rng.uniform(0, np.pi),
            )
            for _ in range(per)
        ]
        points = []
        for _ in range(per):
            f = feet[rng.integers(len(feet))]
            mean = np.mean(np.array(f), axis=0)
            # near a footprint: a corner pulled towards or past the middle
            k = rng.integers(4)
            t = rng.uniform(0, 1.6)
            ra = (f[k][0] + t * (((mean[0] - f[k][0]) + 180) % 360 - 180)) % 360
            dec = float(np.clip(f[k][1] + t * (mean[1] - f[k][1]), -90, 90))
            points.append((ra, dec))
        yield feet, points


@pytest.mark.parametrize("seed", [1])
def test_images_at_matches_the_astropy_reference(con, tmp_path, seed):
    checked = 0
    for n, (feet, points) in enumerate(_random_cases(seed, clusters=12)):
        path = write_footprints(tmp_path / f"f{n}.parquet", feet)
        con.execute(f"CREATE VIEW feet{n} AS SELECT * FROM read_parquet('{path}')")
        got = [
            {
                r[0]
                for r in con.execute(
                    "SELECT image FROM images_at($ra, $dec, source := $s)",
                    {"ra": ra, "dec": dec, "s": f"feet{n}"},
                ).fetchall()
            }
            for ra, dec in points
        ]
        for i, f in enumerate(feet):
            want = reference_inside(f, [p[0] for p in points], [p[1] for p in points])
            for point, hits, w in zip(points, got, want):
                if w >= 0:
                    assert (i in hits) == bool(w), (seed, f, point)
                    checked += 1
    assert checked > 1000


@pytest.mark.parametrize("seed", [4])
def test_images_in_cone_matches_the_astropy_reference(con, tmp_path, seed):
    rng = np.random.default_rng(seed)
    checked = 0
    for n, (feet, points) in enumerate(_random_cases(seed, clusters=6)):
        path = write_footprints(tmp_path / f"f{n}.parquet", feet)
        con.execute(f"CREATE VIEW feet{n} AS SELECT * FROM read_parquet('{path}')")
        radii = rng.uniform(0.001, 0.5, len(points))
        got = [
            dict(
                con.execute(
                    "SELECT image, distance_deg FROM images_in_cone($ra, $dec, $r, source := $s)",
                    {"ra": ra, "dec": dec, "r": float(r), "s": f"feet{n}"},
                ).fetchall()
            )
            for (ra, dec), r in zip(points, radii)
        ]
        for i, f in enumerate(feet):
            want = reference_distance(f, [p[0] for p in points], [p[1] for p in points])
            for point, radius, hits, w in zip(points, radii, got, want):
                if abs(w - radius) < 2e-3:
                    continue  # too close to the rim for a sampled reference
                assert (i in hits) == (w <= radius), (seed, f, point, radius, w)
                if i in hits:
                    assert hits[i] == pytest.approx(w, abs=2e-3)
                checked += 1
    assert checked > 400


def test_a_footprint_across_ra_zero_and_one_around_the_pole(con, tmp_path):
    across = footprint(0.0, 10.0, 0.2, 0.1, 0.3)
    polar = footprint(0.0, 89.95, 0.2, 0.2, 0.0)  # contains the north pole
    assert min(c[0] for c in across) < 1 and max(c[0] for c in across) > 359
    path = write_footprints(tmp_path / "f.parquet", [across, polar])
    con.execute(f"CREATE VIEW f AS SELECT * FROM read_parquet('{path}')")

    def at(ra, dec):
        return sorted(
            r[0]
            for r in con.execute(
                "SELECT image FROM images_at(?, ?, source := 'f')", [ra, dec]
            ).fetchall()
        )

    assert at(0.0, 10.0) == at(359.99, 10.0) == at(0.01, 10.0) == [0]
    assert at(180.0, 10.0) == [] and at(0.0, -10.0) == []  # nor its antipode's mirror
    assert at(0.0, 90.0) == at(123.0, 89.99) == at(250.0, 89.99) == [1]
    assert at(180.0, -89.99) == []  # the antipode of the polar footprint


def test_the_prefilter_reaches_the_parquet_scan(con, tmp_path):
    """Every corner's dec range is a filter of the scan itself (row groups skip by min/max)."""
    feet = [
        footprint(float(r), float(d), 0.1, 0.1, 0.0)
        for r, d in zip(np.linspace(0, 350, 40), np.linspace(-80, 80, 40))
    ]
    path = write_footprints(tmp_path / "f.parquet", feet)
    con.execute(f"CREATE VIEW f AS SELECT * FROM read_parquet('{path}')")
    plan = "\n".join(
        r[1]
        for r in con.execute(
            "EXPLAIN SELECT * FROM images_at(10.0, 10.0, source := 'f')"
        ).fetchall()
    )
    scan = " ".join(line.strip(" │") for line in plan[plan.index("READ_PARQUET") :].splitlines())
    filters = scan[scan.index("Filters:") :]
    for name in CORNERS:
        assert f"(dec_{name} >= 9.0) AND (dec_{name} <= 11.0)" in filters


def test_fixture_images_match_the_reference(fixture_lake):
    """On the DEEP fixtures: each image contains its own centre; cones agree with astropy."""
    from nightlake import Lake

    lake = Lake(fixture_lake)
    rows = lake.sql(
        "SELECT visit, detector, ra, dec, ra_tl, dec_tl, ra_tr, dec_tr, ra_br, "
        "dec_br, ra_bl, dec_bl FROM images"
    ).to_pylist()
    rng = np.random.default_rng(7)
    chosen = list(rng.choice(rows, 12, replace=False))
    got = [
        {
            (r["visit"], r["detector"])
            for r in lake.sql(
                "SELECT visit, detector FROM images_at($ra, $dec)",
                {"ra": row["ra"], "dec": row["dec"]},
            ).to_pylist()
        }
        for row in chosen
    ]
    want = [set() for _ in chosen]
    for other in rows:
        corners = [(other[f"ra_{c}"], other[f"dec_{c}"]) for c in CORNERS]
        inside = reference_inside(corners, [r["ra"] for r in chosen], [r["dec"] for r in chosen])
        for hits, flag in zip(want, inside):
            if flag == 1:
                hits.add((other["visit"], other["detector"]))
    for row, hits, expected in zip(chosen, got, want):
        assert (row["visit"], row["detector"]) in hits
        assert hits == expected


@pytest.mark.parametrize(
    "ra, dec",
    [
        ("214.3829", "-11.4283"),
        ("14h17m31.9s", "-11d25m42s"),
        ("14:17:31.9", "-11:25:42"),
        ("214d22m58s", "-11.4283"),
    ],
)
def test_images_at_cli_reads_degrees_and_sexagesimal(cli, fixture_lake, ra, dec):
    result = cli("images-at", ra, dec, "--lake", fixture_lake, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0])[:4] == ["visit", "detector", "night", "target"]
    assert any((r["detector"], r["night"], r["target"]) == ("1", "20190401", "A0a") for r in rows)


def test_images_at_cli_radius_and_night(cli, fixture_lake):
    near = cli(
        "images-at",
        "214.3829",
        "-11.4283",
        "--radius",
        "1",
        "--night",
        "20190402",
        "--lake",
        fixture_lake,
        "--format",
        "csv",
    )
    assert near.exit_code == 0, near.output
    rows = list(csv.DictReader(io.StringIO(near.stdout)))
    assert rows and all(r["night"] == "20190402" for r in rows)
    assert "distance_deg" in rows[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["abc", "-13"], "cannot read the position"),
        (["10", "95"], "cannot read the position"),
        (["10", "-13", "--radius", "-1"], "--radius"),
        (["10", "-13", "--radius", "nan"], "--radius"),
    ],
)
def test_images_at_cli_bad_input_is_one_error_line(fixture_lake, args, needle):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "nightlake.cli", "images-at", *args, "--lake", str(fixture_lake)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
