-- Which images change detrend between two states of the database: the reprocessing list after a
-- change (nightlake resolve --changed-since/--diff) and the preview of one (detregister add/delete
-- --preview). The rules are those of resolve_detrends; tests/detrends/resolve/test_changes.py
-- holds the answer equal to the Python reference run before and after.
--
-- Both timelines are cut on the detrend side (small); their boundaries are merged per class, and
-- each merged boundary gets the winner of each state from there on (two ASOF joins among
-- boundaries). Between two merged boundaries neither winner changes, so each image finds both
-- answers with ONE ASOF join against the merged timeline, as resolve_detrends finds one.
CREATE OR REPLACE MACRO changed_detrends(detrend_type, mode := 'exact', source := 'images',
                                         before_source := 'detrends',
                                         after_source := 'detrends') AS TABLE
WITH
_nl_before AS (
    SELECT * FROM detrend_timeline(detrend_type, mode := mode, source := source,
                                   detrend_source := before_source)),
_nl_after AS (
    SELECT * FROM detrend_timeline(detrend_type, mode := mode, source := source,
                                   detrend_source := after_source)),
_nl_bounds AS (
    SELECT DISTINCT ccd, fkey, ekey, b FROM (
        SELECT ccd, fkey, ekey, b FROM _nl_before
        UNION ALL
        SELECT ccd, fkey, ekey, b FROM _nl_after)),
_nl_old AS (
    SELECT m.*, t.rec AS old_rec, t.rule AS old_rule, t.grp AS old_grp
    FROM _nl_bounds AS m ASOF LEFT JOIN _nl_before AS t
      ON m.ccd = t.ccd AND m.fkey = t.fkey AND m.ekey = t.ekey AND m.b >= t.b),
_nl_merged AS (
    SELECT m.ccd, m.fkey, m.ekey, m.b,
           m.old_rec.filename AS old_filename, t.rec.filename AS new_filename,
           CASE WHEN m.old_rec IS NOT NULL THEN m.old_rule END AS old_rule,
           CASE WHEN t.rec IS NOT NULL THEN t.rule END AS new_rule,
           m.old_grp, t.grp AS new_grp,
           m.old_rec.record_index AS old_index, t.rec.record_index AS new_index,
           -- the same detrend: the same record content (its index shifts when an earlier record
           -- is deleted), rule and dark exposure time (the scale follows from it)
           row(m.old_rec.filename_bytes, m.old_rec.tstart, m.old_rec.tstop, m.old_rec.treg,
               m.old_rule, m.old_grp)
           IS DISTINCT FROM
           row(t.rec.filename_bytes, t.rec.tstart, t.rec.tstop, t.rec.treg, t.rule, t.grp)
           AS changed
    FROM _nl_old AS m ASOF LEFT JOIN _nl_after AS t
      ON m.ccd = t.ccd AND m.fkey = t.fkey AND m.ekey = t.ekey AND m.b >= t.b),
_nl_changed_classes AS (SELECT DISTINCT ccd, fkey, ekey FROM _nl_merged WHERE changed),
_nl_images AS (  -- only the images of classes where something changed reach the ASOF join
    SELECT i.* FROM (
        SELECT *,
               detrend_fkey(detrend_type, filter, band) AS _nl_fkey,
               detrend_ekey(detrend_type, exposureTime) AS _nl_ekey
        FROM query_table(source)) AS i
    SEMI JOIN _nl_changed_classes AS c
      ON i.detector = c.ccd AND i._nl_fkey = c.fkey AND i._nl_ekey = c.ekey)
SELECT i.* EXCLUDE (_nl_fkey, _nl_ekey),
       t.old_filename, t.new_filename, t.old_rule, t.new_rule,
       detrend_scale(detrend_type, i.exposureTime, t.old_grp) AS old_scale,
       detrend_scale(detrend_type, i.exposureTime, t.new_grp) AS new_scale,
       t.old_index, t.new_index
FROM _nl_images AS i
ASOF JOIN _nl_merged AS t
  ON i.detector = t.ccd AND i._nl_fkey = t.fkey AND i._nl_ekey = t.ekey AND i.obs_time >= t.b
WHERE t.changed;
COMMENT ON MACRO TABLE changed_detrends IS
    'The images of source whose detrend differs between two detrend sources: changed_detrends(type, mode := ''exact''|''recent'', source := ''images'', before_source := ''detrends'', after_source := ''detrends''). The image columns, then old_filename, new_filename, old_rule, new_rule, old_scale, new_scale (darks), old_index, new_index (NULL: no detrend). Two answers are the same when they name the same record content (filename, validity, treg), rule and scale.';
