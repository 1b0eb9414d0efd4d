-- The night report: one row per night, per visit, and per detector of a night (the pages of
-- `nightlake serve` are drawn from these; any DuckDB client can ask the same).
-- Like the stats macros, each reads query_table(source) (default 'images') and treats NaN,
-- +-inf and NULL as missing.

CREATE OR REPLACE MACRO night_summary(source := 'images') AS TABLE
    SELECT
        night::VARCHAR                                          AS night,
        string_agg(DISTINCT target, ', ' ORDER BY target)       AS targets,
        string_agg(DISTINCT band, ', ' ORDER BY band)           AS bands,
        count(*)                                                AS images,
        count(DISTINCT visit)                                   AS visits,
        median(finite_or_null(fwhm_arcsec(psfSigma)))           AS fwhm_median_arcsec,
        median(finite_or_null(zeroPoint))::DOUBLE               AS zero_point_median,
        median(finite_or_null(skyBg))::DOUBLE                   AS sky_bg_median,
        min(obs_time)                                           AS first_obs_time,
        max(obs_time)                                           AS last_obs_time
    FROM query_table(source)
    GROUP BY night
    ORDER BY night;
COMMENT ON MACRO TABLE night_summary IS
    'Per night of source (default images): targets and bands (comma-separated), images, visits, median FWHM (arcsec), zero point and sky background (skyBg), first/last obs_time. NaN/NULL ignored.';

CREATE OR REPLACE MACRO visit_summary(source := 'images') AS TABLE
    SELECT
        night::VARCHAR                                          AS night,
        visit,
        any_value(target ORDER BY detector)                     AS target,
        any_value(band ORDER BY detector)                       AS band,
        min(obs_time)                                           AS obs_time,
        max(finite_or_null(exposureTime))::DOUBLE               AS exposure_s,
        count(*)                                                AS images,
        median(finite_or_null(fwhm_arcsec(psfSigma)))           AS fwhm_median_arcsec,
        median(finite_or_null(zeroPoint))::DOUBLE               AS zero_point_median,
        median(finite_or_null(skyBg))::DOUBLE                   AS sky_bg_median,
        median(finite_or_null(airmass))::DOUBLE                 AS airmass_median
    FROM query_table(source)
    GROUP BY night, visit
    ORDER BY night, obs_time, visit;
COMMENT ON MACRO TABLE visit_summary IS
    'Per night and visit of source (default images): target, band, obs_time (earliest detector), exposure_s, images, median FWHM (arcsec), zero point, sky background (skyBg) and airmass over its detectors. NaN/NULL ignored.';

-- A detector's corners relative to its visit's pointing, in degrees on the sky (east = +RA,
-- RA offsets times cos(dec), wrapped across 0/360): the focal-plane layout comes from the
-- data, so any camera and any subset of detectors draws where it really is.
CREATE OR REPLACE MACRO sky_offset_ra(ra, ra0, dec0) AS
    (((ra - ra0 + 540.0) % 360.0) - 180.0) * cos(radians(dec0));
COMMENT ON MACRO sky_offset_ra IS
    'East offset (deg) of right ascension ra from ra0 at declination dec0: (ra - ra0) wrapped to [-180, 180) times cos(dec0). [unit: deg]';

CREATE OR REPLACE MACRO focal_plane(source := 'images') AS TABLE
    WITH corners AS (
        SELECT night::VARCHAR AS night, detector,
               [sky_offset_ra(ra_tl, pointing_ra, pointing_dec),
                sky_offset_ra(ra_tr, pointing_ra, pointing_dec),
                sky_offset_ra(ra_br, pointing_ra, pointing_dec),
                sky_offset_ra(ra_bl, pointing_ra, pointing_dec)] AS xs,
               [dec_tl - pointing_dec, dec_tr - pointing_dec,
                dec_br - pointing_dec, dec_bl - pointing_dec] AS ys,
               finite_or_null(fwhm_arcsec(psfSigma)) AS fwhm,
               finite_or_null(zeroPoint)::DOUBLE AS zp,
               finite_or_null(skyBg)::DOUBLE AS sky
        FROM query_table(source)
    )
    SELECT night, detector,
           median(list_min(xs)) AS x_min_deg, median(list_max(xs)) AS x_max_deg,
           median(list_min(ys)) AS y_min_deg, median(list_max(ys)) AS y_max_deg,
           count(*) AS images,
           median(fwhm) AS fwhm_median_arcsec,
           median(zp) AS zero_point_median,
           median(sky) AS sky_bg_median
    FROM corners
    GROUP BY night, detector
    ORDER BY night, detector;
COMMENT ON MACRO TABLE focal_plane IS
    'Per night and detector of source (default images): the detector''s extent relative to its visits'' pointing (x_min/x_max_deg east, y_min/y_max_deg north; medians over the night''s visits), images, median FWHM (arcsec), zero point and sky background.';
