-- Detrend resolution: which master bias/dark/flat/fringe/mask applies to each science image.
-- The rules are the ones of src/nightlake/resolve.py (the Python reference, see
-- docs/detrends.md); tests/resolve/test_properties.py holds both equal.
--
-- The macros read their inputs through query_table(<parameter>): DuckDB binds a macro when it
-- is created, and a table name given as a parameter defers that to the call, so the file loads
-- on a bare connection (no images or detrends view) and the caller may point `source` at any
-- view or table of images (a subset, a temp table).


-- The factor a dark is scaled by for an image: the image's exposure time over the dark's.
-- Written once here for detrend_for, apply_detrend_timeline, explain_detrend and
-- changed_detrends (rules.py holds the Python reference).
CREATE OR REPLACE MACRO detrend_scale(detrend_type, image_exptime, dark_exptime) AS
    CASE WHEN detrend_type = 'dark' AND dark_exptime <> 0
         THEN image_exptime::DOUBLE / dark_exptime END;
COMMENT ON MACRO detrend_scale IS
    'The scale of a dark for an image: detrend_scale(type, image exptime, dark exptime) = image exptime / dark exptime; NULL for other types and for a dark of 0 s.';


-- One image: a correlated subquery that ranks the candidates directly. Written independently
-- of resolve_detrends below (same rules, different formulation) and tested against both.
CREATE OR REPLACE MACRO detrend_for(detrend_type, image_ccd, image_filter, image_time,
                                    mode := 'exact', exptime := NULL, band := NULL,
                                    detrend_source := 'detrends') AS (
    SELECT struct_pack(
        record_index := record_index, filename := filename, filename_bytes := filename_bytes,
        type := type, ccd := ccd,
        filter := filter, dark_exptime := dark_exptime, tstart := tstart, tstop := tstop,
        treg := treg, sigma := sigma, clipsigma := clipsigma, flag1 := flag1, flag2 := flag2,
        rule := CASE WHEN _covers THEN 'exact' ELSE 'recent' END,
        scale := detrend_scale(detrend_type, exptime, dark_exptime))
    FROM (
        SELECT d.*,
               image_time::TIMESTAMP < coalesce(d.tstop, 'infinity'::TIMESTAMP) AS _covers,
               CASE WHEN detrend_type = 'dark' THEN d.dark_exptime END AS _group
        FROM query_table(detrend_source) AS d
        WHERE d.type = detrend_type
          AND d.ccd = image_ccd
          AND d.tstop_s > d.tstart_s
          AND d.tstart <= image_time::TIMESTAMP
          AND (detrend_type NOT IN ('flat', 'fringe')
               OR d.filter = image_filter OR d.filter = band)
          AND (detrend_type <> 'dark' OR exptime IS NOT NULL)
          AND (image_time::TIMESTAMP < coalesce(d.tstop, 'infinity'::TIMESTAMP)
               OR (mode = 'recent' AND d.tstop <= image_time::TIMESTAMP))
        -- within each group (one per dark exposure time; one group otherwise): covering
        -- records first by treg, else the latest ended one; ties go to the later record
        QUALIFY row_number() OVER (
            PARTITION BY _group
            ORDER BY _covers DESC, CASE WHEN NOT _covers THEN d.tstop END DESC NULLS LAST,
                     d.treg_s DESC, d.record_index DESC) = 1
    )
    ORDER BY abs(_group - exptime::DOUBLE) ASC NULLS LAST, _group DESC
    LIMIT 1
);
COMMENT ON MACRO detrend_for IS
    'The detrend record chosen for one image, as a STRUCT (NULL when none): detrend_for(type, ccd, filter, time, mode := ''exact''|''recent'', exptime := seconds (darks), band := short filter name). Fields: record_index, filename, filename_bytes (the exact bytes), type, ccd, filter, dark_exptime, tstart, tstop, treg, sigma, clipsigma, flag1, flag2, rule, scale.';


-- The classes an image falls in for a type: its filter class (flats and fringes depend on the
-- (filter, band) pair, other types not) and its exposure class (darks depend on the image's
-- exposure time). Written once here for detrend_timeline, apply_detrend_timeline and
-- changed_detrends, which must compute them the same way.
CREATE OR REPLACE MACRO detrend_fkey(detrend_type, image_filter, image_band) AS
    CASE WHEN detrend_type IN ('flat', 'fringe')
         THEN coalesce(image_filter, chr(30)) || chr(31) || coalesce(image_band, chr(30))
         ELSE '' END;
COMMENT ON MACRO detrend_fkey IS
    'The join key of an image''s filter class for a detrend type (the fkey of detrend_timeline; detrend_class is its label for reports): detrend_fkey(type, filter, band); an empty string for types that ignore the filter.';

CREATE OR REPLACE MACRO detrend_ekey(detrend_type, image_exptime) AS
    CASE WHEN detrend_type = 'dark' THEN image_exptime::DOUBLE ELSE 0.0 END;
COMMENT ON MACRO detrend_ekey IS
    'The exposure class of an image for a detrend type (the ekey of detrend_timeline): detrend_ekey(type, exptime); 0 for types other than dark.';


-- Every image at once, set-based, in two steps so that the detrend side can be computed once and
-- applied to the images in pieces (nightlake resolve --executor dask ships the timeline to each
-- worker). Per (ccd, filter class, exposure class) the detrend side is cut into a timeline:
-- every tstart and tstop is a boundary, and between two boundaries the winner cannot change.
-- The timeline is computed on the detrend side only (small), for the classes the images of
-- `source` fall in; each image then finds its segment with ONE ASOF join (greatest boundary
-- <= obs_time). docs/design.md explains why ASOF rather than IEJoin.
CREATE OR REPLACE MACRO detrend_timeline(detrend_type, mode := 'exact', source := 'images',
                                         detrend_source := 'detrends') AS TABLE
WITH
classes AS (
    SELECT DISTINCT detector::BIGINT AS ccd,
           detrend_fkey(detrend_type, filter, band) AS fkey,
           detrend_ekey(detrend_type, exposureTime) AS ekey,
           CASE WHEN detrend_type IN ('flat', 'fringe') THEN filter END AS filter,
           CASE WHEN detrend_type IN ('flat', 'fringe') THEN band END AS band
    FROM query_table(source)
    WHERE detector IS NOT NULL
      AND (detrend_type <> 'dark' OR exposureTime IS NOT NULL)
),
cand AS (
    SELECT c.ccd, c.fkey, c.ekey,
           CASE WHEN detrend_type = 'dark' THEN d.dark_exptime END AS grp,
           d.record_index, d.filename, d.filename_bytes, d.tstart, d.tstop, d.treg, d.treg_s
    FROM query_table(detrend_source) AS d
    JOIN classes AS c
      ON d.ccd = c.ccd
     AND (detrend_type NOT IN ('flat', 'fringe') OR d.filter = c.filter OR d.filter = c.band)
    WHERE d.type = detrend_type AND d.tstop_s > d.tstart_s
),
bounds AS (
    SELECT DISTINCT ccd, fkey, ekey, b FROM (
        SELECT ccd, fkey, ekey, tstart AS b FROM cand
        UNION ALL
        SELECT ccd, fkey, ekey, tstop AS b FROM cand WHERE tstop IS NOT NULL)
),
per_group AS (  -- the winner of each group (dark exposure time) from each boundary on
    SELECT bd.ccd, bd.fkey, bd.ekey, bd.b, c.grp,
           arg_max(c, (c.treg_s, c.record_index))
               FILTER (WHERE bd.b < coalesce(c.tstop, 'infinity'::TIMESTAMP)) AS exact_rec,
           arg_max(c, (c.tstop, c.treg_s, c.record_index))
               FILTER (WHERE c.tstop <= bd.b) AS ended_rec
    FROM bounds AS bd
    JOIN cand AS c
      ON c.ccd = bd.ccd AND c.fkey = bd.fkey AND c.ekey = bd.ekey AND c.tstart <= bd.b
    GROUP BY ALL
),
chosen AS (
    SELECT ccd, fkey, ekey, b, grp,
           CASE WHEN exact_rec IS NOT NULL THEN exact_rec
                WHEN mode = 'recent' THEN ended_rec END AS rec,
           CASE WHEN exact_rec IS NOT NULL THEN 'exact' ELSE 'recent' END AS rule
    FROM per_group
    WHERE exact_rec IS NOT NULL OR (mode = 'recent' AND ended_rec IS NOT NULL)
    -- darks: the exposure time nearest the image's, the longer on a tie
    QUALIFY row_number() OVER (PARTITION BY ccd, fkey, ekey, b
                               ORDER BY abs(grp - ekey) ASC NULLS LAST, grp DESC) = 1
)
-- every boundary, also those where nothing applies (rec NULL)
SELECT bd.ccd, bd.fkey, bd.ekey, bd.b, ch.rec, ch.rule, ch.grp
FROM bounds AS bd LEFT JOIN chosen AS ch USING (ccd, fkey, ekey, b);
COMMENT ON MACRO TABLE detrend_timeline IS
    'The detrend side of resolve_detrends, for the classes of the images in source: detrend_timeline(type, mode := ''exact''|''recent'', source := ''images''). One row per boundary of each (ccd, fkey filter class, ekey exposure class): b (the boundary), rec (the winning record from b on, a STRUCT; NULL when none), rule, grp (dark exposure time). Apply it with apply_detrend_timeline.';


-- The images of `source` joined to a timeline (a table or view with the columns of
-- detrend_timeline). The images are read twice (for the classes, for the join), never through
-- a shared CTE: with a CTE used twice (materialised), DuckDB kept every image column for
-- `count(*)`, the kB-long wcs too. Shaped this way, each scan reads only the columns its
-- consumer uses.
CREATE OR REPLACE MACRO apply_detrend_timeline(detrend_type, timeline, source := 'images') AS TABLE
SELECT i.* EXCLUDE (_nl_fkey, _nl_ekey),
       t.rec.filename AS detrend_filename,
       t.rec.filename_bytes AS detrend_filename_bytes,
       t.rec.record_index AS detrend_index,
       t.rec.tstart AS detrend_tstart,
       t.rec.tstop AS detrend_tstop,
       t.rec.treg AS detrend_treg,
       CASE WHEN t.rec IS NOT NULL THEN t.rule END AS detrend_rule,
       CASE WHEN t.rec IS NOT NULL
            THEN detrend_scale(detrend_type, i.exposureTime, t.grp) END AS detrend_scale
FROM (
    SELECT *,  -- the keys of detrend_timeline's classes
           detrend_fkey(detrend_type, filter, band) AS _nl_fkey,
           detrend_ekey(detrend_type, exposureTime) AS _nl_ekey
    FROM query_table(source)
) AS i
ASOF LEFT JOIN query_table(timeline) AS t
  ON i.detector = t.ccd AND i._nl_fkey = t.fkey AND i._nl_ekey = t.ekey AND i.obs_time >= t.b;
COMMENT ON MACRO TABLE apply_detrend_timeline IS
    'The images of source with the detrend a precomputed timeline gives them: apply_detrend_timeline(type, timeline, source := ''images''), timeline naming a table, view or CTE of detrend_timeline rows (for a superset of the classes of source). The columns of resolve_detrends.';


CREATE OR REPLACE MACRO resolve_detrends(detrend_type, mode := 'exact', source := 'images',
                                         detrend_source := 'detrends') AS TABLE
WITH _nl_timeline AS (
    SELECT * FROM detrend_timeline(detrend_type, mode := mode, source := source,
                                   detrend_source := detrend_source)
)
SELECT * FROM apply_detrend_timeline(detrend_type, '_nl_timeline', source := source);
COMMENT ON MACRO TABLE resolve_detrends IS
    'Every row of images with the detrend chosen for it: resolve_detrends(type, mode := ''exact''|''recent''). Adds detrend_filename, detrend_filename_bytes (the exact bytes), detrend_index, detrend_tstart, detrend_tstop, detrend_treg, detrend_rule, detrend_scale (darks); NULL where none applies. One ASOF join (apply_detrend_timeline) against detrend_timeline.';
