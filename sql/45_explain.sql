-- Why a detrend was (not) chosen: every record of the requested type for one image, with its
-- verdict. This is the one place the verdicts are written; `nightlake explain`, `detsearch
-- --explain` and `nightlake audit` call it or build on the same ranking, and
-- tests/resolve/test_explain.py holds its `chosen` row equal to resolve.py, detrend_for and
-- resolve_detrends.
--
-- Ranking (the rules of 40_detrends.sql): within a group (one per dark exposure time, one
-- otherwise) the covering records rank first by treg then file order, then (recent mode) the
-- ended ones by tstop, treg, file order; the group winners then rank by the distance of their
-- dark exposure time to the image's (the longer on a tie). A NULL image_ccd explains every CCD
-- as if the image were on it.
CREATE OR REPLACE MACRO explain_detrend(detrend_type, image_ccd, image_filter, image_time,
                                        mode := 'exact', exptime := NULL, band := NULL,
                                        detrend_source := 'detrends') AS TABLE
WITH
facts AS (
    SELECT d.*,
           d.tstop_s <= d.tstart_s AS _empty,
           detrend_type IN ('flat', 'fringe')
               AND NOT coalesce(d.filter = image_filter OR d.filter = band, false) AS _wrong_filter,
           detrend_type = 'dark' AND exptime IS NULL AS _no_exptime,
           d.tstart > image_time::TIMESTAMP AS _future,
           image_time::TIMESTAMP < coalesce(d.tstop, 'infinity'::TIMESTAMP) AS _covers,
           CASE WHEN detrend_type = 'dark' THEN d.dark_exptime END AS _group,
           -- signed distance in seconds from the image to the record's range (0 inside it)
           CASE WHEN d.tstart > image_time::TIMESTAMP
                THEN d.tstart_s::DOUBLE - epoch_us(image_time::TIMESTAMP) / 1e6
                WHEN d.tstop <= image_time::TIMESTAMP
                THEN epoch_us(image_time::TIMESTAMP) / 1e6 - d.tstop_s::DOUBLE
                ELSE 0.0 END AS _delta
    FROM query_table(detrend_source) AS d
    WHERE d.type = detrend_type AND (image_ccd IS NULL OR d.ccd = image_ccd)
),
eligible AS (
    SELECT *,
           row_number() OVER (
               PARTITION BY ccd, _group
               ORDER BY _covers DESC, CASE WHEN NOT _covers THEN tstop END DESC NULLS LAST,
                        treg_s DESC, record_index DESC) AS _group_rank
    FROM facts
    WHERE NOT (_empty OR _wrong_filter OR _no_exptime OR _future)
      AND (_covers OR mode = 'recent')
),
group_winners AS (
    SELECT ccd, _group, record_index AS _gw_index, treg_s AS _gw_treg, _covers AS _gw_covers,
           tstop AS _gw_tstop,
           row_number() OVER (
               PARTITION BY ccd
               ORDER BY abs(_group - exptime::DOUBLE) ASC NULLS LAST, _group DESC) AS _overall
    FROM eligible
    WHERE _group_rank = 1
),
chosen AS (
    SELECT ccd, _gw_index AS _ch_index, _group AS _ch_group,
           CASE WHEN _gw_covers THEN 'exact' ELSE 'recent' END AS _ch_rule
    FROM group_winners
    WHERE _overall = 1
),
judged AS (
    SELECT f.*, e._group_rank, g._gw_index, g._gw_treg, g._gw_covers, g._overall,
           c._ch_index, c._ch_group, c._ch_rule,
           CASE
               WHEN f._empty THEN 'empty range'
               WHEN f._wrong_filter THEN 'wrong filter'
               WHEN f._no_exptime THEN 'no image exptime'
               WHEN f._future THEN 'not yet valid'
               WHEN e._group_rank = 1 AND g._overall = 1 THEN 'chosen'
               WHEN e._group_rank = 1 THEN 'farther exptime'
               WHEN f._covers THEN 'superseded'
               ELSE 'expired'
           END AS verdict
    FROM facts AS f
    LEFT JOIN eligible AS e USING (record_index)
    LEFT JOIN group_winners AS g ON g.ccd = f.ccd AND g._group IS NOT DISTINCT FROM f._group
    LEFT JOIN chosen AS c ON c.ccd = f.ccd
)
SELECT ccd, record_index, verdict,
       CASE verdict
           WHEN 'chosen' THEN CASE WHEN _covers THEN 'exact' ELSE 'recent' END
           WHEN 'farther exptime' THEN CASE WHEN _covers THEN 'exact' ELSE 'recent' END
       END AS rule,
       CASE verdict
           WHEN 'superseded' THEN _gw_index
           WHEN 'expired' THEN coalesce(_gw_index, _ch_index)
           WHEN 'farther exptime' THEN _ch_index
       END AS beaten_by,
       CASE verdict
           WHEN 'chosen' THEN CASE
               WHEN _covers THEN 'covers the image time; registered last among those that do'
               ELSE 'recent fallback: nothing covers the image time; ended '
                    || to_seconds(round(_delta)::BIGINT) || ' before it, the latest to end' END
           WHEN 'empty range' THEN CASE WHEN tstop_s < tstart_s
               THEN 'inverted range: tstop is before tstart' ELSE 'empty range: tstop = tstart' END
           WHEN 'wrong filter' THEN CASE WHEN filter IS NULL
               THEN 'filter code ' || filter_code || ' is not in the database''s filter table'
               ELSE 'filter ' || filter || ' is neither the image''s filter ('
                    || coalesce(image_filter, 'none') || ') nor its band ('
                    || coalesce(band, 'none') || ')' END
           WHEN 'no image exptime' THEN 'the image has no exposure time; a dark needs one'
           WHEN 'not yet valid' THEN 'starts ' || to_seconds(round(_delta)::BIGINT)
               || ' after the image'
           WHEN 'superseded' THEN 'superseded by record ' || _gw_index || ', which covers too and '
               || CASE WHEN _gw_treg > treg_s THEN 'was registered later'
                       ELSE 'was registered at the same time, later in the file' END
           WHEN 'farther exptime' THEN 'dark of ' || dark_exptime || ' s; record ' || _ch_index
               || ' (' || _ch_group || ' s) is nearer to the image''s ' || exptime
               || ' s; its scale would be '
               || coalesce(round(detrend_scale(detrend_type, exptime, dark_exptime), 4)::VARCHAR,
                           'undefined (a dark of 0 s)')
           ELSE 'ended ' || to_seconds(round(_delta)::BIGINT) || ' before the image'
               || CASE WHEN mode <> 'recent' THEN ''
                       WHEN _gw_covers THEN '; record ' || _gw_index || ' covers it'
                       WHEN _gw_index IS NOT NULL THEN '; record ' || _gw_index
                            || ' ended later (or ranks higher)'
                       ELSE '' END
       END AS reason,
       CASE WHEN verdict IN ('not yet valid', 'expired') THEN _delta END AS delta_s,
       dark_exptime,
       CASE WHEN verdict IN ('chosen', 'farther exptime')
            THEN detrend_scale(detrend_type, exptime, dark_exptime) END AS scale,
       filter, tstart, tstop, treg, filename
FROM judged
ORDER BY ccd,
         CASE verdict WHEN 'chosen' THEN 0 WHEN 'superseded' THEN 1 WHEN 'farther exptime' THEN 2
                      WHEN 'expired' THEN 3 WHEN 'not yet valid' THEN 3 WHEN 'wrong filter' THEN 4
                      WHEN 'no image exptime' THEN 5 ELSE 6 END,
         _group_rank NULLS LAST,
         abs(_group - exptime::DOUBLE) NULLS LAST,
         _delta, record_index DESC;
COMMENT ON MACRO TABLE explain_detrend IS
    'Every record of one detrend type for an image, with its verdict: explain_detrend(type, ccd (NULL: every CCD), filter, time, mode := ''exact''|''recent'', exptime := seconds, band := short name). Columns: ccd, record_index, verdict (chosen, superseded, farther exptime, expired, not yet valid, wrong filter, no image exptime, empty range), rule, beaten_by, reason, delta_s, dark_exptime, scale, filter, tstart, tstop, treg, filename. The chosen record first, then by how close each came.';
