-- Auditing a detrend database and its coverage of the lake's images. Nothing here ranks
-- records: which record wins is always asked of resolve_detrends (40_detrends.sql), so the
-- precedence rules stay written once in SQL.


-- The class an image (or a record) falls in for a type, as reports label it: the band (else
-- the filter) for flats and fringes, the exposure time for darks, 'any' otherwise. Written
-- once here for coverage, the audit's findings and the coverage picture.
CREATE OR REPLACE MACRO detrend_class(detrend_type, filter, band, exptime) AS
    CASE WHEN detrend_type IN ('flat', 'fringe') THEN coalesce(band, filter)
         WHEN detrend_type = 'dark' THEN exptime::DOUBLE::VARCHAR || ' s'
         ELSE 'any' END;
COMMENT ON MACRO detrend_class IS
    'The label of an image''s class for a detrend type, as reports show it (detrend_fkey and detrend_ekey are the keys resolution joins on): detrend_class(type, filter, band, exptime): band (else filter) for flats and fringes, ''<exptime> s'' for darks (exptime as DOUBLE: ''30.0 s''), ''any'' otherwise.';

-- A filter name's short band, its first word: what a record's filter class is told by (an
-- image's band comes with it). nightlake.detrends.images.band_of is the same rule in Python.
CREATE OR REPLACE MACRO filter_band(filter) AS
    nullif(regexp_extract(filter, '[^ \t\n\f\r]+'), '');
COMMENT ON MACRO filter_band IS
    'The short band of a physical filter name, its first word: filter_band(''VR DECam c0007 6300.0 2600.0'') = ''VR''; NULL for an empty or blank name.';

-- How a group of images is served, from its counts: the worst rule any of them gets.
CREATE OR REPLACE MACRO coverage_rule(recent, none) AS
    CASE WHEN none > 0 THEN 'none' WHEN recent > 0 THEN 'recent' ELSE 'exact' END;
COMMENT ON MACRO coverage_rule IS
    'The worst rule serving a group of images, from the recent and none counts of coverage: coverage_rule(recent, none): ''none'' when an image has no detrend, else ''recent'' when one is served by the fallback, else ''exact''.';


-- Per night x CCD x filter class: how the images of `source` are served.
CREATE OR REPLACE MACRO coverage(detrend_type, mode := 'exact', source := 'images',
                                 detrend_source := 'detrends') AS TABLE
SELECT night,
       detector AS ccd,
       detrend_class(detrend_type, filter, band, exposureTime) AS filter_class,
       count(*) AS images,
       count(*) FILTER (WHERE detrend_rule = 'exact') AS exact,
       count(*) FILTER (WHERE detrend_rule = 'recent') AS recent,
       count(*) FILTER (WHERE detrend_rule IS NULL) AS none,
       max(epoch_us(obs_time) - epoch_us(detrend_tstop)) FILTER (WHERE detrend_rule = 'recent')
           / 86400e6 AS oldest_fallback_days
FROM resolve_detrends(detrend_type, mode := mode, source := source,
                      detrend_source := detrend_source)
GROUP BY ALL
ORDER BY night, ccd, filter_class;
COMMENT ON MACRO TABLE coverage IS
    'How the images are served, per night x CCD x filter class: coverage(type, mode := ''exact''|''recent'', source := ''images''). Columns: night, ccd, filter_class (band or filter for flats/fringes, exposure time for darks, ''any'' otherwise), images, exact, recent, none, oldest_fallback_days (the largest age, in days since its end, of a recent fallback).';


-- Synthetic images at every validity boundary of every record class (type, CCD, filter name
-- or dark exposure time): resolving them finds the winner of every span of the timeline,
-- because the winner changes only at a boundary. Audit uses it for shadowed records and the
-- winner of overlaps.
CREATE OR REPLACE MACRO detrend_probes(detrend_type, detrend_source := 'detrends') AS TABLE
WITH cls AS (
    SELECT record_index, ccd, filter, dark_exptime, tstart, tstop
    FROM query_table(detrend_source)
    WHERE type = detrend_type AND tstop_s > tstart_s
)
SELECT DISTINCT ccd::BIGINT AS detector,
       CASE WHEN detrend_type IN ('flat', 'fringe') THEN coalesce(filter, '') END AS filter,
       CASE WHEN detrend_type IN ('flat', 'fringe') THEN coalesce(filter, '') END AS band,
       detrend_ekey(detrend_type, dark_exptime) AS exposureTime,
       b AS obs_time,
       '' AS night
FROM (SELECT *, tstart AS b FROM cls UNION ALL SELECT *, tstop AS b FROM cls
      WHERE tstop IS NOT NULL);
COMMENT ON MACRO TABLE detrend_probes IS
    'Synthetic image rows (detector, filter, band, exposureTime, obs_time, night) at every tstart and tstop of the non-empty records of one type, one per class (CCD x filter name or dark exposure time): detrend_probes(type). Resolving them with resolve_detrends(type, source := ...) yields the winner of every span of the timeline.';


-- Findings about the database alone (no images): one row per finding.
CREATE OR REPLACE MACRO detrend_record_findings(detrend_source := 'detrends') AS TABLE
WITH d AS (SELECT * FROM query_table(detrend_source))
SELECT 'empty range' AS finding, type, ccd, record_index, NULL::BIGINT AS other_index,
       CASE WHEN tstop_s < tstart_s THEN 'inverted range: tstop is before tstart'
            ELSE 'empty range: tstop = tstart' END AS detail
FROM d WHERE tstop_s <= tstart_s
UNION ALL
SELECT 'open-ended', type, ccd, record_index, NULL,
       'open-ended ' || type || ' (only masks are expected to be open-ended)'
FROM d WHERE tstop_s = 18446744073709551615 AND type <> 'mask'
UNION ALL
SELECT CASE WHEN same THEN 'identical record' ELSE 'duplicate filename' END,
       type, ccd, record_index, other_index,
       CASE WHEN same THEN 'identical to record ' ELSE 'same filename as record ' END
           || other_index || ': ' || filename
FROM (
    SELECT a.type, a.ccd, a.record_index, b.record_index AS other_index, a.filename,
           a.type = b.type AND a.ccd = b.ccd AND a.filter_code = b.filter_code
               AND a.tstart_s = b.tstart_s AND a.tstop_s = b.tstop_s AND a.treg_s = b.treg_s
               AND a.sigma IS NOT DISTINCT FROM b.sigma
               AND a.clipsigma IS NOT DISTINCT FROM b.clipsigma
               AND a.flag1 = b.flag1 AND a.flag2 = b.flag2 AS same
    FROM d AS a JOIN d AS b ON a.filename = b.filename AND b.record_index < a.record_index
    -- an identical earlier record is named before one that only shares the filename
    QUALIFY row_number() OVER (PARTITION BY a.record_index
                               ORDER BY same DESC, b.record_index) = 1
)
-- the parts of a UNION ALL arrive in any order: the same database gives the same listing
ORDER BY record_index, finding;
COMMENT ON MACRO TABLE detrend_record_findings IS
    'Findings about the detrend records alone: detrend_record_findings(). Columns: finding (empty range, open-ended, duplicate filename, identical record), type, ccd, record_index, other_index (the earlier record with the same filename), detail.';
