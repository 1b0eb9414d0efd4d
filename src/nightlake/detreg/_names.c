/* Filenames of DetReg records, cut at their NUL, as the buffers of an Arrow binary array.
 *
 * Built into _names.so by hatch_build.py when nightlake is installed, and loaded with ctypes
 * (no Python API here). nightlake.detreg.format falls back to pyarrow when the library is
 * missing; the tests compare both with a per-record reference.
 *
 * numpy and pyarrow have no fast "length up to the first NUL" over fixed-width fields in
 * strided records (pyarrow's conversion of an S254 field takes ~90 ns a record); memchr does
 * it at memory speed.
 */
#include <stdint.h>
#include <string.h>

/* For n records of `stride` bytes from `base`, each holding a name of at most `width` bytes
 * that ends at its first NUL: write offsets[0..n] (int32) and the names back to back into
 * `data` (room for n * (width - 1) bytes). Returns the number of bytes written, or -1 when a
 * name has no NUL within `width` bytes (its index in *bad). *ascii is 1 when every byte
 * written is below 0x80, so the array is valid UTF-8 without checking. */
int64_t nl_cut_names(const uint8_t *base, int64_t stride, int64_t width, int64_t n,
                     int32_t *offsets, uint8_t *data, int64_t *bad, int32_t *ascii)
{
    int64_t total = 0;
    offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *name = base + i * stride;
        const uint8_t *nul = memchr(name, 0, (size_t)width);
        if (nul == NULL) {
            *bad = i;
            return -1;
        }
        size_t len = (size_t)(nul - name);
        memcpy(data + total, name, len);
        total += (int64_t)len;
        offsets[i + 1] = (int32_t)total;
    }
    uint64_t high = 0;
    int64_t words = total / 8;
    for (int64_t w = 0; w < words; w++) {
        uint64_t chunk;
        memcpy(&chunk, data + 8 * w, 8);
        high |= chunk;
    }
    for (int64_t k = 8 * words; k < total; k++)
        high |= data[k];
    *ascii = (high & UINT64_C(0x8080808080808080)) == 0;
    return total;
}
