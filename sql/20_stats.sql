-- Survey statistics: per night, per target, per detector, and for the whole survey.
--
-- Every table macro reads its images through query_table(source), default 'images', so
--   * it binds only when called (a lake without images, or a connection without the view,
--     still loads this file), and
--   * it runs on any view or table with the same columns: nightly_stats(source := 'my_view').
-- NaN, +-inf and NULL are missing values; DIMM2SEE = 0.0 means "not measured" (DEEP headers).
-- Exposure time is counted once per visit (an exposure's detectors share one shutter).

CREATE OR REPLACE MACRO finite_or_null(x) AS
    CASE WHEN isfinite(x) THEN x END;
COMMENT ON MACRO finite_or_null IS
    'x when it is a finite number, else NULL (NaN and +-inf become NULL, so aggregates skip them).';

CREATE OR REPLACE MACRO image_quality(source := 'images') AS TABLE
    SELECT
        target,
        night,
        visit,
        detector,
        finite_or_null(exposureTime)::DOUBLE                AS exposure_s,
        finite_or_null(fwhm_arcsec(psfSigma))               AS fwhm_arcsec,
        finite_or_null(zeroPoint)::DOUBLE                   AS zero_point,
        finite_or_null(skyNoise)::DOUBLE                    AS sky_noise,
        finite_or_null(nullif(DIMM2SEE, 0.0))::DOUBLE       AS dimm_seeing_arcsec,
        finite_or_null(airmass)::DOUBLE                     AS airmass,
        obs_time
    FROM query_table(source);
COMMENT ON MACRO TABLE image_quality IS
    'One row per image of source (default images): target, night, visit, detector, exposure_s, fwhm_arcsec, zero_point, sky_noise, dimm_seeing_arcsec, airmass, obs_time; NaN/inf and DIMM2SEE = 0.0 become NULL.';

-- The one place a visit's exposure is counted: its detectors share one shutter, so the visit's
-- exposure is theirs (max, not their sum); nightly, target and survey totals add up visits.
CREATE OR REPLACE MACRO visit_exposure(source := 'images') AS TABLE
    SELECT target, night, visit, max(exposure_s) AS exposure_s
    FROM image_quality(source := source)
    GROUP BY target, night, visit;
COMMENT ON MACRO TABLE visit_exposure IS
    'One row per visit (target, night, visit) of source (default images) with its exposure_s, counted once for all its detectors; the stats macros sum these.';

CREATE OR REPLACE MACRO nightly_stats(source := 'images') AS TABLE
    WITH img AS (SELECT * FROM image_quality(source := source)),
    exposure AS (
        SELECT target, night, sum(exposure_s) AS exposure_s
        FROM visit_exposure(source := source) GROUP BY target, night
    ),
    agg AS (
        SELECT
            target,
            night,
            count(*)                           AS images,
            count(DISTINCT visit)              AS visits,
            count(DISTINCT detector)           AS detectors,
            median(fwhm_arcsec)                AS fwhm_median_arcsec,
            quantile_cont(fwhm_arcsec, 0.1)    AS fwhm_p10_arcsec,
            quantile_cont(fwhm_arcsec, 0.9)    AS fwhm_p90_arcsec,
            median(zero_point)                 AS zero_point_median,
            median(sky_noise)                  AS sky_noise_median,
            median(dimm_seeing_arcsec)         AS dimm_seeing_median_arcsec,
            min(airmass)                       AS airmass_min,
            max(airmass)                       AS airmass_max,
            min(obs_time)                      AS first_obs_time,
            max(obs_time)                      AS last_obs_time
        FROM img GROUP BY target, night
    )
    SELECT agg.target, agg.night, images, visits, detectors, exposure.exposure_s,
           fwhm_median_arcsec, fwhm_p10_arcsec, fwhm_p90_arcsec, zero_point_median,
           sky_noise_median, dimm_seeing_median_arcsec, airmass_min, airmass_max,
           first_obs_time, last_obs_time
    FROM agg JOIN exposure USING (target, night)
    ORDER BY agg.night, agg.target;
COMMENT ON MACRO TABLE nightly_stats IS
    'Per target and night: images, visits, detectors, exposure_s (once per visit), FWHM median/p10/p90 (arcsec), median zero point, sky noise and DIMM seeing, airmass range, first/last obs_time. NaN/NULL ignored.';

CREATE OR REPLACE MACRO target_stats(source := 'images') AS TABLE
    WITH img AS (SELECT * FROM image_quality(source := source)),
    exposure AS (
        SELECT target, sum(exposure_s) AS exposure_s
        FROM visit_exposure(source := source) GROUP BY target
    ),
    agg AS (
        SELECT
            target,
            count(DISTINCT night)              AS nights,
            count(*)                           AS images,
            count(DISTINCT (night, visit))     AS visits,
            count(DISTINCT detector)           AS detectors,
            median(fwhm_arcsec)                AS fwhm_median_arcsec,
            quantile_cont(fwhm_arcsec, 0.1)    AS fwhm_p10_arcsec,
            quantile_cont(fwhm_arcsec, 0.9)    AS fwhm_p90_arcsec,
            median(zero_point)                 AS zero_point_median,
            median(sky_noise)                  AS sky_noise_median,
            median(dimm_seeing_arcsec)         AS dimm_seeing_median_arcsec,
            min(airmass)                       AS airmass_min,
            max(airmass)                       AS airmass_max,
            min(night)                         AS first_night,
            max(night)                         AS last_night,
            min(obs_time)                      AS first_obs_time,
            max(obs_time)                      AS last_obs_time
        FROM img GROUP BY target
    )
    SELECT agg.target, nights, images, visits, detectors, exposure.exposure_s,
           fwhm_median_arcsec, fwhm_p10_arcsec, fwhm_p90_arcsec, zero_point_median,
           sky_noise_median, dimm_seeing_median_arcsec, airmass_min, airmass_max,
           first_night, last_night, first_obs_time, last_obs_time
    FROM agg JOIN exposure USING (target)
    ORDER BY agg.target;
COMMENT ON MACRO TABLE target_stats IS
    'Per target across all its nights: nights, images, visits, detectors, exposure_s (once per visit), FWHM median/p10/p90 (arcsec), median zero point, sky noise and DIMM seeing, airmass range, first/last night and obs_time.';

CREATE OR REPLACE MACRO detector_stats(source := 'images') AS TABLE
    SELECT
        detector,
        count(*)                               AS images,
        count(DISTINCT (night, visit))         AS visits,
        count(DISTINCT night)                  AS nights,
        count(DISTINCT target)                 AS targets,
        sum(exposure_s)                        AS exposure_s,
        median(fwhm_arcsec)                    AS fwhm_median_arcsec,
        quantile_cont(fwhm_arcsec, 0.1)        AS fwhm_p10_arcsec,
        quantile_cont(fwhm_arcsec, 0.9)        AS fwhm_p90_arcsec,
        median(zero_point)                     AS zero_point_median,
        median(sky_noise)                      AS sky_noise_median,
        min(airmass)                           AS airmass_min,
        max(airmass)                           AS airmass_max
    FROM image_quality(source := source)
    GROUP BY detector
    ORDER BY detector;
COMMENT ON MACRO TABLE detector_stats IS
    'Per detector across the survey: images, visits, nights, targets, exposure_s, FWHM median/p10/p90 (arcsec), median zero point and sky noise, airmass range. NaN/NULL ignored.';

CREATE OR REPLACE MACRO survey_stats(source := 'images') AS TABLE
    WITH img AS (SELECT * FROM image_quality(source := source))
    SELECT
        count(DISTINCT target)                 AS targets,
        count(DISTINCT night)                  AS nights,
        count(*)                               AS images,
        count(DISTINCT (night, visit))         AS visits,
        count(DISTINCT detector)               AS detectors,
        (SELECT sum(exposure_s) FROM visit_exposure(source := source)) AS exposure_s,
        median(fwhm_arcsec)                    AS fwhm_median_arcsec,
        quantile_cont(fwhm_arcsec, 0.1)        AS fwhm_p10_arcsec,
        quantile_cont(fwhm_arcsec, 0.9)        AS fwhm_p90_arcsec,
        median(zero_point)                     AS zero_point_median,
        median(sky_noise)                      AS sky_noise_median,
        median(dimm_seeing_arcsec)             AS dimm_seeing_median_arcsec,
        min(airmass)                           AS airmass_min,
        max(airmass)                           AS airmass_max,
        min(night)                             AS first_night,
        max(night)                             AS last_night,
        min(obs_time)                          AS first_obs_time,
        max(obs_time)                          AS last_obs_time
    FROM img;
COMMENT ON MACRO TABLE survey_stats IS
    'One row for the whole survey: targets, nights, images, visits, detectors, exposure_s (once per visit), FWHM median/p10/p90 (arcsec), median zero point, sky noise and DIMM seeing, airmass range, first/last night and obs_time.';
