-- Sky queries: which images cover a position, or come within a radius of it.
--
-- A detector footprint is the spherical quadrilateral whose corners are (ra_tl, dec_tl),
-- (ra_tr, dec_tr), (ra_br, dec_br), (ra_bl, dec_bl) in that order around it, and whose edges
-- are great-circle arcs. Geometry is done on unit vectors, so RA = 0/360 and the poles are no
-- special case:
--   * inside: the point lies on the same side of all four edge planes (the sign of the triple
--     products (c_i x c_i+1) . p agrees; either orientation is accepted) and in the footprint's
--     own hemisphere (p . (c1+c2+c3+c4) > 0, which rules out the antipodal quadrilateral);
--   * distance: 0 inside, else the least distance to an edge arc (to the great circle when the
--     point projects inside the arc, else to the nearer end).
-- Before the exact test, a box on the corner columns (every corner within max_size_deg of the
-- position in dec, and in RA scaled by the declination, wrap-aware) lets DuckDB skip row
-- groups by their min/max statistics. A footprint wider than max_size_deg (default 1 degree;
-- a DECam CCD spans 0.3) would be missed: raise it for larger footprints.

CREATE OR REPLACE MACRO sky_vec(ra, dec) AS
    [cos(radians(dec)) * cos(radians(ra)),
     cos(radians(dec)) * sin(radians(ra)),
     sin(radians(dec))]::DOUBLE[3];
COMMENT ON MACRO sky_vec IS
    'Unit vector [x, y, z] (DOUBLE[3]) of the position (ra, dec) in degrees.';

CREATE OR REPLACE MACRO sky_cross(a, b) AS
    [a[2] * b[3] - a[3] * b[2],
     a[3] * b[1] - a[1] * b[3],
     a[1] * b[2] - a[2] * b[1]]::DOUBLE[3];
COMMENT ON MACRO sky_cross IS
    'Cross product a x b of two DOUBLE[3] vectors.';

CREATE OR REPLACE MACRO sky_arc_distance(p, a, b) AS (
    WITH g AS (SELECT sky_cross(a, b) AS n),
    k AS (SELECT n, array_dot_product(n, n) AS nn FROM g)
    SELECT CASE
        WHEN nn > 0
             AND array_dot_product(sky_cross(a, p), n) >= 0
             AND array_dot_product(sky_cross(p, b), n) >= 0
        THEN degrees(asin(least(1.0, abs(array_dot_product(p, n)) / sqrt(nn))))
        ELSE degrees(least(
            2 * asin(least(1.0, array_distance(p, a) / 2)),
            2 * asin(least(1.0, array_distance(p, b) / 2))))
    END FROM k);
COMMENT ON MACRO sky_arc_distance IS
    'Angular distance in degrees from unit vector p to the great-circle arc from a to b (the shorter arc; DOUBLE[3] unit vectors).';

CREATE OR REPLACE MACRO sky_box(at_ra, at_dec, ra_c, dec_c, size_deg) AS
    dec_c BETWEEN at_dec - size_deg AND at_dec + size_deg
    AND (abs(at_dec) + size_deg >= 89.0
         OR ra_c BETWEEN at_ra - size_deg / cos(radians(abs(at_dec) + size_deg))
                     AND at_ra + size_deg / cos(radians(abs(at_dec) + size_deg))
         OR ra_c BETWEEN at_ra - 360 - size_deg / cos(radians(abs(at_dec) + size_deg))
                     AND at_ra - 360 + size_deg / cos(radians(abs(at_dec) + size_deg))
         OR ra_c BETWEEN at_ra + 360 - size_deg / cos(radians(abs(at_dec) + size_deg))
                     AND at_ra + 360 + size_deg / cos(radians(abs(at_dec) + size_deg)));
COMMENT ON MACRO sky_box IS
    'True when the corner (ra_c, dec_c) lies within size_deg of (at_ra, at_dec) in dec, and in RA scaled by cos(dec) (wrap-aware; any RA within a degree of a pole): the prefilter of images_at and images_in_cone.';

CREATE OR REPLACE MACRO sky_footprint_candidates(at_ra, at_dec, size_deg, source) AS TABLE
    WITH box AS (
        SELECT * FROM query_table(source)
        WHERE sky_box(at_ra, at_dec, ra_tl, dec_tl, size_deg)
          AND sky_box(at_ra, at_dec, ra_tr, dec_tr, size_deg)
          AND sky_box(at_ra, at_dec, ra_br, dec_br, size_deg)
          AND sky_box(at_ra, at_dec, ra_bl, dec_bl, size_deg)
    ),
    corners AS (
        SELECT *,
               sky_vec(at_ra, at_dec) AS _sky_p,
               sky_vec(ra_tl, dec_tl) AS _sky_c1, sky_vec(ra_tr, dec_tr) AS _sky_c2,
               sky_vec(ra_br, dec_br) AS _sky_c3, sky_vec(ra_bl, dec_bl) AS _sky_c4
        FROM box
    ),
    sides AS (
        SELECT *,
               array_dot_product(sky_cross(_sky_c1, _sky_c2), _sky_p) AS _sky_s1,
               array_dot_product(sky_cross(_sky_c2, _sky_c3), _sky_p) AS _sky_s2,
               array_dot_product(sky_cross(_sky_c3, _sky_c4), _sky_p) AS _sky_s3,
               array_dot_product(sky_cross(_sky_c4, _sky_c1), _sky_p) AS _sky_s4,
               array_dot_product(
                   [_sky_c1[1] + _sky_c2[1] + _sky_c3[1] + _sky_c4[1],
                    _sky_c1[2] + _sky_c2[2] + _sky_c3[2] + _sky_c4[2],
                    _sky_c1[3] + _sky_c2[3] + _sky_c3[3] + _sky_c4[3]]::DOUBLE[3],
                   _sky_p) AS _sky_front
        FROM corners
    )
    SELECT *,
           _sky_front > 0 AND (
               (_sky_s1 >= 0 AND _sky_s2 >= 0 AND _sky_s3 >= 0 AND _sky_s4 >= 0)
               OR (_sky_s1 <= 0 AND _sky_s2 <= 0 AND _sky_s3 <= 0 AND _sky_s4 <= 0))
               AS _sky_inside
    FROM sides;
COMMENT ON MACRO TABLE sky_footprint_candidates IS
    'The rows of source whose four corners pass sky_box around (at_ra, at_dec), with helper columns _sky_* (corner vectors, edge signs, _sky_inside): the shared first step of images_at and images_in_cone.';

CREATE OR REPLACE MACRO images_at(ra, dec, source := 'images', max_size_deg := 1.0) AS TABLE
    SELECT * EXCLUDE (_sky_p, _sky_c1, _sky_c2, _sky_c3, _sky_c4,
                      _sky_s1, _sky_s2, _sky_s3, _sky_s4, _sky_front, _sky_inside)
    FROM sky_footprint_candidates(ra, dec, max_size_deg, source)
    WHERE _sky_inside;
COMMENT ON MACRO TABLE images_at IS
    'Every image of source (default images; all its columns) whose footprint (the four corner columns, great-circle edges) contains the position (ra, dec) in degrees; footprints wider than max_size_deg (default 1) are not found.';

CREATE OR REPLACE MACRO images_in_cone(ra, dec, radius_deg, source := 'images',
                                       max_size_deg := 1.0) AS TABLE
    WITH near AS (
        SELECT *,
               CASE WHEN _sky_inside THEN 0.0 ELSE least(
                   sky_arc_distance(_sky_p, _sky_c1, _sky_c2),
                   sky_arc_distance(_sky_p, _sky_c2, _sky_c3),
                   sky_arc_distance(_sky_p, _sky_c3, _sky_c4),
                   sky_arc_distance(_sky_p, _sky_c4, _sky_c1)) END AS distance_deg
        FROM sky_footprint_candidates(ra, dec, max_size_deg + radius_deg, source)
    )
    SELECT * EXCLUDE (_sky_p, _sky_c1, _sky_c2, _sky_c3, _sky_c4,
                      _sky_s1, _sky_s2, _sky_s3, _sky_s4, _sky_front, _sky_inside)
    FROM near
    WHERE distance_deg <= radius_deg;
COMMENT ON MACRO TABLE images_in_cone IS
    'Every image of source (default images; all its columns, plus distance_deg: 0 inside, else the angular distance to the footprint''s nearest edge) whose footprint comes within radius_deg of (ra, dec), all in degrees.';
