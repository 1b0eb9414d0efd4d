-- IVOA ObsCore 1.1: the images as the standard's mandatory columns (docs/obscore.md).
--
-- obscore_rows(source) maps each image; every connection with images also has the view
-- obscore = obscore_rows(). obscore_columns() is the column table (datatype, unit, UCD,
-- description), from which nightlake.astro gives the view's columns their units.

CREATE OR REPLACE MACRO decam_band_wavelength_m(band, edge) AS
    CASE band
        WHEN 'u' THEN [3.36e-7, 3.94e-7]
        WHEN 'g' THEN [3.98e-7, 5.48e-7]
        WHEN 'r' THEN [5.62e-7, 7.20e-7]
        WHEN 'i' THEN [6.99e-7, 8.52e-7]
        WHEN 'z' THEN [8.50e-7, 1.002e-6]
        WHEN 'Y' THEN [9.51e-7, 1.068e-6]
        WHEN 'VR' THEN [4.90e-7, 7.65e-7]
    END[CASE edge WHEN 'min' THEN 1 WHEN 'max' THEN 2 END]::DOUBLE;
COMMENT ON MACRO decam_band_wavelength_m IS
    'Half-maximum edge (edge: ''min'' or ''max'') in metres of a DECam filter band (u, g, r, i, z, Y, VR); NULL for another band. [unit: m]';

CREATE OR REPLACE MACRO sky_polygon(ra1, dec1, ra2, dec2, ra3, dec3, ra4, dec4) AS
    'POLYGON ICRS ' || array_to_string(
        [ra1, dec1, ra2, dec2, ra3, dec3, ra4, dec4]::DOUBLE[], ' ');
COMMENT ON MACRO sky_polygon IS
    'The STC-S region ''POLYGON ICRS ra1 dec1 … ra4 dec4'' (degrees) of four corners in order.';

CREATE OR REPLACE MACRO sky_separation_deg(ra1, dec1, ra2, dec2) AS
    degrees(2 * asin(least(1.0, array_distance(sky_vec(ra1, dec1), sky_vec(ra2, dec2)) / 2)));
COMMENT ON MACRO sky_separation_deg IS
    'Angular distance in degrees between (ra1, dec1) and (ra2, dec2), in degrees. [unit: deg]';

CREATE OR REPLACE MACRO obscore_rows(source := 'images') AS TABLE
    SELECT
        'image'::VARCHAR                                        AS dataproduct_type,
        2::INTEGER                                              AS calib_level,
        'DEEP'::VARCHAR                                         AS obs_collection,
        printf('%d_%02d', visit, detector)::VARCHAR             AS obs_id,
        ('ivo://nightlake/deep?' || printf('%d_%02d', visit, detector))::VARCHAR
                                                                AS obs_publisher_did,
        NULL::VARCHAR                                           AS access_url,
        NULL::VARCHAR                                           AS access_format,
        NULL::BIGINT                                            AS access_estsize,
        target::VARCHAR                                         AS target_name,
        ra::DOUBLE                                              AS s_ra,
        dec::DOUBLE                                             AS s_dec,
        greatest(sky_separation_deg(ra_tl, dec_tl, ra_br, dec_br),
                 sky_separation_deg(ra_tr, dec_tr, ra_bl, dec_bl))::DOUBLE AS s_fov,
        sky_polygon(ra_tl, dec_tl, ra_tr, dec_tr, ra_br, dec_br, ra_bl, dec_bl)::VARCHAR
                                                                AS s_region,
        finite_or_null(fwhm_arcsec(psfSigma))::DOUBLE           AS s_resolution,
        2048::BIGINT                                            AS s_xel1,
        4096::BIGINT                                            AS s_xel2,
        mjd_start::DOUBLE                                       AS t_min,
        (mjd_start + exposureTime / 86400.0)::DOUBLE            AS t_max,
        exposureTime::DOUBLE                                    AS t_exptime,
        exposureTime::DOUBLE                                    AS t_resolution,
        1::BIGINT                                               AS t_xel,
        decam_band_wavelength_m(band, 'min')                    AS em_min,
        decam_band_wavelength_m(band, 'max')                    AS em_max,
        (decam_band_wavelength_m(band, 'min') + decam_band_wavelength_m(band, 'max'))
            / 2 / (decam_band_wavelength_m(band, 'max') - decam_band_wavelength_m(band, 'min'))
                                                                AS em_res_power,
        1::BIGINT                                               AS em_xel,
        'phot.count'::VARCHAR                                   AS o_ucd,
        NULL::VARCHAR                                           AS pol_states,
        NULL::BIGINT                                            AS pol_xel,
        'CTIO Blanco'::VARCHAR                                  AS facility_name,
        'DECam'::VARCHAR                                        AS instrument_name,
        night,
        visit,
        detector,
        band
    FROM query_table(source);
COMMENT ON MACRO TABLE obscore_rows IS
    'One ObsCore 1.1 row per image of source (default images): the 30 mandatory columns (docs/obscore.md), then night, visit, detector, band.';

CREATE OR REPLACE MACRO obscore_columns() AS TABLE
    SELECT * FROM (VALUES
        ('dataproduct_type', 'VARCHAR', NULL, 'meta.id', 'data product type: image'),
        ('calib_level', 'INTEGER', NULL, 'meta.code;obs.calib', 'calibration level: 2, calibrated (calexp)'),
        ('obs_collection', 'VARCHAR', NULL, 'meta.id', 'the survey: DEEP'),
        ('obs_id', 'VARCHAR', NULL, 'meta.id', 'visit_detector'),
        ('obs_publisher_did', 'VARCHAR', NULL, 'meta.ref.ivoid', 'ivo://nightlake/deep?visit_detector'),
        ('access_url', 'VARCHAR', NULL, 'meta.ref.url', 'URL of the image (the lake records none)'),
        ('access_format', 'VARCHAR', NULL, 'meta.code.mime', 'MIME type of the image (the lake records none)'),
        ('access_estsize', 'BIGINT', 'kbyte', 'phys.size;meta.file', 'size of the image file (the lake records none)'),
        ('target_name', 'VARCHAR', NULL, 'meta.id;src', 'DEEP target field'),
        ('s_ra', 'DOUBLE', 'deg', 'pos.eq.ra', 'right ascension of the detector centre (ICRS)'),
        ('s_dec', 'DOUBLE', 'deg', 'pos.eq.dec', 'declination of the detector centre (ICRS)'),
        ('s_fov', 'DOUBLE', 'deg', 'phys.angSize;instr.fov', 'longer diagonal of the footprint'),
        ('s_region', 'VARCHAR', NULL, 'pos.outline;obs.field', 'footprint: POLYGON ICRS from the four corners'),
        ('s_resolution', 'DOUBLE', 'arcsec', 'pos.angResolution', 'seeing FWHM from the PSF model'),
        ('s_xel1', 'BIGINT', NULL, 'meta.number', 'pixels along the first axis (DECam CCD)'),
        ('s_xel2', 'BIGINT', NULL, 'meta.number', 'pixels along the second axis (DECam CCD)'),
        ('t_min', 'DOUBLE', 'd', 'time.start;obs.exposure', 'start of the exposure, MJD (TAI)'),
        ('t_max', 'DOUBLE', 'd', 'time.end;obs.exposure', 'end of the exposure, MJD (TAI)'),
        ('t_exptime', 'DOUBLE', 's', 'time.duration;obs.exposure', 'exposure time'),
        ('t_resolution', 'DOUBLE', 's', 'time.resolution', 'time resolution: the exposure time'),
        ('t_xel', 'BIGINT', NULL, 'meta.number', 'samples along time: 1'),
        ('em_min', 'DOUBLE', 'm', 'em.wl;stat.min', 'short half-maximum edge of the filter band'),
        ('em_max', 'DOUBLE', 'm', 'em.wl;stat.max', 'long half-maximum edge of the filter band'),
        ('em_res_power', 'DOUBLE', NULL, 'spect.resolution', 'band centre / band width'),
        ('em_xel', 'BIGINT', NULL, 'meta.number', 'samples along wavelength: 1'),
        ('o_ucd', 'VARCHAR', NULL, 'meta.ucd', 'UCD of the pixel values: phot.count'),
        ('pol_states', 'VARCHAR', NULL, 'meta.code;phys.polarization', 'polarization states: none (NULL)'),
        ('pol_xel', 'BIGINT', NULL, 'meta.number', 'polarization samples: none (NULL)'),
        ('facility_name', 'VARCHAR', NULL, 'meta.id;instr.tel', 'CTIO Blanco'),
        ('instrument_name', 'VARCHAR', NULL, 'meta.id;instr', 'DECam')
    ) AS c(name, datatype, unit, ucd, description);
COMMENT ON MACRO TABLE obscore_columns IS
    'The columns of obscore_rows / the obscore view: name, datatype, unit (NULL: unitless), ucd, description.';
