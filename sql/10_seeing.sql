-- Image quality: seeing from the PSF model.
-- DECam's pixel scale is 0.2637 arcsec/pixel; a Gaussian's FWHM is 2.355 sigma.

CREATE OR REPLACE MACRO fwhm_arcsec(psf_sigma, pixel_scale := 0.2637) AS
    2.355::DOUBLE * pixel_scale * psf_sigma;
COMMENT ON MACRO fwhm_arcsec IS
    'Seeing FWHM in arcsec from a PSF sigma in pixels: 2.355 * pixel_scale * psf_sigma (pixel_scale defaults to DECam''s 0.2637 arcsec/pixel). [unit: arcsec]';
